"""torchrun with two CPU workers: DDP and DeepSpeed ZeRO-2/3 train, save, and resume bit-for-bit after a stop request."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("deepspeed")

sys.path.insert(0, str(Path(__file__).parent))

from test_resume import assert_same_weights, complete, stopped_and_resumed

from plan_factory import (
    final_weights,
    log_tail,
    make_run,
    read_metrics,
    read_status,
    run_runtime,
)

pytestmark = pytest.mark.train

RUN = {"training": {"eval_steps": 4, "save_steps": 6}, "eval": {"max_rows": 4}}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")


def two_workers(run_dir: Path, method: str, zero_stage: int, tiny: str, max_steps: int = 12):
    overrides = {"method": {"max_steps": max_steps, "learning_rate": 3e-3}, **RUN}
    return make_run(run_dir, method, overrides, world=2, zero_stage=zero_stage, micro_batch_size=2, model_path=tiny)


def check_completed(run_dir: Path, kind: str, steps: int) -> None:
    status = read_status(run_dir)
    assert status["state"] == "completed" and status["step"] == steps
    outputs = json.loads((run_dir / "outputs.json").read_text())
    assert outputs["kind"] == kind and outputs["files"]
    losses = [m["train_loss"] for m in read_metrics(run_dir) if m["train_loss"] is not None]
    assert len(losses) == steps and losses[-1] < losses[0]
    assert (run_dir / "eval.json").exists() and (run_dir / "loss.png").exists()


@pytest.mark.parametrize(
    ("method", "zero_stage", "kind"),
    [("lora", 0, "adapter"), ("sft", 3, "model")],
    ids=["ddp", "zero3"],
)
def test_two_workers_train_save_and_resume_bit_identical(tmp_path, tiny, method, zero_stage, kind):
    reference, stopped = tmp_path / "reference", tmp_path / "stopped"
    # Long enough that the stop request (sent at step 3) lands mid-run even on an idle machine.
    plan = two_workers(reference, method, zero_stage, tiny, max_steps=48)
    two_workers(stopped, method, zero_stage, tiny, max_steps=48)
    assert (plan.deepspeed is not None) == (zero_stage > 0)
    complete(reference, nproc=2)
    check_completed(reference, kind, 48)
    stopped_and_resumed(stopped, "file", nproc=2)
    assert_same_weights(final_weights(stopped), final_weights(reference))


def test_zero2_two_workers_complete_and_save(tmp_path, tiny):
    run_dir = tmp_path / "zero2"
    plan = two_workers(run_dir, "sft", 2, tiny, max_steps=8)
    assert json.loads((run_dir / "ds_config.json").read_text())["zero_optimization"]["stage"] == 2
    assert plan.deepspeed["train_batch_size"] == 4
    code = run_runtime(run_dir, nproc=2)
    assert code == 0, log_tail(run_dir)
    check_completed(run_dir, "model", 8)
    assert (run_dir / "checkpoints" / "checkpoint-6" / "global_step6").is_dir()
