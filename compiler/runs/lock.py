"""One submission at a time per run folder: the check "does this run still need a job?" and the
submission it leads to happen under one exclusive lock, so identical commands started together
give one job, and the others see it and say which. And one runtime at a time: the runtime holds
its own lock on the folder for its whole life (the kernel lets go when the process dies, however),
so a second runtime on the same folder refuses to start."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".submit.lock"
RUNTIME_LOCK_FILE = ".runtime.lock"


class Busy(Exception):
    """Another process holds the lock: its pid, as it wrote it."""


def _open_in(run_dir: Path, name: str) -> int:
    """The lock file, opened in the run folder without following a link as the folder or the file."""
    folder = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
    finally:
        os.close(folder)


def hold_runtime_lock(run_dir: Path) -> int:
    """Take the runtime's lock without waiting and keep it until the process ends (the returned
    descriptor stays open); Busy names the pid of the runtime that has it."""
    fd = _open_in(Path(run_dir), RUNTIME_LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise Busy(holder if holder.isdigit() else "?") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """flock on RUN_DIR/.submit.lock; blocks until the holder has submitted and written job.json."""
    fd = _open_in(Path(run_dir), LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_locks(run_dirs: list[Path]) -> Iterator[None]:
    """The locks of several run folders (a sweep), taken in one order so two sweeps cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for run_dir in sorted({str(Path(d)) for d in run_dirs}):
            stack.enter_context(run_lock(Path(run_dir)))
        yield
