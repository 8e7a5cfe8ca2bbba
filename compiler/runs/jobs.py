"""`ftc status|logs|cancel`: job control by run id, a unique prefix of one, or a Slurm job id."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.runfolder import STOP_FILE
from ftc.compiler.runs import runstate
from ftc.compiler.runs.runstate import ACTIVE, RunView, clock
from ftc.compiler.runs.terminal import printable
from ftc.compiler.submit import slurm

FOLLOW_POLL_S = 1.0
CELL_CHARS = 60
DETAIL_CHARS = 1000
LOG_SHOWN = 8 << 20  # `ftc logs` shows at most the last 8 MiB; `-f` then follows
LOG_CHUNK = 1 << 20  # bytes copied per read


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(printable(f"{self.prog}: {message}"))


def _parse(command: str, args: list[str], run_required: bool, follow: bool = False,
           listing: bool = False) -> argparse.Namespace:
    parser = _Parser(prog=f"ftc {command}")
    if listing:
        parser.add_argument("--all", action="store_true", help="list dry runs (compiled, never submitted) too")
        parser.add_argument("--all-users", action="store_true", help="every user's runs, not only yours")
    parser.add_argument("run", nargs=None if run_required else "?", help="run id, unique prefix, or Slurm job id")
    parser.add_argument("--root", help="output root (default $FTC_OUTPUT_ROOT or ./runs)")
    if follow:
        parser.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    return parser.parse_args(args)


def _check_selector(query: str) -> None:
    if not query or not query.strip():
        raise UserError("run: empty; name a run id, a unique prefix of one, or a Slurm job id "
                        "(ftc status lists them); an empty selector never means all runs")
    if len(query) > 4096 or any(not c.isprintable() for c in query):
        raise UserError(f"run: {printable(query, 60)!s} is not a run id, prefix or Slurm job id")


def _candidates(folders: list[Path]) -> str:
    shown = ", ".join(printable(f.name, 40) for f in sorted(folders)[:5])
    return shown + (f" and {len(folders) - 5} more" if len(folders) > 5 else "")


def _one_array(folders: list[Path]) -> bool:
    """Runs named together by a Slurm job id must be the tasks of one sweep's job array."""
    found = [records.read_record(f) or {} for f in folders]
    tasks = [r.get("array_index") for r in found]
    return (len({r.get("job_id") for r in found}) == 1 and None not in tasks and len(set(tasks)) == len(tasks)
            and all(r.get("sweep") for r in found))


def resolve(query: str, root: Path) -> list[Path]:
    """Run folders named by `query`: a run folder path, a run id, a Slurm job id, or a unique prefix."""
    _check_selector(query)
    if (Path(query) / "plan.json").is_file() and os.sep in query:
        return [Path(query).resolve()]
    runs = runstate.answerable(runstate.find_runs(root))  # a look-alike folder is listed, never selected
    exact = [r for r in runs if r.name == query]
    if len(exact) > 1:
        raise UserError(runstate.ambiguous(query, exact, root))
    if exact:
        return exact
    by_job = []
    for run in runs:
        record = records.read_record(run) or {}
        if query in (record.get("job"), record.get("job_id"), *record.get("previous", [])):
            by_job.append(run)
    if len(by_job) > 1 and not _one_array(by_job):
        raise UserError(f"run: Slurm job {printable(query)} is named by {len(by_job)} run folders "
                        f"({_candidates(by_job)}); name one run id")
    if by_job:
        return by_job
    prefix = [r for r in runs if r.name.startswith(query)]
    if len(prefix) > 1:
        raise UserError(f"run: {printable(query)!r} matches {len(prefix)} runs ({_candidates(prefix)}); "
                        "give more of the run id")
    if not prefix:
        raise UserError(f"run: no run matches {printable(query)!r} under {printable(root)} "
                        "(give a run id, a unique prefix of one, or a Slurm job id)")
    return prefix


def _views(query: str | None, root: Path, notes: list[str] | None = None, all_users: bool = True,
           others: list[str] | None = None) -> list[RunView]:
    """The runs a selector names (anyone's: another user's run is readable), or the listing: the
    caller's runs unless `all_users`."""
    if query is not None:
        folders = resolve(query, root)
    else:
        folders = runstate.find_runs(root, None if all_users else os.getuid(), others)
    return runstate.resolve_states([runstate.load(f, plan=len(folders) == 1) for f in folders], notes)


def _one(query: str, root: Path) -> RunView:
    views = _views(query, root)
    if len(views) > 1:
        ids = ", ".join(printable(v.run_id, 40) for v in views)
        raise UserError(f"{printable(query)!r} names {len(views)} runs (a job array: {ids}); name one run id")
    return views[0]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def table(views: list[RunView]) -> str:
    """One row per run; a SWEEP column (its id and what differs within it) when a listed run is a sweep's point."""
    from ftc.compiler.runs.compare import sweep_column

    sweeps = sweep_column(views)
    extra = ("SWEEP",) if any(cell != "-" for cell in sweeps) else ()
    header = ("NAME", "RUN ID", "OWNER", "JOB", "STATE", "ELAPSED", "PROGRESS", "TRAIN LOSS", "VAL LOSS", *extra)
    rows = [header]
    for v, sweep in zip(views, sweeps):
        percent = v.status.get("percent")
        rows.append(tuple(printable(cell, CELL_CHARS) for cell in (
            v.name, v.run_id, v.owner, v.job, v.label, clock(v.elapsed_s),
            f"{percent:.0f}%" if isinstance(percent, (int, float)) else "-",
            _num(v.status.get("train_loss")), _num(v.status.get("val_loss")), *((sweep,) if extra else ()))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _plan_lines(view: RunView) -> list[str]:
    from pydantic import ValidationError

    from ftc.compiler.planning.plan import Plan
    from ftc.compiler.planning.versions import migrate
    from ftc.compiler.report import summary

    try:  # a plan an earlier release wrote is shown as this one reads it
        return summary(Plan.model_validate(migrate(view.plan))).splitlines()
    except (ValidationError, TypeError, ValueError, AttributeError, KeyError):
        return [f"run        {view.plan.get('output_name', view.run_id)}", f"run folder {view.run_dir}"]


def _eval_lines(data: dict) -> list[str]:
    before, after = data.get("before") or {}, data.get("after") or {}
    parts = [f"{key} {_num(before.get(key))} -> {_num(value)}" if _finite(before.get(key)) else f"{key} {_num(value)}"
             for key, value in after.items() if _finite(value)]
    lines = [f"eval       {', '.join(parts)}"] if parts else []
    return lines + [f"warning    {w}" for w in data.get("warnings", [])]


def detail(view: RunView) -> str:
    lines = _plan_lines(view)
    record, status = view.record or {}, view.status
    said = record.get("owner")
    lines.append(f"owner      {view.owner}" + (f" (job.json says {said})" if said and said != view.owner else ""))
    if record:
        where = f"Slurm job {record.get('job')}" if record.get("executor") == "slurm" else f"local pid {record.get('pid')}"
        sweep = f", task {record['array_index']} of sweep {record['sweep']}" if record.get("sweep") else ""
        lines.append(f"job        {where}{sweep}, submitted {record.get('submitted_at')}")
        if record.get("script_sha256"):
            lines.append(f"script     {record.get('script')} (sha256 {record['script_sha256'][:16]})")
    reason = f" ({view.reason})" if view.reason else ""
    lines.append(f"state      {view.state}{reason}" + (f" [from {view.source}]" if view.source else ""))
    if view.why:
        lines.append(f"why        {view.why}")
    if view.error_line:
        lines.append(f"error      {view.error_line}")
    if status.get("step") is not None:
        lines.append(
            f"progress   {_num(status.get('percent'))}%: step {status.get('step')}/{status.get('max_steps') or '?'}, "
            f"epoch {_num(status.get('epoch'))}, elapsed {clock(view.elapsed_s)}, eta {clock(status.get('eta_s'))}"
            + (" (early stopped)" if status.get("early_stopped") else "")
        )
    losses = [f"{label} {_num(status[key])}" for label, key in
              (("train", "train_loss"), ("val", "val_loss"), ("best val", "best_val_loss")) if status.get(key) is not None]
    if losses:
        lines.append(f"loss       {', '.join(losses)}")
    evaluation, problems = records.load(view.run_dir, records.EVAL_FILE, records.EvalRecord)
    outputs, more = records.load(view.run_dir, records.OUTPUTS_FILE, records.OutputsRecord)
    lines += _eval_lines(evaluation)
    lines += [f"output     {kind}: {path}" for kind, path in (outputs.get("paths") or {}).items()]
    if view.log is not None:
        lines.append(f"log        {view.log}  (ftc logs {view.run_id} -f)")
    lines += [f"{'unreadable' if records.UNREADABLE in problem else 'damaged   '} {problem}"
              for problem in view.problems + problems + more]
    return "\n".join(printable(line, DETAIL_CHARS) for line in lines)


def _printable_errors(command):
    """A refusal quotes paths and values from the run folder: escaped like everything else shown."""
    def run(args: list[str]) -> int:
        try:
            return command(args)
        except UserError as exc:
            raise UserError(*(printable(p, DETAIL_CHARS) for p in exc.problems or [str(exc)])) from None

    run.__doc__ = command.__doc__
    return run


@_printable_errors
def status_command(args: list[str]) -> int:
    options = _parse("status", args, run_required=False, listing=True)
    root = runstate.output_root(options.root)
    notes: list[str] = []
    others: list[str] = []
    views = _views(options.run, root, notes, options.all_users, others)
    if options.run is not None and len(views) == 1:
        print(detail(views[0]))
    else:
        drafts = [v for v in views if v.state == "created"]
        shown = views if options.all else [v for v in views if v.state != "created"]
        whose = "" if options.all_users or options.run is not None else " of yours"
        print(table(shown) if shown else f"no submitted runs{whose} under {printable(root)}")
        if drafts and not options.all:
            print(f"({len(drafts)} more compiled but never submitted, dry runs: ftc status --all lists them)")
        if others:
            print(f"({len(others)} run{'s' if len(others) != 1 else ''} of other users: ftc status --all-users lists them)")
    for note in notes:
        print(f"ftc: {note}", file=sys.stderr)
    return 0


def _open_log(path: Path, run_dir: Path) -> int | None:
    """A descriptor on the log, if it is a regular file inside the run folder; None while absent."""
    if not records.is_inside(path.parent, run_dir) or path.parent.name != "logs":
        raise UserError(f"{printable(path)}: not a log inside the run folder {printable(run_dir)}")
    try:
        return records.open_regular(path)
    except records.RecordError as exc:
        raise UserError(f"{printable(exc)}; ftc shows only the job's own log file") from None


def _copy_new(fd: int | None, offset: int, limit: int = LOG_CHUNK) -> int:
    """Copy at most `limit` new bytes from `offset`; a log that shrank is read again from its start."""
    if fd is None:
        return offset
    size = os.fstat(fd).st_size
    if size < offset:
        offset = 0
    chunk = os.pread(fd, min(limit, max(0, size - offset)), offset)
    if chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return offset + len(chunk)


@_printable_errors
def logs_command(args: list[str]) -> int:
    options = _parse("logs", args, run_required=True, follow=True)
    view = _one(options.run, runstate.output_root(options.root))
    if view.damaged or view.misnamed:
        raise UserError(view.problems[0] if view.misnamed else next(p for p in view.problems if records.JOB_FILE in p))
    if view.log is None:
        raise UserError(f"run {printable(view.run_id)} has no log: it was compiled but never submitted")
    fd = _open_log(view.log, view.run_dir)
    try:
        return _show_log(options, view, fd)
    finally:
        if fd is not None:
            os.close(fd)


def _show_log(options: argparse.Namespace, view: RunView, fd: int | None) -> int:
    offset = 0
    if fd is not None and os.fstat(fd).st_size > LOG_SHOWN:
        offset = os.fstat(fd).st_size - LOG_SHOWN
        print(f"ftc: showing the last {LOG_SHOWN >> 20} MiB of {printable(view.log)}", file=sys.stderr)
    while (new := _copy_new(fd, offset)) != offset:
        offset = new
    if not options.follow:
        if fd is None:
            print(f"no log yet: run {printable(view.run_id)} is {printable(view.label)}", file=sys.stderr)
        return 0
    told = False
    while True:
        view = runstate.resolve_states([runstate.load(view.run_dir)])[0]
        if fd is None and view.log is not None:
            fd = _open_log(view.log, view.run_dir)
        offset = _copy_new(fd, offset)
        if view.state not in ACTIVE:
            time.sleep(FOLLOW_POLL_S)
            while (new := _copy_new(fd, offset)) != offset:
                offset = new
            print(f"ftc: run {printable(view.run_id)} is {printable(view.label)}", file=sys.stderr)
            return 0
        if not told and fd is None:
            reason = f" ({view.reason})" if view.reason else ""
            print(printable(f"ftc: waiting for run {view.run_id} to start: {view.state}{reason}"), file=sys.stderr)
            told = True
        time.sleep(FOLLOW_POLL_S)


def cancel_run(view: RunView) -> str:
    """Cancel one run (the stop file, then scancel or the local process group); what was done, in words.

    Only a record that validates is acted on: a damaged job.json signals nothing.
    """
    record, run_id = view.record, printable(view.run_id)
    if view.misnamed:
        raise UserError(view.problems[0] + " (nothing was signalled)")
    if view.damaged:
        raise UserError(next(p for p in view.problems if records.JOB_FILE in p) +
                        " (nothing was signalled: ftc cancels only jobs its records name validly)")
    if not view.mine:
        job = f"Slurm job {printable(record['job'])} " if record and record.get("job") else ""
        raise UserError(f"run {run_id} belongs to {view.owner}: only its owner cancels it ({job}as Slurm's "
                        "own rule: a job is cancelled by its user or an operator); nothing was signalled")
    if not record:
        return f"run {run_id} was never submitted; nothing to cancel"
    if view.state not in ACTIVE:
        return f"run {run_id} is already {printable(view.label)}; nothing to cancel"
    if record.get("executor") == "local":
        from ftc.compiler.submit import local

        return f"run {run_id} (local pid {record.get('pid')}): {local.cancel(view.run_dir, record)}"
    if view.state == "running":
        (view.run_dir / STOP_FILE).write_text("cancel\n")
    try:
        slurm.cancel(record["job"])
    except slurm.SlurmError as exc:
        raise UserError(f"scancel {record['job']}: {exc}") from None
    return f"cancelled run {run_id} (Slurm job {record['job']})"


@_printable_errors
def cancel_command(args: list[str]) -> int:
    options = _parse("cancel", args, run_required=True)
    for view in _views(options.run, runstate.output_root(options.root)):
        print(cancel_run(view))
    return 0
