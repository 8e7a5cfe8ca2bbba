"""A run folder that already has history keeps the plan it ran with, across ftc upgrades.

The run id hashes the request, not ftc's version, so after an upgrade the same command finds the
same folder. If this release compiles the request differently (a better estimate, a new default),
a folder that was never submitted simply gets the new files; one that was (queued, completed,
failed with checkpoints) keeps its own plan.json and job.sbatch: a queued job is not changed under
Slurm's feet, a completed run stays completed, and a resumed run resumes what it trained. The
difference is reported, never silently retrained; removing the folder trains anew with the new plan.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.planning.build import CompiledRun
from ftc.compiler.runs.terminal import printable

VERSION_FIELDS = ("ftc_version", "plan_schema")


def has_history(run_dir: Path) -> bool:
    """A job was submitted from this folder (its job record exists, readable or not)."""
    return (run_dir / records.JOB_FILE).is_symlink() or (run_dir / records.JOB_FILE).exists()


def _stored_plan(run_dir: Path) -> str | None:
    try:
        return records.read_text(run_dir / records.PLAN_FILE, records.PLAN_LIMIT, inside=run_dir)
    except records.RecordError:
        return None


def keeps_plan(run: CompiledRun) -> bool:
    """The folder has history and its plan.json is not the one this ftc compiles."""
    run_dir = Path(run.plan.run_dir)
    if not run_dir.is_dir() or not has_history(run_dir):
        return False
    return _stored_plan(run_dir) != run.files["plan.json"]


def changed_fields(old: object, new: object, prefix: str = "", depth: int = 3) -> list[str]:
    """Dotted names of what differs between two plans (down to `depth` levels)."""
    if isinstance(old, dict) and isinstance(new, dict) and depth > 0:
        out = []
        for key in sorted(set(old) | set(new)):
            if not prefix and key in VERSION_FIELDS:
                continue
            out += changed_fields(old.get(key), new.get(key), f"{prefix}{key}.", depth - 1)
        return out
    return [] if old == new else [prefix.rstrip(".")]


def folder_run(run: CompiledRun) -> tuple[CompiledRun, str | None]:
    """The run to submit: this compile's, or the folder's own when it keeps its plan (with a line
    saying so). A kept plan this ftc cannot run is refused here, on the login node, not at job start."""
    if not keeps_plan(run):
        return run, None
    from ftc.runtime.planfile import load_plan  # pydantic only: the login node may import it

    run_dir = Path(run.plan.run_dir)
    way_out = f"; to train it anew with this ftc's plan, remove {run_dir}"
    try:
        plan = load_plan(str(run_dir))
        files = {name: records.read_text(run_dir / name, records.PLAN_LIMIT, inside=run_dir) for name in run.files}
    except (UserError, records.RecordError) as exc:
        raise UserError(f"{exc}{way_out}") from None
    missing = sorted(name for name, text in files.items() if text is None)
    if missing:
        raise UserError(f"{run_dir}: {', '.join(missing)} missing from a run that was submitted before{way_out}")
    changed = changed_fields(json.loads(files["plan.json"]), json.loads(run.files["plan.json"]))
    if not changed:  # only the release differs: the same run, nothing to report
        return CompiledRun(plan, files), None
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    note = (f"run {run.plan.run_id} keeps the plan ftc {printable(plan.ftc_version)} compiled for it; this ftc "
            f"{run.plan.ftc_version} would plan it differently ({shown}){way_out}")
    return CompiledRun(plan, files), note
