"""The run folder on disk: written whole or not at all, and the files its writers share.

Both halves of ftc write here (the compiler its plan and job records, the runtime its status,
checkpoint markers and outputs), so the atomic writer and the names of the request files that
pass between the job script, the executors and the runtime live in this one light module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftc.compiler.build import CompiledRun

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_run(run: "CompiledRun") -> Path:
    """Create the run folder whole (temp folder + rename), or refresh the plan files of an existing one.

    An existing folder keeps what earlier submissions left there (job records, checkpoints): the
    compiled files of the same run id are byte-identical, so rewriting them changes nothing.
    """
    run_dir = Path(run.plan.run_dir)
    if run_dir.is_dir():
        for name, text in run.files.items():
            write_atomic(run_dir / name, text)
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        (tmp / "logs").mkdir()
        for name, text in run.files.items():
            (tmp / name).write_text(text)
        os.rename(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir
