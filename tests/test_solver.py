"""The solver's choices on the shipped model configs and the example cluster, and the run-time estimate."""

import re
import time
from pathlib import Path

import pytest
import yaml

from ftc.compiler.config.schema import JobConfig
from ftc.compiler.errors import UserError
from ftc.compiler.planning.estimate import estimate_time, flops_per_token, sbatch_time
from ftc.compiler.planning.memory import GIB, MemoryModel
from ftc.compiler.planning.solver import solve

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def conf(group, name):
    data = yaml.safe_load((CONF / group / f"{name}.yaml").read_text())
    if "${" in str(data.get("path", "")):
        data["path"] = "/models/test"  # Hydra interpolations; the lead's loader resolves them
    return data


def job(model="llama8b", method="lora", partition="h100", seq=4096, resources=None, **method_fields):
    cluster = conf("cluster", "local" if partition == "local" else "example")
    cluster["partition"] = partition
    return JobConfig.model_validate({
        "name": "test", "output_root": "/tmp/runs",
        "model": conf("model", model), "method": {**conf("method", method), **method_fields},
        "data": {"name": "demo", "path": "/data/demo", "max_seq_length": seq},
        "cluster": cluster, "resources": resources or {},
    })


def fixed(**values):
    return {"nodes": 1, "gpus_per_node": 1, "tensor_parallel": 1, "zero_stage": 0,
            "micro_batch_size": 1, "gradient_checkpointing": False, **values}


def test_llama8b_lora_at_4096_fits_one_h100():
    s = solve(job("llama8b", "lora"), 10_000)
    assert s.topology.world_size == 1 and s.topology.zero_stage == 0
    assert s.memory.total_gib <= 80 * 0.9
    assert s.topology.gradient_accumulation_steps * s.topology.micro_batch_size == 16


def test_llama8b_full_sft_needs_zero_on_one_node():
    with pytest.raises(UserError, match=r"needs 1\d\d\.\d GiB per GPU on h100-80gb"):
        solve(job("llama8b", "sft", resources=fixed(gradient_checkpointing=True)), 10_000)
    t = solve(job("llama8b", "sft"), 10_000).topology
    assert t.nodes == 1 and 1 < t.gpus_per_node <= 8 and t.zero_stage >= 1


def test_llama70b_lora_needs_more_than_one_gpu():
    t = solve(job("llama70b", "lora"), 10_000).topology
    assert t.world_size > 1 and t.zero_stage == 3  # only ZeRO-3 shards the frozen base


def test_llama70b_full_sft_needs_more_than_one_node():
    s = solve(job("llama70b", "sft"), 10_000)
    assert s.topology.nodes > 1 and s.topology.gpus_per_node == 8 and s.topology.zero_stage == 3
    assert 32 % (s.topology.world_size * s.topology.micro_batch_size) == 0


def test_fewest_gpus_then_fastest():
    s = solve(job("llama8b", "sft"), 10_000)
    t = s.topology
    model = MemoryModel(job("llama8b", "sft").model.architecture, job("llama8b", "sft").method, 4096, "h100-80gb")
    limit = 72 * GIB
    smaller = [w for w in (1, 2, 4, 8) if w < t.world_size]
    for w in smaller:  # nothing at all fits on fewer GPUs
        assert all(model.total(z, w, 1, 1, True) > limit for z in range(4))
    for z in range(t.zero_stage):  # a lower stage does not fit even with recompute and micro batch 1
        assert model.total(z, t.world_size, 1, 1, True) > limit


def test_explicit_values_are_honoured():
    s = solve(job("llama8b", "lora", resources={"gpus_per_node": 4, "zero_stage": 2, "micro_batch_size": 2}), 10_000)
    t = s.topology
    assert (t.nodes, t.gpus_per_node, t.zero_stage, t.micro_batch_size) == (1, 4, 2, 2)
    assert t.gradient_accumulation_steps == 16 // (2 * 4)
    decided = {d.split("=")[0] for d in s.decisions}
    assert decided == {"resources.nodes", "resources.tensor_parallel", "resources.gradient_checkpointing"}


def test_one_decision_per_auto_field():
    s = solve(job("llama70b", "sft"), 10_000)
    assert [d.split("=")[0] for d in s.decisions] == [f"resources.{f}" for f in
        ("tensor_parallel", "nodes", "gpus_per_node", "zero_stage", "gradient_checkpointing", "micro_batch_size")]
    assert any("do not divide method.batch_size" in d for d in s.decisions)  # 24 GPUs skipped for batch 32


def test_tensor_parallel_three_is_rejected_naming_the_heads():
    with pytest.raises(UserError, match="must divide the model's 32 attention heads and 8 KV heads") as err:
        solve(job("llama8b", "lora", resources={"tensor_parallel": 3}), 10_000)
    assert any("3 must divide the 8 GPUs per node" in p for p in err.value.problems)


def test_tensor_parallel_above_one_is_not_supported_by_the_runtime():
    with pytest.raises(UserError) as err:
        solve(job("llama8b", "lora", resources={"tensor_parallel": 4}), 10_000)
    assert err.value.problems == [
        "resources.tensor_parallel: ftc's runtime shards with DeepSpeed ZeRO; tensor parallelism > 1 is not supported (got 4)"
    ]


def test_explicit_layout_that_does_not_fit_names_a_change_that_fits():
    with pytest.raises(UserError) as err:
        solve(job("llama8b", "sft", resources=fixed(gpus_per_node=8, zero_stage=1, micro_batch_size=4)), 10_000)
    [line] = err.value.problems
    assert re.match(r"resources: needs \d+\.\d GiB per GPU on h100-80gb \(80 GiB, 72\.0 GiB usable at 10% headroom\); set ", line)
    suggestion = line.split("; set ")[1].split(" or ")[0]
    changes = dict(kv.split("=") for kv in suggestion.replace("resources.", "").split())
    changes = {k: (v == "true") if v in ("true", "false") else int(v) for k, v in changes.items()}
    asked = {"gpus_per_node": 8, "zero_stage": 1, "micro_batch_size": 4}
    assert solve(job("llama8b", "sft", resources=fixed(**{**asked, **changes})), 10_000).memory.total_gib <= 72


def test_above_usable_memory_is_refused_with_the_fix_never_kept_with_a_warning():
    resources = fixed(headroom=0.45)  # llama8b LoRA on all 7 matrices needs about 49 GiB: above 44 usable, under 80
    every = {"adapter_dim": 8, "alpha": 16, "adapter_dropout": 0.1,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    with pytest.raises(UserError) as err:
        solve(job("llama8b", "lora", resources=resources, lora=every), 10_000)
    assert "44.0 GiB usable" in str(err.value) and "; set resources." in str(err.value)
    auto = solve(job("llama8b", "lora", resources={"headroom": 0.45}, lora=every), 10_000)
    assert auto.memory.total_gib <= 44 and not auto.warnings


def test_auto_finding_nothing_names_the_smallest_need_and_the_largest_layout():
    j = job("llama70b", "sft")
    cluster = j.cluster.model_copy(update={"partitions": {"h100": j.cluster.partitions["h100"].model_copy(update={"max_nodes": 1})}})
    with pytest.raises(UserError) as err:
        solve(j.model_copy(update={"cluster": cluster}), 10_000)
    [line] = err.value.problems
    assert "needs" in line and "even on the largest layout tried (1 x 8 h100-80gb, ZeRO-3" in line


def test_unsupported_method_names_what_the_model_config_supports():
    with pytest.raises(UserError, match=r"@v1.0.0\+H100 does not support grpo/all_weights \(supports sft/lora, sft/all_weights"):
        solve(job("llama8b", "grpo", finetuning_type="all_weights"), 10_000)


def test_batch_not_divisible_by_the_explicit_layout():
    with pytest.raises(UserError, match=r"method.batch_size: 16 is not divisible .* \(1 x 3\)"):
        solve(job("llama8b", "lora", resources={"gpus_per_node": 3, "micro_batch_size": 1}), 10_000)


def test_micro_batch_never_exceeds_the_per_rank_share():
    t = solve(job("tiny", "lora", partition="local", seq=512, batch_size=2), 100).topology
    assert t.micro_batch_size == 2 and t.gradient_accumulation_steps == 1


def test_cpu_partition_runs_one_fp32_worker_without_zero():
    s = solve(job("tiny", "sft", partition="local", seq=512), 100)
    assert (s.topology.world_size, s.topology.zero_stage, s.precision) == (1, 0, "fp32")
    assert s.memory.capacity_gib == 16
    two = solve(job("tiny", "sft", partition="local", seq=512, resources={"gpus_per_node": 2}), 100)
    assert two.topology.gpus_per_node == 2 and two.memory.capacity_gib == 8


def test_sequence_longer_than_the_option_is_a_guard_rail():
    with pytest.raises(UserError, match=r"^data.max_seq_length: 8192 exceeds 4096, the longest this model config trains"):
        solve(job("llama8b", "lora", seq=8192, resources={"gradient_checkpointing": True}), 10_000)


def test_whole_matrix_solves_well_under_a_second():
    jobs = [job("tiny", m, partition="local", seq=512) for m in ("lora", "sft", "dpo", "grpo")]
    jobs += [job(model, m, partition=p, **ft) for model in MODELS if model != "tiny" for p in ("h100", "a100")
             for m, ft in (("lora", {}), ("sft", {}), ("dpo", {}), ("dpo", {"finetuning_type": "all_weights"}), ("grpo", {}))]
    start = time.perf_counter()
    for j in jobs:
        try:
            solve(j, 10_000)
        except UserError:
            pass
    assert time.perf_counter() - start < 0.5


def test_lora_costs_two_thirds_of_full_finetuning_flops():
    lora, sft = flops_per_token(job("llama8b", "lora"), 0), flops_per_token(job("llama8b", "sft"), 0)
    assert lora / sft == pytest.approx(4 / 6, rel=0.01)
    assert flops_per_token(job("llama8b", "sft"), 0, recompute=True) / sft == pytest.approx(8 / 6)


def test_estimate_scales_with_rows_gpus_and_mfu():
    j = job("llama8b", "sft")
    t = solve(j, 10_000).topology
    one = estimate_time(j, t, 10_000, mean_tokens=512)
    assert one.tokens_per_epoch == 10_000 * 512
    # the compute part; load, checkpoints and eval are counted apart (tests/test_estimate_io.py)
    assert estimate_time(j, t, 20_000, mean_tokens=512).parts["train"] == pytest.approx(2 * one.parts["train"], rel=1e-3)
    fast = job("llama8b", "sft", resources={"mfu": 0.7})
    assert estimate_time(fast, t, 10_000, mean_tokens=512).parts["train"] == pytest.approx(one.parts["train"] / 2, rel=1e-3)
    expected = 3 * 10_000 * 512 * flops_per_token(j, 512, t.gradient_checkpointing) / (t.world_size * 989e12 * 0.35)
    assert one.parts["train"] == pytest.approx(expected, rel=1e-3)
    assert one.hours == pytest.approx(sum(one.parts.values()) / 3600, rel=1e-3)
    assert estimate_time(j, t, 10_000).tokens_per_epoch == 10_000 * 2048  # fallback: half of seq_len


def test_dpo_and_grpo_estimates_count_their_extra_passes():
    rows = 1_000
    dpo = job("llama8b", "dpo")
    lora = job("llama8b", "lora", epochs=1)
    t = solve(lora, rows).topology
    ratio = estimate_time(dpo, t, rows, 512).total_flops / estimate_time(lora, t, rows, 512).total_flops
    n = dpo.model.architecture.parameters
    assert ratio == pytest.approx(2 * (flops_per_token(dpo, 512) + 2 * n) / flops_per_token(lora, 512))
    grpo = estimate_time(job("llama8b", "grpo"), t, rows, 100)
    assert grpo.tokens_per_epoch == rows * 4 * (100 + 32)


def test_cpu_estimate_is_a_number():
    j = job("tiny", "lora", partition="local", seq=512)
    est = estimate_time(j, solve(j, 100).topology, 100, 64)
    assert 0 < est.hours < 1 and est.requeues == 0


@pytest.mark.parametrize("hours, limit, expected", [
    (0.1, "1-00:00:00", ("00:30:00", 0)),      # 7.2 + 15 = 22.2 min, up to 30
    (1.0, "1-00:00:00", ("01:30:00", 0)),      # 72 + 15 = 87, up to 90
    (19.0, "1-00:00:00", ("23:15:00", 0)),     # 1368 + 15 = 1383, up to 1395
    (30.0, "1-00:00:00", ("1-00:00:00", 1)),   # 2175 min: two allocations of 24 h
    (100.0, "2-00:00:00", ("2-00:00:00", 2)),  # 7215 min over 2880: three allocations
])
def test_sbatch_time(hours, limit, expected):
    assert sbatch_time(hours, limit) == expected


def test_max_steps_replaces_epochs():
    j = job("llama8b", "lora", max_steps=10)
    t = solve(j, 10_000).topology
    capped = estimate_time(j, t, 10_000, mean_tokens=512)
    assert capped.total_flops == pytest.approx(10 * 16 * 512 * flops_per_token(j, 512, t.gradient_checkpointing))
    assert capped.tokens_per_epoch == 10_000 * 512


def test_cpu_partition_warns_instead_of_failing_when_memory_is_short():
    j = job("llama8b", "lora", partition="local", seq=512)
    j = j.model_copy(update={"model": j.model.model_copy(update={"training_options": {"CPU": j.model.training_options["H100"]}})})
    s = solve(j, 100)
    assert s.topology.world_size == 1 and s.precision == "fp32"
    assert any(w.startswith("resources: needs") and "CPU partition" in w for w in s.warnings)
