"""The compile path end to end: determinism, dry run == files, sweeps, URNs, configs, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ftc.compiler.config.compose import load_job
from ftc.compiler.config.schema import JobConfig
from ftc.compiler.driver import compile_sweep
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import compile_job

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml") if p.stem != "custom")  # custom: tests/test_custom_model.py
METHODS = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
CLUSTERS = sorted(p.stem for p in (REPO / "conf" / "cluster").glob("*.yaml"))


def compile_args(*args: str):
    job, resolved = load_job(list(args))
    return compile_job(job, resolved)


def test_dry_run_prints_the_summary_and_exactly_the_script_it_wrote(ftc, output_root):
    result = ftc("model=llama8b", "cluster=example", "dry_run=true")
    assert result.code == 0, result.err
    head, _, script = result.out.partition("--- ")
    path, _, script = script.partition("\n")
    assert Path(path).read_text() == script
    assert "model      meta/llama-3.1-8b-instruct@v1.0.0+H100" in head
    run_dir = Path(path).parent
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "job.sbatch", "logs", "plan.json"]
    assert run_dir.parent.parent.parent == output_root


def test_same_request_same_run_id_and_bytes(output_root):
    first = compile_args("model=llama8b", "cluster=example", "method.learning_rate=2e-4")
    again = compile_args("cluster=example", "method.learning_rate=0.0002", "model=llama8b", "dry_run=true")
    other = compile_args("model=llama8b", "cluster=example", "method.learning_rate=3e-4")
    assert first.plan.run_id == again.plan.run_id
    assert first.files == again.files
    assert other.plan.run_id != first.plan.run_id


def test_config_yaml_is_the_resolved_config_and_reloads_into_the_same_job(output_root):
    run = compile_args("model=llama8b", "cluster=example", "method=dpo")
    resolved = yaml.safe_load(run.files["config.yaml"])
    assert "${" not in run.files["config.yaml"]
    job = JobConfig.model_validate(resolved)
    assert job == run.plan.job


def test_plan_json_round_trips(output_root):
    from ftc.compiler.planning.plan import Plan

    run = compile_args("model=llama8b", "cluster=example", "method=sft")
    plan = Plan.model_validate_json(run.files["plan.json"])
    assert plan == run.plan
    assert json.loads(run.files["ds_config.json"]) == plan.deepspeed
    assert plan.deepspeed["zero_optimization"]["stage"] == plan.topology.zero_stage > 0


def test_output_name_follows_customizer(output_root):
    run = compile_args("model=llama8b", "cluster=example", "namespace=acme")
    assert run.plan.output_name == f"acme/llama-3.1-8b-instruct-demo-lora@{run.plan.run_id}"


def test_urn_selects_the_model_and_its_variant(output_root):
    run = compile_args("model.urn=meta/llama-3.1-8b-instruct@v1.0.0+A100", "cluster=example", "cluster.partition=a100")
    assert run.plan.model_urn == "meta/llama-3.1-8b-instruct@v1.0.0+A100"
    assert run.plan.gpu == "a100-80gb"


def test_sweep_compiles_every_point_into_its_own_folder(ftc, output_root):
    result = ftc("-m", "method.learning_rate=1e-4,5e-5", "method.lora.adapter_dim=8,16", "dry_run=true")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("[")]
    assert len(lines) == 4
    assert "method.learning_rate=5e-05 method.lora.adapter_dim=16" in lines[3]
    assert len(list(output_root.glob("default/tiny-llama-demo-lora/*/job.sbatch"))) == 4


def test_sweep_drops_identical_points(output_root):
    _, points = compile_sweep(["method.epochs=2,2,3"])
    assert len(points) == 2


def test_sweep_error_names_the_point(output_root):
    with pytest.raises(UserError) as info:
        compile_sweep(["method.lora.adapter_dim=8,12"])
    assert info.value.problems == [
        "sweep point 1 (method.lora.adapter_dim=12): method.lora.adapter_dim: must be a power of 2 up to 256 (got 12)"
    ]
    assert not output_root.exists()


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", MODELS)
def test_every_shipped_combination_compiles_or_names_its_guard_rail(model, method, cluster, output_root):
    try:
        run = compile_args(f"model={model}", f"method={method}", f"cluster={cluster}")
    except UserError as exc:
        # Only the documented guard rails may refuse a shipped combination.
        assert len(exc.problems) == 1
        assert exc.problems[0].startswith(("cluster.partition: ", "method.finetuning_type: ")), exc.problems
        assert cluster == "local" and model != "tiny", exc.problems
        return
    assert run.plan.job.model.name in run.script or "ftc.runtime" in run.script
    assert run.plan.memory is not None and run.plan.estimate is not None


def test_configs_urns_lists_every_model_config_like_customizer(ftc):
    result = ftc("configs", "--urns")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["URN", "TRAINING", "FINETUNING", "GPUS", "NODES", "TP", "MAX", "SEQ"]
    assert any(line.startswith("meta/llama-3.1-8b-instruct@v1.0.0+H100") and " lora " in line for line in lines)
    assert any(line.startswith("ftc/tiny-llama@v1.0.0+CPU") for line in lines)


def test_schema_command_prints_the_json_schema_of_the_job(ftc):
    result = ftc("schema")
    schema = json.loads(result.out)
    assert schema == JobConfig.model_json_schema()
    assert "adapter_dim" in json.dumps(schema)


def test_site_config_folder_adds_a_cluster_without_editing_ftc(ftc, output_root):
    env = {"FTC_SITE_CONFIG": str(REPO / ".ci" / "site")}
    result = ftc("cluster=ci", "model=llama8b", "dry_run=true", env=env)
    assert result.code == 0, result.err
    assert "#SBATCH --gres=gpu:h100:1" in result.out
    assert 'echo "ftc-ci job $SLURM_JOB_ID on $(hostname)"' in result.out


def test_memory_is_sized_for_the_longest_row_unless_packing(tmp_path, output_root):
    data = tmp_path / "data"
    for split in ("training", "validation"):
        (data / split).mkdir(parents=True)
        rows = [{"prompt": "p" * 10, "completion": "c" * 10}] * 20 + [{"prompt": "x" * 900, "completion": "y" * 100}]
        (data / split / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    common = ["model=llama8b", "cluster=example", "data=custom", "data.name=long", f"data.path={data}",
              "resources.micro_batch_size=1"]
    padded = compile_args(*common).plan
    packed = compile_args(*common, "data.packing=true").plan
    assert padded.memory.sequence_length == 1000 + 64  # bytes bound tokens; plus the chat template's
    assert packed.memory.sequence_length == padded.max_seq_length == 4096
    assert packed.memory.total_gib > padded.memory.total_gib


def test_run_id_follows_the_data_content_not_its_folder(tmp_path, output_root):
    import shutil

    from ftc.compiler.config.compose import bundled_dataset

    copy = tmp_path / "copy"
    shutil.copytree(bundled_dataset("demo", "lora"), copy)
    bundled = compile_args()
    copied = compile_args(f"data.path={copy}")
    assert copied.plan.run_id == bundled.plan.run_id
    first = next(copy.glob("training/*.jsonl"))
    first.write_text(first.read_text().replace("C", "D", 1))
    assert compile_args(f"data.path={copy}").plan.run_id != bundled.plan.run_id
