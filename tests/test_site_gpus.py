"""Site GPUs: declared in the cluster file, used by the planner and the estimate, named by model options."""

from __future__ import annotations

import json

import pytest

CLUSTER = """\
defaults: [example, _self_]
name: gpusite
partition: a40
gpus:
  a40-48gb: {{memory_gib: 48, bf16_tflops: {tflops}, family: A40}}
partitions:
  a40:
    gpu: a40-48gb
    gpus_per_node: 4
    max_time: 2-00:00:00
    cpus_per_node: 32
"""
MODEL = """\
defaults: [llama8b, _self_]
training_options:
  A40:
    - {training_type: sft, finetuning_type: lora, num_gpus: 4, max_seq_length: 4096}
    - {training_type: sft, finetuning_type: all_weights, num_gpus: 4, max_seq_length: 4096}
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    (root / "cluster").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "model" / "llama8b-a40.yaml").write_text(MODEL)
    monkeypatch.setenv("FTC_SITE_CONFIG", str(root))
    return root


def _plan(ftc, output_root, site, tflops, *args):
    (site / "cluster" / "gpusite.yaml").write_text(CLUSTER.format(tflops=tflops))
    result = ftc("cluster=gpusite", "model=llama8b-a40", "dry_run=true", *args)
    assert result.code == 0, result.err
    [path] = [p for p in output_root.rglob("plan.json") if p.stat().st_mtime_ns and p.parent.name in result.out]
    return json.loads(path.read_text()), result.out


def test_a_site_gpu_is_planned_with_and_named_by_the_model(site, ftc, output_root):
    plan, out = _plan(ftc, output_root, site, 150)
    assert "model      meta/llama-3.1-8b-instruct@v1.0.0+A40" in out
    assert "a40-48gb GPU" in out and "of 48.0 GiB" in out
    assert plan["gpu"] == "a40-48gb"


def test_the_estimate_uses_the_site_gpus_speed(site, ftc, output_root):
    slow, _ = _plan(ftc, output_root, site, 100, "method.max_steps=5000")
    fast, _ = _plan(ftc, output_root, site, 400, "method.max_steps=5000", "name=fast")
    assert slow["estimate"]["parts"]["train"] == pytest.approx(4 * fast["estimate"]["parts"]["train"], rel=1e-3)
    assert slow["estimate"]["parts"]["load"] == fast["estimate"]["parts"]["load"]


def test_the_planner_uses_the_site_gpus_memory(site, ftc, output_root):
    (site / "cluster" / "gpusite.yaml").write_text(CLUSTER.format(tflops=150).replace("memory_gib: 48", "memory_gib: 24"))
    result = ftc("cluster=gpusite", "model=llama8b-a40", "method=sft", "dry_run=true")
    assert result.code == 2 and "a40-48gb (24 GiB" in result.err, result.err


@pytest.mark.parametrize("entry,fragment", [
    ("{memory_gib: 0, bf16_tflops: 1, family: A40}", "memory_gib"),
    ("{memory_gib: .inf, bf16_tflops: 1, family: A40}", "memory_gib"),
    ("{memory_gib: .nan, bf16_tflops: 1, family: A40}", "memory_gib"),
    ("{memory_gib: 48, bf16_tflops: lots, family: A40}", "bf16_tflops"),
    ("{memory_gib: 48, bf16_tflops: 1, family: 'A 40'}", "family"),
    ("{memory_gib: 48, bf16_tflops: 1}", "family"),
])
def test_bad_site_gpus_are_one_line(site, ftc, output_root, entry, fragment):
    (site / "cluster" / "gpusite.yaml").write_text(
        CLUSTER.format(tflops=1).replace("{memory_gib: 48, bf16_tflops: 1, family: A40}", entry))
    result = ftc("cluster=gpusite", "model=llama8b-a40", "dry_run=true")
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("ftc: error: cluster.gpus.a40-48gb.") and fragment in result.err, result.err
    assert not output_root.exists()


def test_an_undeclared_gpu_is_refused_with_where_to_declare_it(site, ftc):
    (site / "cluster" / "gpusite.yaml").write_text(CLUSTER.format(tflops=1).replace("gpu: a40-48gb", "gpu: a40"))
    result = ftc("cluster=gpusite", "model=llama8b-a40", "dry_run=true")
    assert result.code == 2 and "cluster.partitions.a40.gpu: unknown GPU 'a40'" in result.err
    assert "a site declares its own in cluster.gpus" in result.err
