"""The local executor: the plan's own launch line (torchrun -m ftc.runtime RUN_DIR) on this machine.

Foreground by default: the log streams to the terminal and to RUN_DIR/logs/local.out, and the first
Ctrl-C asks the runtime to checkpoint and stop (through the run's stop file), a second one
kills it. With detach=true a small supervisor (`python -m ftc.compiler.submit.local`) runs the launch in a
new session and records its exit code, so `status` can tell completed from failed afterwards.
The training stack is only needed by the child: this module never imports it.
"""

from __future__ import annotations

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
from ftc.compiler.records import new_record, now, read_json, read_record, write_record
from ftc.compiler.runfolder import REQUEUE_FILE, STOP_FILE, write_atomic

TRAIN_EXTRA = "the local executor needs the train extra: pip install 'ftc[train]'"
LOG = "logs/local.out"
EXIT = "logs/local-exit.json"
CANCEL_GRACE_S = 30.0


def launch_command(plan: Plan) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={plan.topology.gpus_per_node}", "-m", "ftc.runtime", plan.run_dir]


def launch_env(plan: Plan) -> dict[str, str]:
    env = {**os.environ, **plan.job.cluster.env, "FTC_RUN_DIR": plan.run_dir}
    if plan.gpu == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _has_torch() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _start_ticks(pid: int) -> int | None:
    """The process's start time from /proc (None: gone or a zombie), to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(record: dict) -> bool:
    pid = record.get("pid")
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        ticks = _start_ticks(pid)
        return ticks is not None and ticks == record.get("start_ticks", ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def state(run_dir: Path, record: dict, status: dict) -> tuple[str, str]:
    """(Customizer state, reason) of a local run, from the process, its exit record and status.json."""
    if alive(record):
        return "running", ""
    exit_record = read_json(Path(run_dir) / EXIT) or {}
    if exit_record.get("pid") != record.get("pid"):
        exit_record = {}
    runtime = status.get("state")
    if record.get("cancelled") or exit_record.get("interrupted") or runtime in ("cancelled", "preempted"):
        return "cancelled", ""
    code = exit_record.get("returncode")
    if code == 0 or (code is None and runtime == "completed"):
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
    if not _has_torch():
        raise UserError(TRAIN_EXTRA)
    run_dir = Path(plan.run_dir)
    (run_dir / "logs").mkdir(exist_ok=True)
    for name in (STOP_FILE, REQUEUE_FILE, EXIT):
        (run_dir / name).unlink(missing_ok=True)
    return run_dir, run_dir / LOG


def _record(run_dir: Path, pid: int, log: Path, detach: bool) -> None:
    write_record(run_dir, new_record(run_dir, "local", job=f"local:{pid}", pid=pid, pgid=pid,
                                     start_ticks=_start_ticks(pid), log=str(log), detach=detach,
                                     script=str(run_dir / "job.sbatch")))


def run(plan: Plan, detach: bool = False) -> int:
    return background(plan) if detach else foreground(plan)


def foreground(plan: Plan) -> int:
    run_dir, log_path = _prepare(plan)
    interrupts = 0
    child: subprocess.Popen | None = None

    def on_interrupt(signum, frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if child is None:
            return
        if interrupts == 1:
            # The runtime reads the stop file at each step boundary, on every rank together; a
            # signal would reach torchrun too, which then reports a failure for a clean stop.
            _request_stop(run_dir)
            print("\nftc: stopping: the run checkpoints and exits (Ctrl-C again to kill it)", file=sys.stderr)
        else:
            os.killpg(child.pid, signal.SIGKILL)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with open(log_path, "ab") as log:
            log.write(f"== ftc: local run {plan.run_id} started {now()}\n".encode())
            env = launch_env(plan)
            if sys.stdout.isatty():  # the runtime then redraws one progress line in place
                env["FTC_PROGRESS"] = "live"
            child = subprocess.Popen(launch_command(plan), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            _record(run_dir, child.pid, log_path, detach=False)
            print(f"running run {plan.run_id} here (pid {child.pid}); log {log_path}")
            print(f"run folder {run_dir}", flush=True)
            assert child.stdout is not None
            while chunk := os.read(child.stdout.fileno(), 65536):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
                log.flush()
            code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    _write_exit(run_dir, child.pid, code, interrupted=interrupts > 0)
    if interrupts:
        print(f"run {plan.run_id} stopped; run the same command again to resume from its last checkpoint")
        return 130
    if code == 0:
        print(f"run {plan.run_id} completed; outputs in {run_dir}")
        return 0
    print(f"run {plan.run_id} failed (exit code {code}); log {log_path}", file=sys.stderr)
    return 1


def background(plan: Plan) -> int:
    run_dir, log_path = _prepare(plan)
    with open(log_path, "ab") as log:
        log.write(f"== ftc: local run {plan.run_id} started {now()} (detached)\n".encode())
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", "ftc.compiler.submit.local", str(run_dir), *launch_command(plan)],
                                 env=launch_env(plan), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    _record(run_dir, child.pid, log_path, detach=True)
    print(f"started run {plan.run_id} in the background (pid {child.pid})")
    print(f"run folder {run_dir}")
    for command in (f"ftc status {plan.run_id}", f"ftc logs {plan.run_id} -f", f"ftc cancel {plan.run_id}"):
        print(f"  {command}")
    return 0


def cancel(run_dir: Path, record: dict) -> str:
    """The stop file first (the runtime checkpoints at the next step), then SIGTERM, then SIGKILL."""
    if not alive(record):
        return "not running"
    _request_stop(run_dir)
    write_record(run_dir, {**record, "cancelled": True, "cancelled_at": now()})
    pgid = record.get("pgid") or record["pid"]
    try:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                os.killpg(pgid, sig)
            deadline = time.monotonic() + CANCEL_GRACE_S / 2
            while alive(record) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not alive(record):
                break
    except ProcessLookupError:
        pass
    return "cancelled"


def supervise(run_dir: str, command: list[str]) -> int:
    """The detached parent: outlives the `ftc` command and writes the launch's exit code."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: None)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    code = child.wait()
    record = read_record(Path(run_dir)) or {}
    _write_exit(Path(run_dir), os.getpid(), code, interrupted=bool(record.get("cancelled")))
    return 0


if __name__ == "__main__":
    sys.exit(supervise(sys.argv[1], sys.argv[2:]))
