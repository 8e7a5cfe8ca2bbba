"""A run's terminal: the plan summary, one progress line, ftc's warnings and the end report; the rest in logs/train.log.

On a terminal (a real pty here) the local executor asks for a live line redrawn with carriage returns;
through a pipe (Slurm's log file) the runtime prints plain lines instead, a tenth of the run apart.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

sys.path.insert(0, str(Path(__file__).parent))

from ftc.runtime.progress import PLAIN_LINES, progress_text

from plan_factory import OFFLINE_ENV, log_tail, make_run, read_metrics, run_runtime

LIBRARY_NOISE = ("Warning:", "warnings.warn", "it/s]", "{'loss'", "Traceback", "[rank0]")
PROGRESS = re.compile(r"step (\d+)/(\d+) +\d+% \| loss \S+ \| val \S+ \| \S+ tok/s \| ETA \S+")


def run_in_pty(args: list[str], env: dict, timeout: float = 900) -> tuple[int, bytes]:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; return its exit code and every byte."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks)


def screen_lines(raw: bytes) -> list[str]:
    """The lines left on the screen: a carriage return (and erase-line) redraws the line in place."""
    lines = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        lines.append(line.replace("\x1b[K", "").rstrip("\r").split("\r")[-1])
    return [line for line in lines if line.strip()]


def test_progress_text_shows_step_losses_speed_and_eta():
    status = {"step": 120, "max_steps": 300, "train_loss": 4.91234, "val_loss": None, "eta_s": 125.2}
    text = progress_text(status, 2310.4)
    assert text == "step 120/300  40% | loss 4.912 | val - | 2,310 tok/s | ETA 2:05"
    status = {"step": 3, "max_steps": 3, "train_loss": float("nan"), "val_loss": 1.0, "eta_s": 3725}
    text = progress_text(status, 123456.0)
    assert text == "step 3/3 100% | loss - | val 1 | 123.5k tok/s | ETA 1:02:05"
    assert PROGRESS.fullmatch(text)


@pytest.mark.train
def test_a_tiny_lora_run_on_a_terminal_prints_at_most_40_lines(tmp_path_factory, tmp_path):
    cache = tmp_path_factory.getbasetemp()  # the session's tiny model, tiny-llama-v1 under FTC_CACHE
    env = {**os.environ, **OFFLINE_ENV, "FTC_OUTPUT_ROOT": str(tmp_path / "runs"), "FTC_CACHE": str(cache),
           "TERM": "xterm"}
    code, raw = run_in_pty([sys.executable, "-m", "ftc", "method=lora", "model=tiny", "data=demo",
                            "method.max_steps=20", "eval.max_rows=4"], env)
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines[-30:])
    assert raw.count(b"\n") <= 40, raw.decode(errors="replace")
    text = "\n".join(lines)
    for expected in ("run        default/tiny-llama-demo-lora@", "layout     1 node x 1 CPU worker",
                     "warning    method.learning_rate: 0.005 is above", "[ftc] training on 400 rows",
                     "eval: exact match", "output: default/tiny-llama-demo-lora@"):
        assert expected in text, text
    progress = [line for line in lines if PROGRESS.search(line)]
    assert len(progress) == 1 and PROGRESS.search(progress[0]).groups() == ("20", "20"), progress
    assert raw.count(b"\r\x1b[Kstep ") >= 2  # redrawn in place
    assert not [line for line in lines if any(noise in line for noise in LIBRARY_NOISE)]

    run_dir = Path(next(line.split()[-1] for line in lines if line.startswith("run folder ")))
    log = (run_dir / "logs" / "train.log").read_text()
    steps = [json.loads(line)["step"] for line in log.splitlines() if line.startswith('{"step"') and '"loss"' in line]
    assert steps == list(range(1, 21))  # the per-step detail, all of it, in the log file
    assert steps == [m["step"] for m in read_metrics(run_dir) if m["train_loss"] is not None]


@pytest.mark.train
def test_through_a_pipe_progress_is_plain_lines_without_carriage_returns(tmp_path_factory, tmp_path):
    tiny = str(tmp_path_factory.getbasetemp() / "tiny-llama-v1")
    run_dir = tmp_path / "plain"
    make_run(run_dir, "lora", {"method": {"max_steps": 30}, "training": {"eval_steps": 10},
                               "eval": {"max_rows": 2, "before": False}}, model_path=tiny, micro_batch_size=4)
    assert run_runtime(run_dir) == 0, log_tail(run_dir, 60)
    out = (run_dir / "runtime.log").read_bytes()  # what Slurm's log file would hold
    assert b"\r" not in out and b"\x1b" not in out
    progress = [line for line in out.decode().splitlines() if PROGRESS.search(line)]
    steps = [int(PROGRESS.search(line).group(1)) for line in progress]
    # a tenth of the run apart (and once a minute on a slow machine), ending at the last step
    assert set(range(3, 31, 3)) <= set(steps) and steps == sorted(set(steps)) and len(steps) <= PLAIN_LINES + 5, steps
    assert "val -" in progress[0] and "val -" not in progress[-1]
    assert not [line for line in out.decode().splitlines() if any(noise in line for noise in LIBRARY_NOISE)]


def test_a_closed_terminal_does_not_stop_the_run(capsys):
    """The person's terminal went away (the executor was killed): lines still reach the log, nothing raises."""
    import signal

    from ftc.runtime.console import Console

    read_end, write_end = os.pipe()
    os.close(read_end)
    console = Console()
    console.live = True
    console.out = os.fdopen(write_end, "w")
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python process
    try:
        console.show_progress("step 1/2")
        console.say("[ftc] still training")
        console.end_progress()
    finally:
        signal.signal(signal.SIGPIPE, previous)
    assert console.out is None
    assert "[ftc] still training" in capsys.readouterr().out  # the log file's copy (stdout, once captured)
