"""Hard limits lose bounded work: the runtime checkpoints by wall time too, and a hard kill (what
Slurm does at TIMEOUT after its grace, NODE_FAIL or an OOM kill: SIGKILL, no warning) resumes from
the newest verified checkpoint when the run is submitted again."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ftc.runtime import checkpoints  # noqa: E402

from plan_factory import kill_group, log_tail, make_run, read_metrics, read_status, run_runtime, start_runtime  # noqa: E402


@pytest.mark.parametrize("minutes, limit, seconds", [
    ("auto", "01:00:00", 360.0), ("auto", "10:00:00", 1800.0), ("auto", "5", 30.0), (0.5, "01:00:00", 30.0),
])
def test_the_interval_follows_the_time_limit(minutes, limit, seconds):
    assert checkpoints.checkpoint_interval_s(minutes, limit) == seconds


@pytest.mark.train
def test_a_hard_kill_after_a_timed_checkpoint_resumes_from_it(tmp_path):
    steps = 300  # ~10 s on the tiny model: a timed checkpoint (every 1.2 s) comes well before the end, idle or busy
    run_dir = tmp_path / "runs" / "r1"
    make_run(run_dir, "lora", {
        "method": {"max_steps": steps},
        "training": {"save_steps": 10**6, "eval_steps": 10**6, "checkpoint_minutes": 0.02},  # every 1.2 s
        "eval": {"before": False, "max_rows": 2},
    })
    proc = start_runtime(run_dir)
    deadline = time.time() + 240
    while checkpoints.last_complete(run_dir) is None:
        assert proc.poll() is None, log_tail(run_dir)
        assert time.time() < deadline, "no timed checkpoint"
        time.sleep(0.05)
    kill_group(proc)  # SIGKILL: no warning, no stop file, nothing saved on the way out
    newest = checkpoints.last_complete(run_dir)
    step = int(newest.name.split("-")[1])
    assert 0 < step < steps and read_status(run_dir)["state"] != "completed"
    assert run_runtime(run_dir) == 0, log_tail(run_dir)
    assert re.search(rf"resuming from \S*checkpoint-{step}\b", log_tail(run_dir, 400))
    assert read_status(run_dir)["state"] == "completed" and read_metrics(run_dir)[-1]["step"] == steps


def test_the_resubmit_line_says_whether_a_checkpoint_exists(tmp_path):
    from ftc.compiler.runs.reasons import resume_note

    assert resume_note(tmp_path) == "no checkpoint was saved, it starts over"
    (tmp_path / "checkpoints" / "checkpoint-7").mkdir(parents=True)
    assert resume_note(tmp_path) == "no checkpoint was saved, it starts over"  # an unfinished save does not count
    (tmp_path / "checkpoints" / "checkpoint-7" / checkpoints.MANIFEST).write_text("{}")
    assert resume_note(tmp_path).startswith("it resumes from checkpoint-7, the newest complete checkpoint")
