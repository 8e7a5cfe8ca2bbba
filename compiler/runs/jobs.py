"""`ftc status|logs|cancel`: job control by run id, a unique prefix of one, or a Slurm job id."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.runfolder import STOP_FILE
from ftc.compiler.runs import runstate
from ftc.compiler.runs.runstate import ACTIVE, RunView, clock
from ftc.compiler.submit import slurm

FOLLOW_POLL_S = 1.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _parse(command: str, args: list[str], run_required: bool, follow: bool = False) -> argparse.Namespace:
    parser = _Parser(prog=f"ftc {command}")
    parser.add_argument("run", nargs=None if run_required else "?", help="run id, unique prefix, or Slurm job id")
    parser.add_argument("--root", help="output root (default $FTC_OUTPUT_ROOT or ./runs)")
    if follow:
        parser.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    return parser.parse_args(args)


def resolve(query: str, root: Path) -> list[Path]:
    """Run folders named by `query`: a run folder path, a run id, a Slurm job id, or a unique prefix."""
    if (Path(query) / "plan.json").is_file():
        return [Path(query).resolve()]
    runs = runstate.find_runs(root)
    exact = [r for r in runs if r.name == query]
    if exact:
        return exact
    by_job = []
    for run in runs:
        record = records.read_record(run) or {}
        if query in (record.get("job"), record.get("job_id"), *record.get("previous", [])):
            by_job.append(run)
    if by_job:
        return by_job
    prefix = [r for r in runs if r.name.startswith(query)]
    if len(prefix) > 1:
        names = ", ".join(sorted(r.name for r in prefix)[:5])
        raise UserError(f"{query!r} matches {len(prefix)} runs ({names}); give more of the run id")
    if not prefix:
        raise UserError(f"no run matches {query!r} under {root} (give a run id, a unique prefix of one, or a Slurm job id)")
    return prefix


def _views(query: str | None, root: Path) -> list[RunView]:
    folders = resolve(query, root) if query else runstate.find_runs(root)
    return runstate.resolve_states([runstate.load(f) for f in folders])


def _one(query: str, root: Path) -> RunView:
    views = _views(query, root)
    if len(views) > 1:
        ids = ", ".join(v.run_id for v in views)
        raise UserError(f"{query!r} names {len(views)} runs (a job array: {ids}); name one run id")
    return views[0]


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def table(views: list[RunView]) -> str:
    header = ("NAME", "RUN ID", "JOB", "STATE", "ELAPSED", "PROGRESS", "TRAIN LOSS", "VAL LOSS")
    rows = [header]
    for v in views:
        percent = v.status.get("percent")
        rows.append((v.name, v.run_id, v.job, v.label, clock(v.elapsed_s),
                     f"{percent:.0f}%" if isinstance(percent, (int, float)) else "-",
                     _num(v.status.get("train_loss")), _num(v.status.get("val_loss"))))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _plan_lines(view: RunView) -> list[str]:
    from pydantic import ValidationError

    from ftc.compiler.planning.plan import Plan
    from ftc.compiler.report import summary

    try:
        return summary(Plan.model_validate(view.plan)).splitlines()
    except (ValidationError, TypeError, ValueError):
        return [f"run        {view.plan.get('output_name', view.run_id)}", f"run folder {view.run_dir}"]


def _eval_lines(data: dict | None) -> list[str]:
    if not data:
        return []
    before, after = data.get("before") or {}, data.get("after") or {}
    parts = []
    for key, value in after.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {_num(before[key])} -> {_num(value)}" if key in before else f"{key} {_num(value)}")
    lines = [f"eval       {', '.join(parts)}"] if parts else []
    return lines + [f"warning    {w}" for w in data.get("warnings", [])]


def detail(view: RunView) -> str:
    lines = _plan_lines(view)
    record, status = view.record or {}, view.status
    if record:
        where = f"Slurm job {record.get('job')}" if record.get("executor") == "slurm" else f"local pid {record.get('pid')}"
        sweep = f", task {record['array_index']} of sweep {record['sweep']}" if record.get("sweep") else ""
        lines.append(f"job        {where}{sweep}, submitted {record.get('submitted_at')}")
        if record.get("script_sha256"):
            lines.append(f"script     {record.get('script')} (sha256 {record['script_sha256'][:16]})")
    reason = f" ({view.reason})" if view.reason else ""
    lines.append(f"state      {view.state}{reason}" + (f" [from {view.source}]" if view.source else ""))
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
    if status.get("error"):
        lines.append(f"error      {status['error']}")
    lines += _eval_lines(records.read_json(view.run_dir / "eval.json"))
    outputs = records.read_json(view.run_dir / "outputs.json") or {}
    for kind, path in (outputs.get("paths") or {}).items():
        lines.append(f"output     {kind}: {path}")
    if record.get("log"):
        lines.append(f"log        {record['log']}  (ftc logs {view.run_id} -f)")
    return "\n".join(lines)


def status_command(args: list[str]) -> int:
    options = _parse("status", args, run_required=False)
    root = runstate.output_root(options.root)
    views = _views(options.run, root)
    if options.run and len(views) == 1:
        print(detail(views[0]))
    elif views:
        print(table(views))
    else:
        print(f"no runs under {root}")
    return 0


def _copy_new(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except OSError:
        return offset
    if chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return offset + len(chunk)


def logs_command(args: list[str]) -> int:
    options = _parse("logs", args, run_required=True, follow=True)
    view = _one(options.run, runstate.output_root(options.root))
    if not view.record or not view.record.get("log"):
        raise UserError(f"run {view.run_id} has no log: it was compiled but never submitted")
    path = Path(view.record["log"])
    offset = _copy_new(path, 0)
    if not options.follow:
        if not path.exists():
            print(f"no log yet: run {view.run_id} is {view.label}", file=sys.stderr)
        return 0
    told = False
    while True:
        view = runstate.resolve_states([runstate.load(view.run_dir)])[0]
        offset = _copy_new(path, offset)
        if view.state not in ACTIVE:
            time.sleep(FOLLOW_POLL_S)
            _copy_new(path, offset)
            print(f"ftc: run {view.run_id} is {view.label}", file=sys.stderr)
            return 0
        if not told and not path.exists():
            reason = f" ({view.reason})" if view.reason else ""
            print(f"ftc: waiting for run {view.run_id} to start: {view.state}{reason}", file=sys.stderr)
            told = True
        time.sleep(FOLLOW_POLL_S)


def cancel_run(view: RunView) -> str:
    """Cancel one run (the stop file, then scancel or the local process group); what was done, in words."""
    record = view.record
    if not record:
        return f"run {view.run_id} was never submitted; nothing to cancel"
    if view.state not in ACTIVE:
        return f"run {view.run_id} is already {view.label}; nothing to cancel"
    if record.get("executor") == "local":
        from ftc.compiler.submit import local

        return f"run {view.run_id} (local pid {record.get('pid')}): {local.cancel(view.run_dir, record)}"
    if view.state == "running":
        (view.run_dir / STOP_FILE).write_text("cancel\n")
    try:
        slurm.cancel(record["job"])
    except slurm.SlurmError as exc:
        raise UserError(f"scancel {record['job']}: {exc}") from None
    return f"cancelled run {view.run_id} (Slurm job {record['job']})"


def cancel_command(args: list[str]) -> int:
    options = _parse("cancel", args, run_required=True)
    for view in _views(options.run, runstate.output_root(options.root)):
        print(cancel_run(view))
    return 0
