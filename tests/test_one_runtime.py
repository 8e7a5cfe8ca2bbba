"""One runtime per run, in the world it was planned for (real tiny LoRA training, local executor).

A second runtime on a folder that one is training refuses to start and writes nothing; a plan
for 2 workers run as one process refuses before the first step. SIGKILL of the CLI, of torchrun
and of the worker in turn, each followed by the same command again: never two runtimes on the
folder, no worker left behind, and the final adapter equal to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

from test_cancel_anytime import processes_of
from test_resume import assert_same_weights, reached_step, wait_for

from plan_factory import final_weights, kill_group, make_run, read_status, run_runtime, start_runtime

TRAIN = ["method=lora", "model=tiny", "data=demo", "method.max_steps=8", "training.save_steps=1",
         "eval.before=false", "eval.max_rows=4", "training.eval_steps=100"]


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CONF", "FTC_SITE_CONFIG")}
    return {**env, "FTC_OUTPUT_ROOT": str(root)}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _runtimes(run_dir: Path) -> list[str]:
    return [p for p in processes_of(run_dir) if "ftc.runtime" in p and "torch.distributed.run" not in p]


@pytest.mark.train
def test_a_second_runtime_on_the_folder_refuses_to_start(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "lora", {"method": {"max_steps": 200}, "eval": {"before": False}})
    first = start_runtime(run_dir)
    try:
        wait_for(reached_step(run_dir, 1), first)
        before = (run_dir / "status.json").read_bytes()
        second = subprocess.run([sys.executable, "-m", "ftc.runtime", str(run_dir)], capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert f"another runtime (pid {first.pid})" in line, second.stderr
        assert first.poll() is None and read_status(run_dir)["state"] == "running"
        assert (run_dir / "status.json").read_bytes() != b"" and json.loads(before)["state"] == "running"
    finally:
        kill_group(first)


@pytest.mark.train
def test_a_plan_for_two_workers_run_as_one_refuses(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, "lora", {"method": {"max_steps": 2}}, world=2)
    code = run_runtime(run_dir, nproc=1)
    log = (run_dir / "runtime.log").read_text()
    assert code == 2 and "the plan is for 2 processes" in log and "global batch would be" in log
    assert not (run_dir / "metrics.jsonl").exists()


@pytest.mark.train
def test_killing_the_cli_torchrun_or_the_worker_never_leaves_two_runtimes(tmp_path):
    env = _env(tmp_path / "runs")
    reference = subprocess.run([sys.executable, "-m", "ftc", *TRAIN, "name=ref"], capture_output=True, text=True,
                               env=env, timeout=600)
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-2000:]
    ref_dir = Path(next(line.split(" ", 2)[2] for line in reference.stdout.splitlines() if line.startswith("run folder ")))
    run_dir = None
    most = {"runtimes": 0}
    stop = threading.Event()

    def watch():  # never two runtimes on the folder, sampled all along
        while not stop.is_set():
            if run_dir is not None:
                most["runtimes"] = max(most["runtimes"], len(_runtimes(run_dir)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for victim, at_step in (("worker", 2), ("torchrun", 4), ("cli", 6)):
            cli = subprocess.Popen([sys.executable, "-m", "ftc", *TRAIN, "name=killed"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env)
            seen = []
            while not any(line.startswith("run folder ") for line in seen):
                line = cli.stdout.readline()
                assert line, "".join(seen)
                seen.append(line)
            run_dir = Path(next(line.split(" ", 2)[2].strip() for line in seen if line.startswith("run folder ")))
            wait_for(reached_step(run_dir, at_step), cli)
            (torchrun,) = [p for p in _children(cli.pid) if b"torch.distributed.run" in Path(f"/proc/{p}/cmdline").read_bytes()]
            (worker,) = _children(torchrun)
            os.kill({"worker": worker, "torchrun": torchrun, "cli": cli.pid}[victim], signal.SIGKILL)
            cli.communicate(timeout=120)
            deadline = time.monotonic() + 60
            while processes_of(run_dir) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert processes_of(run_dir) == [], f"left alive after SIGKILL of the {victim}"
        final = subprocess.run([sys.executable, "-m", "ftc", *TRAIN, "name=killed"], capture_output=True, text=True,
                               env=env, timeout=600)
        assert final.returncode == 0, final.stdout[-3000:]
    finally:
        stop.set()
        watcher.join()
    assert most["runtimes"] == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("train_loss") is not None]
    assert steps == sorted(set(steps)) and steps[-1] == 8
    assert_same_weights(final_weights(run_dir), final_weights(ref_dir))
