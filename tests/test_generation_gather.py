"""GRPO under ZeRO-3: the planner counts TRL's whole-model gather for generation where it turns it on,
and the runtime sets ds3_gather_for_generation from what the plan counted; zero reward warns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_solver import job

from ftc.compiler.planning.memory import GENERATION_GATHER, GIB, plan_gathers_for_generation


def solve_grpo(model: str, **resources):
    from ftc.compiler.planning.solver import solve

    return solve(job(model, "grpo", resources=resources), 10_000)


def items(solution) -> dict:
    return {i.name: i.gib for i in solution.memory.items}


def test_8b_grpo_at_zero3_counts_the_whole_model_gathered_for_generation():
    s = solve_grpo("llama8b", zero_stage=3, nodes=1, gpus_per_node=4)
    gathered = items(s)[GENERATION_GATHER]
    assert gathered == pytest.approx(8030261248 * 2 / GIB, abs=0.01)  # bf16 weights of every layer, once
    assert s.memory.total_gib <= 72.0


def test_70b_grpo_generates_layer_by_layer_and_fits():
    """The whole 70B model (131 GiB in bf16) cannot be gathered on an 80 GiB GPU; layer by layer it fits."""
    s = solve_grpo("llama70b")
    assert s.topology.zero_stage == 3
    assert GENERATION_GATHER not in items(s) and "zero-3 gathered layers" in items(s)
    assert s.memory.total_gib <= 72.0


def test_the_runtime_reads_the_gather_from_the_plan(tmp_path):
    pytest.importorskip("trl")
    from ftc.compiler.planning.plan import MemoryEstimate, MemoryItem
    from ftc.runtime.methods import build_args

    from plan_factory import make_plan

    plan = make_plan(tmp_path / "run", "grpo", micro_batch_size=4)
    assert not plan_gathers_for_generation(plan) and build_args(plan).ds3_gather_for_generation is False
    counted = MemoryEstimate(items=[MemoryItem(name=GENERATION_GATHER, gib=1.0)], total_gib=1.0, capacity_gib=80.0,
                             headroom=0.1, sequence_length=128)
    plan = plan.model_copy(update={"memory": counted})
    assert plan_gathers_for_generation(plan) and build_args(plan).ds3_gather_for_generation is True


def test_zero_reward_warning_after_five_zero_steps_once(tmp_path):
    pytest.importorskip("transformers")
    from ftc.runtime.callbacks import RunStatus
    from ftc.runtime.reward_watch import ZeroRewardWarning

    status = RunStatus(str(tmp_path))
    watch = ZeroRewardWarning(status, steps=5)
    for reward in [0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0]:
        watch.on_log(None, None, None, logs={"reward": reward})
    assert not watch.warned and "warnings" not in status.data
    watch.on_log(None, None, None, logs={"loss": 0.0})  # a log without a reward changes nothing
    watch.on_log(None, None, None, logs={"reward": 0.0})
    watch.on_log(None, None, None, logs={"reward": 0.0})
    assert watch.warned and len(status.data["warnings"]) == 1
    assert "reward 0 for 5 steps" in json.loads((tmp_path / "status.json").read_text())["warnings"][0]
