"""Who a run belongs to: the user who owns its folder.

The folder's owner is the fact ftc acts on (a stat, cheap for 10,000 runs, and no one but root can
forge it); job.json's `owner` records the submitting user's name for readers of the folder alone.
"""

from __future__ import annotations

import functools
import os
import pwd
from pathlib import Path

from ftc.compiler.runs.terminal import printable


@functools.lru_cache(maxsize=4096)
def owner_name(uid: int | None) -> str:
    """The user's login name, or `uid N` where the machine has no name for it; safe to print."""
    if uid is None:
        return "another user"
    try:
        return printable(pwd.getpwuid(uid).pw_name, 64)
    except (KeyError, OverflowError):
        return f"uid {uid}"


def owner_uid(run_dir: Path) -> int | None:
    """The uid that owns the run folder (not following a link), or None when it cannot be seen."""
    try:
        return os.lstat(run_dir).st_uid
    except OSError:
        return None


def mine(run_dir: Path) -> bool:
    return owner_uid(run_dir) == os.getuid()
