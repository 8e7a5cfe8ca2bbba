"""Writing a compiled run's folder: whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ftc.compiler.config.fields import IDENTIFIER
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import CompiledRun
from ftc.compiler.runfolder import file_mode, folder_mode, is_shared, make_folder, no_link, write_atomic
from ftc.compiler.runs.owner import owner_name
from ftc.compiler.submit.kept import keeps_plan


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (deepest last), so a failure can take them back.
    On a shared root the folders several users' runs go into are group-writable and sticky."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created = []
    for path in reversed(missing):
        make_folder(path, group_write=True)
        created.append(path)
    return created


def refuse_others(run_dir: Path) -> None:
    """A run belongs to the user who submitted it: ftc writes into no run folder someone else owns.
    The other user's identical request is refused in one line that names the owner and the way out."""
    try:
        info = os.lstat(run_dir)
    except OSError:
        return
    if info.st_uid != os.getuid():
        me = owner_name(os.getuid())
        raise UserError(f"run {run_dir.name}: {run_dir} belongs to {owner_name(info.st_uid)}, and ftc never writes "
                        f"into another user's run; see it with ftc status {run_dir.name}, or train your own "
                        f"with namespace={me if IDENTIFIER.fullmatch(me) else 'NAME'} (or your own output_root=)")


def _remove_created(paths: Iterable[Path]) -> None:
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        try:
            path.rmdir()  # only ever empty folders this call made
        except OSError:
            pass


def _refuse_links(run_dir: Path) -> None:
    """The folders ftc makes under output_root (<namespace>/<model>-<name>/<run id>) must be real
    folders: a link planted in their place (run ids are predictable) would take the writes elsewhere."""
    for folder in (run_dir.parent.parent, run_dir.parent, run_dir):
        if folder.is_symlink():
            raise no_link(folder)


def _write_one(run: CompiledRun, created: list[Path]) -> Path:
    run_dir = Path(run.plan.run_dir)
    _refuse_links(run_dir)
    refuse_others(run_dir)
    if run_dir.is_dir():
        if keeps_plan(run):  # submitted before, by another release: its plan stays (see kept.py)
            return run_dir
        for name, text in run.files.items():
            write_atomic(run_dir / name, text)
        return run_dir
    created += _make_parents(run_dir.parent)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}."))
    try:
        shared = is_shared(os.stat(run_dir.parent))
        os.chmod(tmp, folder_mode(shared))  # names setgid on a shared root, so it is kept
        make_folder(tmp / "logs")
        for name, text in run.files.items():
            (tmp / name).write_text(text)
            if shared:  # the team reads the plan whatever the umask
                os.chmod(tmp / name, file_mode(True))
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


def write_runs(runs: list[CompiledRun]) -> list[Path]:
    """Create every run folder whole (temp folder + rename), or refresh the plan files of existing ones.

    An existing folder keeps what earlier submissions left there (job records, checkpoints): the
    compiled files of the same run id are byte-identical, so rewriting them changes nothing. When a
    write fails (a full or read-only disk, no permission) the folders this call created are removed
    again, so nothing partial is left, and the failure is one line naming output_root.
    """
    created: list[Path] = []
    new_runs: list[Path] = []
    try:
        written = []
        for run in runs:
            fresh = not Path(run.plan.run_dir).is_dir()
            written.append(_write_one(run, created))
            if fresh:
                new_runs.append(written[-1])
        return written
    except OSError as exc:
        for run_dir in new_runs:
            shutil.rmtree(run_dir, ignore_errors=True)
        _remove_created(created)
        where = exc.filename or (runs[0].plan.run_dir if runs else "")
        raise UserError(f"output_root: cannot write {where}: {exc.strerror or exc}; nothing was written") from None


def write_run(run: CompiledRun) -> Path:
    return write_runs([run])[0]
