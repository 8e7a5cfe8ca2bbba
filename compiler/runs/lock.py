"""One submission at a time per run folder: the check "does this run still need a job?" and the
submission it leads to happen under one exclusive lock, so identical commands started together
give one job, and the others see it and say which."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".submit.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """flock on RUN_DIR/.submit.lock; blocks until the holder has submitted and written job.json."""
    fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
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
