"""Interrupted runs resume from their last complete checkpoint and end bit-for-bit where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

sys.path.insert(0, str(Path(__file__).parent))

from ftc.runtime import checkpoints

from plan_factory import (
    final_weights,
    kill_group,
    log_tail,
    make_run,
    read_metrics,
    read_status,
    run_runtime,
    start_runtime,
)

RUN = {"training": {"eval_steps": 5, "save_steps": 10}, "eval": {"max_rows": 4, "before": False}}
METHODS = {
    "lora": {"method": {"max_steps": 30, "learning_rate": 3e-3}, **RUN},
    "sft": {"method": {"max_steps": 30, "learning_rate": 1e-3, "warmup_ratio": 0.1}, **RUN},
}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")


def wait_for(condition, proc, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.01)


def reached_step(run_dir: Path, step: int):
    return lambda: any(m["step"] >= step for m in read_metrics(run_dir))


def checkpoint_done(run_dir: Path, step: int):
    """The manifest, written last, makes a checkpoint complete."""
    return lambda: checkpoints.is_complete(run_dir / "checkpoints" / f"checkpoint-{step}")


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def complete(run_dir: Path, nproc: int = 1) -> None:
    code = run_runtime(run_dir, nproc)
    assert code == 0, log_tail(run_dir)
    assert read_status(run_dir)["state"] == "completed"


def killed_and_resumed(run_dir: Path) -> None:
    """SIGKILL right after the first checkpoint is marked complete, then run again."""
    proc = start_runtime(run_dir)
    wait_for(checkpoint_done(run_dir, 10), proc)
    kill_group(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert read_status(run_dir)["state"] == "running"
    complete(run_dir)
    assert "resuming from" in log_tail(run_dir, 400)


def stopped_and_resumed(run_dir: Path, how: str, nproc: int = 1) -> int:
    """A stop request (the file Slurm's USR1 trap writes, or a signal) mid-run; returns the step it stopped at."""
    proc = start_runtime(run_dir, nproc)
    wait_for(reached_step(run_dir, 3), proc)
    if how == "file":
        (run_dir / checkpoints.STOP_FILE).touch()
    else:
        os.kill(proc.pid, getattr(signal, how))
    assert proc.wait(timeout=240) == 0, log_tail(run_dir)
    status = read_status(run_dir)
    assert status["state"] == "preempted", status
    requeue = json.loads((run_dir / checkpoints.REQUEUE_FILE).read_text())
    assert requeue["step"] == status["step"] < status["max_steps"]
    assert checkpoints.is_complete(Path(requeue["checkpoint"]))
    complete(run_dir, nproc)
    assert not (run_dir / checkpoints.REQUEUE_FILE).exists()
    return requeue["step"]


# ---------------------------------------------------------------- no training


def test_only_marked_checkpoints_count(tmp_path):
    root = tmp_path / "checkpoints"
    for step, marked in ((10, True), (20, True), (30, False)):
        (root / f"checkpoint-{step}").mkdir(parents=True)
        if marked:
            checkpoints.mark_complete(root / f"checkpoint-{step}", {"step": step})
    assert checkpoints.last_complete(tmp_path) == root / "checkpoint-20"
    assert checkpoints.saved_state(root / "checkpoint-20") == {"step": 20}
    checkpoints.discard_incomplete(tmp_path)
    assert not (root / "checkpoint-30").exists()
    (root / "checkpoint-40").mkdir()
    checkpoints.mark_complete(root / "checkpoint-40", {"step": 40})
    checkpoints.prune(tmp_path, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-20", "checkpoint-40"]
    assert checkpoints.last_complete(tmp_path / "elsewhere") is None


def test_stale_requests_are_cleared_but_new_ones_kept(tmp_path):
    from ftc.runtime.train import clear_stale_requests

    stop, requeue = tmp_path / checkpoints.STOP_FILE, tmp_path / checkpoints.REQUEUE_FILE
    stop.touch()
    requeue.touch()
    old = time.time() - 60
    os.utime(requeue, (old, old))
    clear_stale_requests(str(tmp_path), time.time() - 30)
    assert stop.exists() and not requeue.exists()


def test_metrics_of_a_lost_attempt_are_dropped(tmp_path):
    from ftc.runtime.callbacks import MetricsCallback, RunStatus

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)))
    MetricsCallback(str(tmp_path), RunStatus(str(tmp_path))).truncate_after(5)
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- training


@pytest.mark.train
@pytest.mark.parametrize("method", ["lora", "sft"])
def test_resume_is_bit_identical(tmp_path, tiny, method):
    overrides = METHODS[method]
    runs = {name: tmp_path / name for name in ("reference", "killed", "stopped")}
    for run_dir in runs.values():
        make_run(run_dir, method, overrides, model_path=tiny, micro_batch_size=4)
    complete(runs["reference"])
    killed_and_resumed(runs["killed"])
    stopped_and_resumed(runs["stopped"], "file" if method == "lora" else "SIGTERM")
    reference = final_weights(runs["reference"])
    assert_same_weights(final_weights(runs["killed"]), reference)
    assert_same_weights(final_weights(runs["stopped"]), reference)
    losses = [[m["train_loss"] for m in read_metrics(r) if m["train_loss"] is not None] for r in runs.values()]
    assert losses[0] == losses[1] == losses[2] and len(losses[0]) == 30


@pytest.mark.train
def test_a_cancel_request_stops_without_requeue(tmp_path, tiny):
    run_dir = tmp_path / "cancel"
    make_run(run_dir, "lora", METHODS["lora"], model_path=tiny)
    proc = start_runtime(run_dir)
    wait_for(reached_step(run_dir, 2), proc)
    (run_dir / checkpoints.STOP_FILE).write_text("cancel\n")
    assert proc.wait(timeout=240) == 0, log_tail(run_dir)
    status = read_status(run_dir)
    assert status["state"] == "cancelled" and not (run_dir / checkpoints.REQUEUE_FILE).exists()
    assert checkpoints.last_complete(run_dir) is not None
