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
import stat
import threading
from pathlib import Path

STOP_FILE = "stop_requested"  # asks the runtime to checkpoint and stop; "cancel" inside: for good
REQUEUE_FILE = "requeue"  # the runtime asks the job script to requeue the job


def no_link(path: Path) -> OSError:
    return OSError(errno.ELOOP, "a symbolic link where ftc writes a folder of its own; ftc never writes through one",
                   str(path))


def umask() -> int:
    """The process's umask, read without changing it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_shared(info: os.stat_result) -> bool:
    """A folder of a group-shared root: setgid, so what is made in it keeps the team's group."""
    return stat.S_ISDIR(info.st_mode) and bool(info.st_mode & stat.S_ISGID)


def file_mode(shared: bool) -> int:
    """A new file's mode: what the umask allows, and readable by the group in a shared folder."""
    return (0o666 & ~umask()) | (0o040 if shared else 0)


def folder_mode(shared: bool, group_write: bool = False) -> int:
    """A new folder's mode. In a shared folder it keeps setgid and is group-readable; a folder that
    several users' runs share (<namespace>, <model>-<name>) is also group-writable and sticky, so
    each user may add runs there but only a run's owner may rename or remove it (as /tmp)."""
    mode = 0o777 & ~umask()
    if shared:
        mode |= stat.S_ISGID | 0o050 | (0o070 | stat.S_ISVTX if group_write else 0)
    return mode


def team_umask(folder: str | Path) -> int | None:
    """The umask for writing into `folder` when it is group-shared: the user's, less its group read
    and search bits, so what libraries write there (checkpoints, the model, TensorBoard files,
    Slurm's log) is readable by the team whatever the user's umask; None when it is not shared."""
    try:
        shared = is_shared(os.stat(folder))
    except OSError:
        return None
    return umask() & ~0o050 if shared else None


def use_team_umask(folder: str | Path) -> None:
    """The runtime, for the rest of its life: team_umask when its run folder is group-shared."""
    mask = team_umask(folder)
    if mask is not None:
        os.umask(mask)


_UMASK_SWAP = threading.Lock()  # the umask is the process's: the API server's threads take turns


@contextlib.contextmanager
def umask_for(folder: str | Path):
    """team_umask while the block runs (sbatch hands its umask to the job, so the job writes with it)."""
    mask = team_umask(folder)
    if mask is None:
        yield
        return
    with _UMASK_SWAP:
        previous = os.umask(mask)
        try:
            yield
        finally:
            os.umask(previous)


def make_folder(path: Path, group_write: bool = False) -> None:
    """mkdir of one folder with folder_mode (chmod after mkdir: the umask would drop group write;
    the chmod names setgid, so it is kept)."""
    path = Path(path)
    shared = is_shared(os.stat(path.parent))
    path.mkdir()
    if shared:
        os.chmod(path, folder_mode(True, group_write), follow_symlinks=False)


def make_folders(path: Path, group_write: bool = False) -> None:
    """mkdir -p with make_folder's modes for each folder it creates (exist_ok)."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            make_folder(folder, group_write)
        except FileExistsError:
            if not folder.is_dir():
                raise


def write_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """A reader sees the old file or the new one, never a partial one, even after a crash. The
    folder is opened without following a link and the file made in it by name, so a link planted
    as the folder or the file redirects nothing (OSError ELOOP names it). The mode is the umask's
    (file_mode) unless given: records are as readable as any file the user makes."""
    path = Path(path)
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise no_link(path.parent) if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.parent.is_symlink() else exc
    try:
        tmp = f".{path.name}.{secrets.token_hex(6)}"
        mode = file_mode(is_shared(os.fstat(folder))) if mode is None else mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder)
        try:
            if mode & ~umask() != mode:  # the group bit a shared folder adds, past the umask
                os.fchmod(fd, mode)
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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise no_link(Path(path)) if exc.errno == errno.ELOOP else exc
    return group_readable(fd, os.stat(Path(path).parent))


def group_readable(fd: int, folder: os.stat_result) -> int:
    """A file this user opened (maybe created) in a shared folder: the team reads it whatever the umask."""
    info = os.fstat(fd)
    if info.st_uid == os.getuid() and not info.st_mode & 0o040 and is_shared(folder):
        os.fchmod(fd, stat.S_IMODE(info.st_mode) | 0o040)
    return fd


def write_json(path: str | Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
