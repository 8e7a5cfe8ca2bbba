"""Per-partition settings: GRES type, setup, env, extra directives, memory, exclusive, requeue policy,
container setup; extra directives that collide with ftc's own are refused naming both."""

from __future__ import annotations

import textwrap

import pytest

from site_files import admin_site

SITE = """\
name: pp
executor: slurm
partition: big
gpu_request: gres
gres_name: fallback
container: {kind: pyxis, image: "nvcr.io/nvidia/pytorch:24.05-py3", mounts: ["/data:/data"]}
setup: ["echo cluster-setup"]
env: {SHARED: cluster, ONLY_CLUSTER: "1"}
sbatch_extra: {mail-type: FAIL}
partitions:
  big:
    gpu: h100-80gb
    gpus_per_node: 8
    max_nodes: 4
    max_time: 2-00:00:00
    cpus_per_node: 64
    gres_type: h100
    mem: "0"
    exclusive: true
    setup: ["echo partition-setup"]
    container_setup: ["export INSIDE=1", "echo inside-container"]
    env: {SHARED: partition}
    sbatch_extra: {reservation: maint}
  small:
    gpu: a100-40gb
    gpus_per_node: 4
    max_time: "01:00:00"
    mem_per_gpu: 60G
    requeue: refuse
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    (root / "cluster").mkdir(parents=True)
    (root / "cluster" / "pp.yaml").write_text(SITE)
    monkeypatch.setenv("FTC_SITE_CONFIG", str(root))
    return root


def _script(ftc, *args):
    result = ftc("cluster=pp", "model=llama8b", "dry_run=true", *args)
    assert result.code == 0, result.err
    return result.out[result.out.index("#!/bin/bash"):]


def test_partition_settings_reach_the_script(site, ftc):
    script = _script(ftc)
    assert "#SBATCH --gres=gpu:h100:1\n" in script
    assert "#SBATCH --mem=0\n#SBATCH --exclusive\n" in script
    assert "#SBATCH --requeue\n" in script
    assert "#SBATCH --mail-type=FAIL\n#SBATCH --reservation=maint\n" in script
    assert "export ONLY_CLUSTER=1\nexport SHARED=partition\n" in script
    assert script.index("echo cluster-setup") < script.index("echo partition-setup") < script.index("srun")
    # the container setup runs inside the container: a bash -c script between srun and torchrun
    launch = script[script.index("srun "):]
    assert "--container-image=nvcr.io/nvidia/pytorch:24.05-py3" in launch
    assert "  bash -c 'set -e\nexport INSIDE=1\necho inside-container\nexec \"$@\"' ftc-container-setup \\\n  torchrun" in launch


def test_the_other_partition_gets_its_own(site, ftc):
    script = _script(ftc, "cluster.partition=small", "model.urn=meta/llama-3.1-8b-instruct@v1.0.0+A100")
    assert "#SBATCH --gres=gpu:fallback:1\n" in script
    assert "#SBATCH --mem-per-gpu=60G\n" in script
    assert "--exclusive" not in script and "#SBATCH --requeue" not in script and "--reservation" not in script
    assert "partition-setup" not in script and "INSIDE" not in script
    assert "export SHARED=cluster\n" in script


def test_no_gres_type_asks_for_untyped_gpus(site, ftc):
    (site / "cluster" / "untyped.yaml").write_text("defaults: [pp, _self_]\nname: untyped\ngres_name: null\n")
    result = ftc("cluster=untyped", "cluster.partition=small", "model.urn=meta/llama-3.1-8b-instruct@v1.0.0+A100",
                 "dry_run=true")
    assert result.code == 0, result.err
    assert "#SBATCH --gres=gpu:1\n" in result.out


def test_a_refusing_partition_refuses_a_plan_that_needs_requeues(site, ftc, output_root):
    result = ftc("cluster=pp", "cluster.partition=small", "model.urn=meta/llama-3.1-8b-instruct@v1.0.0+A100",
                 "method.max_steps=200000", "dry_run=true")
    assert result.code == 2
    # big has H100s, but the URN asks for A100: it is not suggested
    assert "past partition small's limit of 01:00:00, and small refuses requeues; set method.max_steps=" in result.err
    assert not output_root.exists()


@pytest.mark.parametrize("level,flag,ours", [
    ("partitions.big.", "time", "--time=00:30:00"),
    ("partitions.big.", "t", "--time=00:30:00"),
    ("", "--gpus", "--gres=gpu:h100:1"),
    ("", "mem-per-cpu", "--mem=0"),
    ("partitions.big.", "output", "--output="),
    ("", "no-requeue", "--requeue"),
    ("partitions.big.", "J", "--job-name=ftc-"),
])
def test_an_extra_directive_that_collides_is_refused_naming_both(site, ftc, output_root, level, flag, ours):
    text = SITE
    if level:
        text = text.replace("sbatch_extra: {reservation: maint}", f"sbatch_extra: {{reservation: maint, {flag}: x}}")
    else:
        text = text.replace("sbatch_extra: {mail-type: FAIL}", f"sbatch_extra: {{mail-type: FAIL, {flag}: x}}")
    (site / "cluster" / "pp.yaml").write_text(text)
    result = ftc("cluster=pp", "model=llama8b", "dry_run=true")
    where = "cluster.partitions.big.sbatch_extra" if level else "cluster.sbatch_extra"
    assert result.code == 2, result.out
    assert result.err.startswith(f"ftc: error: {where}.{flag}: collides with ftc's own {ours}"), result.err
    assert len(result.err.splitlines()) == 1 and not output_root.exists()


@pytest.mark.parametrize("override", [
    "cluster.partitions.big.setup=[rm -rf /]",
    "+cluster.partitions.big.container_setup=[x]",
    "cluster.partitions.big.env.SHARED=x",
    "cluster.partitions.big.sbatch_extra.time=5",
    "cluster.partitions.big={gpu: cpu, gpus_per_node: 1}",
])
def test_partition_shell_is_not_a_command_line_override(site, ftc, override):
    result = ftc("cluster=pp", "model=llama8b", "dry_run=true", override)
    assert result.code == 2 and "set in the site's config files, not on the command line" in result.err


@pytest.mark.parametrize("patch,fragment", [
    ("mem: \"0\"", "mem: \"lots\"", ),
    ("mem: \"0\"", "mem: \"0\"\n    mem_per_gpu: 8G"),
])
def test_bad_memory_requests(site, ftc, patch, fragment):
    (site / "cluster" / "pp.yaml").write_text(SITE.replace(patch, fragment))
    result = ftc("cluster=pp", "model=llama8b", "dry_run=true")
    assert result.code == 2 and result.err.startswith("ftc: error: cluster.partitions.big"), result.err


def test_container_setup_without_a_container_is_refused(site, ftc):
    (site / "cluster" / "pp.yaml").write_text(SITE.replace("kind: pyxis", "kind: none"))
    result = ftc("cluster=pp", "model=llama8b", "dry_run=true")
    assert result.code == 2 and "container_setup: needs cluster.container.kind pyxis, apptainer or singularity" in result.err


@pytest.mark.parametrize("ports,fragment", [
    ({"rdzv_port_first": 80}, "cluster.rdzv_port_first"),
    ({"rdzv_port_first": 65000}, "cluster.rdzv_port_count: ports 65000-65999 pass 65535"),
    ({"rdzv_port_count": 0}, "cluster.rdzv_port_count"),
    ({"rdzv_port_first": float("nan")}, "cluster.rdzv_port_first"),
    ({"rdzv_port_first": "29500; rm -rf /"}, "cluster.rdzv_port_first"),
])
def test_bad_rendezvous_ranges(ftc, tmp_path, monkeypatch, ports, fragment):
    cluster = admin_site(tmp_path, monkeypatch, "example", ports)
    result = ftc(cluster, "model=llama8b", "dry_run=true")
    assert result.code == 2 and len(result.err.splitlines()) == 1 and fragment in result.err, result.err


def test_a_multi_node_script_takes_its_port_from_the_job(ftc, tmp_path, monkeypatch):
    cluster = admin_site(tmp_path, monkeypatch, "example", {"rdzv_port_first": 40000, "rdzv_port_count": 200})
    result = ftc(cluster, "model=llama70b", "method=sft", "dry_run=true")
    assert result.code == 0, result.err
    assert "rdzv_port=$((40000 + SLURM_JOB_ID % 200))\n" in result.out
    assert '--rdzv-endpoint="$head_node:$rdzv_port" --rdzv-id="$SLURM_JOB_ID"' in result.out
    assert "--standalone" not in result.out and "29500" not in result.out
