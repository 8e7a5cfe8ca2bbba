"""The run folder on disk: written whole or not at all, and the files its writers share.

Both halves of ftc write here (the compiler its plan and job records, the runtime its status,
checkpoint markers and outputs), so the atomic writer and the names of the request files that
pass between the job script, the executors and the runtime live in this one light module.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

STOP_FILE = "stop_requested"  # asks the runtime to checkpoint and stop; "cancel" inside: for good
REQUEUE_FILE = "requeue"  # the runtime asks the job script to requeue the job


def write_atomic(path: str | Path, text: str) -> None:
    """A reader sees the old file or the new one, never a partial one, even after a crash."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str | Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
