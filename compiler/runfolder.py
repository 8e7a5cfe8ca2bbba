"""The run folder on disk: written whole or not at all, and the files its writers share.

Both halves of ftc write here (the compiler its plan and job records, the runtime its status,
checkpoint markers and outputs), so the atomic writer and the names of the request files that
pass between the job script, the executors and the runtime live in this one light module.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path

STOP_FILE = "stop_requested"  # asks the runtime to checkpoint and stop; "cancel" inside: for good
REQUEUE_FILE = "requeue"  # the runtime asks the job script to requeue the job


def no_link(path: Path) -> OSError:
    return OSError(errno.ELOOP, "a symbolic link where ftc writes a folder of its own; ftc never writes through one",
                   str(path))


def write_atomic(path: str | Path, text: str, mode: int = 0o600) -> None:
    """A reader sees the old file or the new one, never a partial one, even after a crash. The
    folder is opened without following a link and the file made in it by name, so a link planted
    as the folder or the file redirects nothing (OSError ELOOP names it)."""
    path = Path(path)
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise no_link(path.parent) if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.parent.is_symlink() else exc
    try:
        tmp = f".{path.name}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
    finally:
        os.close(folder)


def open_append(path: str | Path) -> int:
    """A log or metrics file opened to append, never through a link planted in its place."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise no_link(Path(path)) if exc.errno == errno.ELOOP else exc


def write_json(path: str | Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
