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
pytestmark = pytest.mark.train  # needs the train extra: runs in .ci/run's serial phase

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
                     "time       not estimated for CPU workers", "[ftc] training on 400 rows",
                     "eval: exact match", "output: default/tiny-llama-demo-lora@"):
        assert expected in text, text
    assert not [line for line in lines if line.startswith("warning ")]  # nothing about its own recipe
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
def test_two_workers_with_checkpointing_print_no_library_warnings(tmp_path_factory, tmp_path):
    """torchrun's OMP_NUM_THREADS notice and TRL's use of a deprecated transformers property are the
    libraries' business: the log file's, not the terminal's."""
    cache = tmp_path_factory.getbasetemp()
    env = {**os.environ, **OFFLINE_ENV, "FTC_OUTPUT_ROOT": str(tmp_path / "runs"), "FTC_CACHE": str(cache),
           "TERM": "xterm"}
    env.pop("OMP_NUM_THREADS", None)
    code, raw = run_in_pty([sys.executable, "-m", "ftc", "method=lora", "model=tiny", "data=demo",
                            "method.max_steps=3", "eval.max_rows=4", "resources.gpus_per_node=2",
                            "resources.gradient_checkpointing=true"], env)
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines[-30:])
    assert "layout     1 node x 2 CPU workers" in "\n".join(lines)
    assert not [line for line in lines if "OMP_NUM_THREADS" in line or "*****" in line], lines
    # this run raises none of ftc's own warnings: any such line would be a library's
    assert not [line for line in lines if line.startswith("[ftc] warning:")], lines
    run_dir = Path(next(line.split()[-1] for line in lines if line.startswith("run folder ")))
    assert "`is_gradient_checkpointing` is deprecated" in (run_dir / "logs" / "train.log").read_text()


def test_only_ftcs_own_warnings_reach_the_terminal():
    """A library installed inside ftc's folder (a checkout's .venv) is not ftc, and a deprecation
    raised at ftc's call site is ftc's to fix, not the user's: both only in the log file."""
    import io

    from ftc.runtime.console import FTC_ROOT, Console

    console = Console()
    console.out = io.StringIO()
    logged = []  # stands for warnings.showwarning, which writes to fd 2: the log file once captured
    console._showwarning_to_log = lambda message, *rest: logged.append(str(message))
    own = os.path.join(FTC_ROOT, "runtime", "methods.py")
    raised = [
        (UserWarning("no GPU here: training in fp32"), own),
        (FutureWarning("`is_gradient_checkpointing` is deprecated"),
         os.path.join(FTC_ROOT, ".venv", "lib", "python3.12", "site-packages", "transformers", "modeling_utils.py")),
        (UserWarning("a library's note"), os.path.join(FTC_ROOT, "venv", "lib", "python3.12", "site-packages", "x.py")),
        (DeprecationWarning("`old_api` is deprecated"), own),
        (UserWarning("elsewhere"), "/usr/lib/python3/dist-packages/torch/distributed/run.py"),
    ]
    for message, filename in raised:
        console._showwarning(message, type(message), filename, 1)
    assert console.out.getvalue() == "[ftc] warning: no GPU here: training in fp32\n"
    assert logged == [str(message) for message, _ in raised]


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
