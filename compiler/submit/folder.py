"""Writing a compiled run's folder: whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ftc.compiler.planning.build import CompiledRun
from ftc.compiler.runfolder import write_atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_run(run: CompiledRun) -> Path:
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
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if run_dir.is_dir():  # an identical command made the same folder first: use that one
            return write_run(run)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir
