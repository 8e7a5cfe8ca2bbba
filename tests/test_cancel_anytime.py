"""Stopping stops everything: `ftc cancel` and Ctrl-C at any moment (during start-up too) leave no
process of the run alive, and status says what happened (never "completed 100%" for a stopped run).

Real local executor, real tiny LoRA training (torch, transformers, peft, trl): every process whose
environment or command line names the run folder is looked for in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

TRAIN = ["method=lora", "model=tiny", "data=demo", "method.max_steps=3000", "eval.before=false",
         "training.save_steps=1000"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cancel-anytime")
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_CONF", "FTC_SITE_CONFIG")}
    return {**env, "FTC_OUTPUT_ROOT": str(root / "runs")}


def ftc(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ftc", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def processes_of(run_dir: Path) -> list[str]:
    """Live processes (not zombies) whose environment or command line names the run folder."""
    marker = str(run_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker in environ:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"{entry.name}: {shown}")
    return found


def status_state(env: dict, run_id: str) -> str:
    out = ftc(env, "status", run_id).stdout
    return next(line.split(None, 1)[1].split(" [from")[0] for line in out.splitlines() if line.startswith("state "))


def assert_stopped(env: dict, run_dir: Path) -> None:
    assert processes_of(run_dir) == []
    time.sleep(2)  # nothing comes back: no worker respawned by a surviving torchrun
    assert processes_of(run_dir) == []
    assert status_state(env, run_dir.name) == "cancelled"
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    assert status.get("state") != "completed" and status.get("percent", 0) < 100, status


def _run_dir(out: str) -> Path:
    return Path(next(line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("run folder ")))


def _mid_training(run_dir: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if json.loads((run_dir / "status.json").read_text()).get("step", 0) >= 5:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("training never reached step 5")


@pytest.mark.parametrize("when", ["0.5s", "2s", "mid-training"])
def test_cancel_leaves_nothing_running(env, when):
    started = ftc(env, *TRAIN, f"name=cancel-{when.replace('.', '-')}", "detach=true")
    assert started.returncode == 0, started.stderr
    run_dir = _run_dir(started.stdout)
    if when == "mid-training":
        _mid_training(run_dir)
    else:
        time.sleep(float(when.rstrip("s")))
    cancel = ftc(env, "cancel", run_dir.name)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stdout + cancel.stderr
    assert_stopped(env, run_dir)


@pytest.mark.parametrize("when", ["0.5s", "2s"])
def test_ctrl_c_during_start_up_is_honoured(env, when):
    """Ctrl-C while the launch starts (torch loading, no step yet) is honoured at the first step."""
    proc = subprocess.Popen([sys.executable, "-m", "ftc", *TRAIN, f"name=ctrl-c-{when.replace('.', '-')}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    while not any(line.startswith("run folder ") for line in seen):
        line = proc.stdout.readline()
        assert line, "ftc ended before it launched the run"
        seen.append(line)
    time.sleep(float(when.rstrip("s")))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, out + err
    run_dir = _run_dir("".join(seen))
    assert "stopped" in out
    assert_stopped(env, run_dir)


def test_ctrl_c_while_compiling_starts_nothing(env):
    root = Path(env["FTC_OUTPUT_ROOT"])
    proc = subprocess.Popen([sys.executable, "-m", "ftc", *TRAIN, "name=ctrl-c-compiling"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    if "run folder " in out:
        pytest.skip("this machine compiled within 0.5 s; the start-up cases cover it")
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "ftc: interrupted", out + err
    assert processes_of(root) == []


def test_killed_supervisor_takes_the_run_along(env):
    """SIGKILL to the detached supervisor: torchrun gets SIGTERM (parent-death signal) and stops its workers."""
    started = ftc(env, *TRAIN, "name=supervisor-killed", "detach=true")
    assert started.returncode == 0, started.stderr
    run_dir = _run_dir(started.stdout)
    _mid_training(run_dir)
    os.kill(json.loads((run_dir / "job.json").read_text())["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(run_dir) == []
    assert status_state(env, run_dir.name) != "running"
