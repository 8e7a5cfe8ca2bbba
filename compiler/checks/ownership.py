"""Files whose contents become commands: refused when someone else could have changed them.

As ssh refuses a group-writable authorized_keys, ftc refuses a site folder or file, a token file,
or a folder above the output root that another user can write (or that another non-root user
owns): a `setup:` line in a site file runs on every job, a token file lets a reader submit as you,
and a writable parent lets anyone swap the folder for a link. A folder that others may write but
not rename in (the sticky bit, as /tmp) is safe. A team that shares one group folder opts in
explicitly: FTC_SHARED_GROUP=<group> accepts group write for files of that group only.
"""

from __future__ import annotations

import grp
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ftc.compiler.errors import UserError

SHARED_GROUP_ENV = "FTC_SHARED_GROUP"


def _shared_gid() -> int | None:
    name = os.environ.get(SHARED_GROUP_ENV, "").strip()
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise UserError(f"{SHARED_GROUP_ENV}: no group {name!r} on this machine") from None


def problem(path: str | Path, info: os.stat_result, what: str) -> str | None:
    """Why `path` may not be trusted, or None."""
    me = os.getuid()
    if info.st_uid not in (me, 0):
        return f"{what} {path}: owned by uid {info.st_uid}, not by you or root; ftc will not use it"
    mode = info.st_mode
    sticky_dir = stat.S_ISDIR(mode) and mode & stat.S_ISVTX
    if mode & stat.S_IWOTH and not sticky_dir:
        return f"{what} {path}: writable by every user (mode {mode & 0o7777:04o}; chmod o-w); ftc will not use it"
    if mode & stat.S_IWGRP and not sticky_dir and info.st_gid != _shared_gid():
        return (f"{what} {path}: writable by its group (chmod g-w, or set {SHARED_GROUP_ENV}=<group> "
                "for a folder your team shares); ftc will not use it")
    return None


def _problem_at(path: str | Path, what: str) -> str | None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):  # a link is judged by what it points at
        try:
            info = os.stat(path)
        except OSError:
            return f"{what} {path}: a link to nothing"
    return problem(path, info, what)


def check(path: str | Path, what: str) -> None:
    """Refuse `path` when others may write it (a link is judged by what it points at)."""
    found = _problem_at(path, what)
    if found:
        raise UserError(found)


def _parent_problems(path: str | Path, what: str) -> Iterator[str]:
    current = Path(os.path.realpath(path)).parent
    while True:
        try:
            info = os.stat(current)
        except OSError:
            info = None
        if info is not None:
            found = problem(current, info, f"{what}: the folder above,")
            if found:
                yield found
        if current.parent == current:
            return
        current = current.parent


def check_parents(path: str | Path, what: str) -> None:
    """Refuse when a folder above `path` (resolved) lets others replace what lies below it."""
    for found in _parent_problems(path, what):
        raise UserError(found)


_checked: dict[str, float] = {}  # folder -> when it was last found safe
RECHECK_S = 10.0  # a long-lived `ftc serve` sees a later chmod within this


def tree_problems(folder: str | Path, what: str, limit: int = 10_000, each=None) -> Iterator[str]:
    """Every reason not to trust a site folder: its parents, itself and each entry below it (at most
    `limit`; `each(path)` runs on every file found safe). `ftc site check` lists them all."""
    key = os.path.realpath(folder)
    yield from _parent_problems(key, what)
    found = _problem_at(key, what)
    if found:
        yield found
    seen = 0
    for root, dirs, files in os.walk(key):
        for name in dirs + files:
            seen += 1
            if seen > limit:
                yield f"{what} {folder}: more than {limit} entries; a site folder holds configs"
                return
            found = _problem_at(os.path.join(root, name), what)
            if found:
                yield found
            elif each is not None and name in files:
                each(os.path.join(root, name))


def check_tree(folder: str | Path, what: str, limit: int = 10_000, each=None) -> None:
    """Refuse a site folder at its first problem (see tree_problems), once per process."""
    key = os.path.realpath(folder)
    if time.monotonic() - _checked.get(key, -RECHECK_S) < RECHECK_S:
        return
    for found in tree_problems(key, what, limit, each):
        raise UserError(found)
    _checked[key] = time.monotonic()
