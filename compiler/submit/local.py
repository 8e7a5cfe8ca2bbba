"""The local executor: the plan's own launch line (torchrun -m ftc.runtime RUN_DIR) on this machine.

Foreground by default: the log streams to the terminal and to RUN_DIR/logs/local.out, and the first
Ctrl-C asks the runtime to checkpoint and stop (through the run's stop file), a second one
kills it. With detach=true a small supervisor (`python -m ftc.compiler.submit.local`) runs the launch in a
new session and records its exit code, so `status` can tell completed from failed afterwards.
The training stack is only needed by the child: this module never imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import Plan
from ftc.compiler.records import (STATUS_FILE, LocalExitRecord, RunStatusRecord, load, new_record, now, read_record,
                                  write_record)
from ftc.compiler.render.sbatch import threads_per_worker
from ftc.compiler.runfolder import REQUEUE_FILE, STOP_FILE, open_append, write_atomic
from ftc.compiler.submit.torchrun_output import ChildFailedFilter

TRAIN_EXTRA = "the local executor needs the train extra: pip install 'ftc[train]'"
LOG = "logs/local.out"
EXIT = "logs/local-exit.json"
CANCEL_GRACE_S = 30.0
SUPERVISOR = "ftc.compiler.submit.local"
LAUNCH_MODULES = (SUPERVISOR, "ftc.runtime", "torch.distributed.run")


def launch_command(plan: Plan) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={plan.topology.gpus_per_node}", "-m", "ftc.runtime", plan.run_dir]


def launch_env(plan: Plan) -> dict[str, str]:
    env = {**os.environ, **plan.job.cluster.job_env, "FTC_RUN_DIR": plan.run_dir}
    if plan.gpu == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if plan.topology.gpus_per_node > 1:  # as job.sbatch does
        env.setdefault("OMP_NUM_THREADS", str(threads_per_worker(plan)))
    return env


def has_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _start_ticks(pid: int) -> int | None:
    """The process's start time from /proc (None: gone or a zombie), to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _same_dir(value: str | bytes, run_dir: Path) -> bool:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return bool(value) and os.path.realpath(value) == os.path.realpath(run_dir)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def ours(pid: int, run_dir: Path) -> bool:
    """True when `pid` is ftc's supervisor or launch of this run folder: its command line names
    ftc's runtime or supervisor and the run folder (a record cannot point ftc at another process)."""
    args = _cmdline(pid)
    return (any(a in (SUPERVISOR, "ftc.runtime") for a in args)
            and any(_same_dir(a, run_dir) for a in args[1:] if a))


def alive(record: dict, run_dir: Path) -> bool:
    """The recorded process still runs: same pid, same start time, and it is this run's ftc process."""
    pid, ticks = record.get("pid"), record.get("start_ticks")
    if not isinstance(pid, int) or pid <= 1 or ticks is None:
        return False
    return _start_ticks(pid) == ticks and ours(pid, run_dir)


def _launched(pid: int) -> bool:
    """A process of ftc's launch (supervisor, torchrun, runtime worker, or a fork of one), not a
    user's shell that happens to export FTC_RUN_DIR."""
    args = _cmdline(pid)
    return any(a in LAUNCH_MODULES or a.endswith("/torchrun") or a == "torchrun" for a in args)


def run_processes(run_dir: Path) -> list[int]:
    """Every live process of this run: those whose environment has FTC_RUN_DIR set to this folder
    and whose command line is part of ftc's launch (the supervisor, torchrun and its workers, which
    torchrun starts in sessions of their own)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(b"FTC_RUN_DIR=") and _same_dir(item[len(b"FTC_RUN_DIR="):], run_dir):
                if _start_ticks(int(entry.name)) is not None and _launched(int(entry.name)):
                    found.append(int(entry.name))
                break
    return found


def _signal_all(run_dir: Path, sig: int) -> list[int]:
    pids = run_processes(run_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids


def kill_run(run_dir: Path, rounds: int = 20) -> None:
    """SIGKILL every process of the run until none is left (a dying torchrun may still fork once)."""
    for _ in range(rounds):
        if not _signal_all(run_dir, signal.SIGKILL):
            return
        time.sleep(0.1)


def _wait_gone(run_dir: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not run_processes(run_dir):
            return True
        time.sleep(0.2)
    return not run_processes(run_dir)


def state(run_dir: Path, record: dict, status: dict, problems: list[str] | None = None) -> tuple[str, str]:
    """(Customizer state, reason) of a local run, from the process, its exit record and status.json."""
    if alive(record, run_dir):
        return "running", ""
    exit_record, exit_problems = load(Path(run_dir), EXIT, LocalExitRecord)
    if problems is not None:
        problems += exit_problems
    if exit_record.get("pid") != record.get("pid"):
        exit_record = {}
    runtime = status.get("state")
    code = exit_record.get("returncode")
    if runtime == "completed" and code in (0, None) and not exit_problems:
        return "completed", ""  # a stop that came after the last step changed nothing
    if record.get("cancelled") or exit_record.get("interrupted") or runtime in ("cancelled", "preempted"):
        return "cancelled", ""
    if code == 0:
        return "completed", ""
    if code is None:
        return "failed", "the process ended without an exit record"
    if code < 0:
        return "failed", f"signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else "killed"
    return "failed", f"exit code {code}"


def _request_stop(run_dir: Path) -> None:
    """The runtime reads `cancel` in the stop file as: checkpoint, then end for good (no requeue)."""
    (run_dir / STOP_FILE).write_text("cancel\n")


def _write_exit(run_dir: Path, pid: int, code: int, interrupted: bool = False) -> None:

    record = {"pid": pid, "returncode": code, "interrupted": interrupted, "finished_at": now()}
    write_atomic(run_dir / EXIT, json.dumps(record) + "\n")


def _prepare(plan: Plan) -> tuple[Path, Path]:
    """Called under the run folder's lock, after the check that nothing of this run still runs."""
    if not has_torch():
        raise UserError(TRAIN_EXTRA)
    run_dir = Path(plan.run_dir)
    (run_dir / "logs").mkdir(exist_ok=True)
    for name in (STOP_FILE, REQUEUE_FILE, EXIT):
        (run_dir / name).unlink(missing_ok=True)
    return run_dir, run_dir / LOG


def _until_exec(pid: int, run_dir: Path, seconds: float = 10.0) -> None:
    """Wait until the child runs ftc's own command line: until then /proc shows the forked `ftc`,
    and an identical command checking under the lock would take the run for dead."""
    deadline = time.monotonic() + seconds
    while not ours(pid, run_dir) and _start_ticks(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def _record(run_dir: Path, pid: int, log: Path, detach: bool) -> None:
    _until_exec(pid, run_dir)
    write_record(run_dir, new_record(run_dir, "local", job=f"local:{pid}", pid=pid, pgid=pid,
                                     start_ticks=_start_ticks(pid), log=str(log), detach=detach,
                                     script=str(run_dir / "job.sbatch")))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent (ftc, or the supervisor) dies, so a killed
    parent takes torchrun, and through it the workers, along."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def foreground(plan: Plan, started=lambda: None) -> int:
    """The run here, its output streamed to the terminal; `started()` is called once the process
    and its job.json exist (the caller's lock may go)."""
    run_dir, log_path = _prepare(plan)
    interrupts = 0
    child: subprocess.Popen | None = None

    def on_interrupt(signum, frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            # The runtime reads the stop file at each step boundary (the first one included), on
            # every rank together; a signal would reach torchrun too, which then reports a failure.
            _request_stop(run_dir)
            print("\nftc: stopping: the run checkpoints and exits (Ctrl-C again to kill it)", file=sys.stderr)
        else:
            kill_run(run_dir)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with os.fdopen(open_append(log_path), "ab") as log:
            log.write(f"== ftc: local run {plan.run_id} started {now()}\n".encode())
            env = launch_env(plan)
            if sys.stdout.isatty():  # the runtime then redraws one progress line in place
                env["FTC_PROGRESS"] = "live"
            child = subprocess.Popen(launch_command(plan), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
            _record(run_dir, child.pid, log_path, detach=False)
            started()
            print(f"running run {plan.run_id} here (pid {child.pid}); log {log_path}")
            print(f"run folder {run_dir}", flush=True)
            assert child.stdout is not None
            shown = ChildFailedFilter()  # the terminal: the worker's own error line, not torchrun's traceback
            while chunk := os.read(child.stdout.fileno(), 65536):
                sys.stdout.buffer.write(shown.feed(chunk))
                sys.stdout.buffer.flush()
                log.write(chunk)
                log.flush()
            sys.stdout.buffer.write(shown.flush())
            code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        kill_run(run_dir)  # a worker left behind by a torchrun that died, or by an error here, is this run's
    _write_exit(run_dir, child.pid, code, interrupted=interrupts > 0)
    runtime = load(run_dir, STATUS_FILE, RunStatusRecord)[0].get("state")
    if interrupts and not (code == 0 and runtime == "completed"):
        print(f"run {plan.run_id} stopped; run the same command again to resume from its last checkpoint")
        return 130
    if code == 0:
        print(f"run {plan.run_id} completed; outputs in {run_dir}")
        return 0
    print(f"run {plan.run_id} failed (exit code {code}); log {log_path}", file=sys.stderr)
    return 1


def background(plan: Plan) -> list[str]:
    """The run detached, under its supervisor; what happened, in lines for the caller to show."""
    run_dir, log_path = _prepare(plan)
    with os.fdopen(open_append(log_path), "ab") as log:
        log.write(f"== ftc: local run {plan.run_id} started {now()} (detached)\n".encode())
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", SUPERVISOR, str(run_dir), *launch_command(plan)],
                                 env=launch_env(plan), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    _record(run_dir, child.pid, log_path, detach=True)
    return [f"started run {plan.run_id} in the background (pid {child.pid})", f"run folder {run_dir}",
            *(f"  {command}" for command in (f"ftc status {plan.run_id}", f"ftc logs {plan.run_id} -f",
                                             f"ftc cancel {plan.run_id}"))]


def cancel(run_dir: Path, record: dict) -> str:
    """The stop file first (the runtime checkpoints at the next step, or its first one), then SIGTERM,
    then SIGKILL to every process of the run: its environment names the run folder."""
    run_dir = Path(run_dir)
    if not alive(record, run_dir) and not run_processes(run_dir):
        return "not running"
    _request_stop(run_dir)
    write_record(run_dir, {**record, "cancelled": True, "cancelled_at": now()})
    if not _wait_gone(run_dir, CANCEL_GRACE_S / 2):
        _signal_all(run_dir, signal.SIGTERM)
        if not _wait_gone(run_dir, CANCEL_GRACE_S / 2):
            kill_run(run_dir)
    return "cancelled"


def supervise(run_dir: str, command: list[str]) -> int:
    """The detached parent: outlives the `ftc` command and writes the launch's exit code."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    code = child.wait()
    record = read_record(Path(run_dir)) or {}
    _write_exit(Path(run_dir), os.getpid(), code, interrupted=bool(record.get("cancelled")))
    return 0


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], sys.argv[2:]))
