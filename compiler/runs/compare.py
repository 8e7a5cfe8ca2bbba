"""Sweeps you can compare: a sweep's id and record, and `ftc compare SWEEP_ID | RUN ...`.

A sweep's id is a hash of its points' run ids (submitter.sweep_folder). Compiling a sweep writes
`<output_root>/<namespace>/sweeps/<id>.json` (its points: run ids, run folders relative to the
namespace, overrides) and `sweep.json` in each point's run folder. `ftc compare` prints one row per
run: the config values that differ between the runs, the state, the final train and validation
loss, the eval metrics after training and the output name; `--sort KEY` orders by a column, `--json`
prints the same rows for scripts. Run files are read through records.py only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.runfolder import make_folders
from ftc.compiler.runs import runstate
from ftc.compiler.runs.terminal import printable

SWEEP_FILE = "sweep.json"
SWEEP_ID = re.compile(r"[0-9a-f]{10}")
SAFE_PART = re.compile(r"[A-Za-z0-9._@+-]{1,200}")
CELL_CHARS = 40
COUNTS = ("rows", "tokens")  # eval.json numbers that are sizes, not metrics


def write_sweep(runs, points: list[list[str]]) -> str:
    """Record a compiled sweep (sweeps/<id>.json and each run folder's sweep.json); returns its id."""
    from ftc.compiler.submit.submitter import sweep_folder

    sweep_id, sweep_dir = sweep_folder(runs)
    namespace = sweep_dir.parents[1]
    listed = [{"run_id": r.plan.run_id, "folder": str(Path(r.plan.run_dir).relative_to(namespace)),
               "overrides": list(p)} for r, p in zip(runs, points)]
    make_folders(sweep_dir.parent, group_write=True)  # every user's sweeps of the namespace
    records.write_json_record(sweep_dir.parent / f"{sweep_id}.json", {"sweep": sweep_id, "points": listed})
    for run in runs:
        records.write_json_record(Path(run.plan.run_dir) / SWEEP_FILE, {"sweep": sweep_id, "points": len(runs)})
    return sweep_id


def sweep_of(run_dir: Path) -> str | None:
    """The id of the sweep a run folder was compiled in, or None."""
    try:
        data = records.read_json_file(os.path.join(run_dir, SWEEP_FILE), inside=run_dir)
    except records.RecordError:
        return None
    sweep = (data or {}).get("sweep")
    return sweep if isinstance(sweep, str) and SWEEP_ID.fullmatch(sweep) else None


def sweep_runs(root: Path, sweep_id: str) -> list[Path] | None:
    """The run folders a sweep record lists (paths derived from its folder, never taken from it); None if no such sweep."""
    for path in sorted(root.glob(f"*/sweeps/{sweep_id}.json")):
        namespace = path.parents[1]
        try:
            data = records.read_json_file(path, inside=path.parent)
        except records.RecordError as exc:
            raise UserError(str(exc)) from None
        points = data.get("points") if isinstance(data, dict) else None
        if not isinstance(points, list):
            raise UserError(f"{path}: not a sweep record (it has no list of points)")
        folders = []
        for point in points:
            parts = Path(str(point.get("folder", "") if isinstance(point, dict) else "")).parts
            if len(parts) != 2 or not all(SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts):
                raise UserError(f"{path}: a point's folder is not <model>-<name>/<run id>")
            folders.append(namespace / parts[0] / parts[1])
        return folders
    return None


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def differing(plans: list[dict]) -> list[str]:
    """The job config keys whose values are not the same in every plan, in config order."""
    flat = [flatten(p.get("job") or {}) for p in plans]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rows(views: list[runstate.RunView]) -> list[dict]:
    """One dict per run: run_id, the differing values, state, losses, eval metrics and output name."""
    keys = differing([v.plan for v in views])
    out = []
    for view in views:
        flat = flatten(view.plan.get("job") or {})
        evaluation, _ = records.load(view.run_dir, records.EVAL_FILE, records.EvalRecord)
        after = evaluation.get("after") or {}
        out.append({
            "run_id": view.run_id,
            "differs": {k: flat.get(k) for k in keys},
            "state": view.label,
            "train_loss": view.status.get("train_loss") if _finite(view.status.get("train_loss")) else None,
            "val_loss": view.status.get("val_loss") if _finite(view.status.get("val_loss")) else None,
            "eval": {k: v for k, v in after.items() if _finite(v) and k not in COUNTS},
            "output": view.plan.get("output_name"),
            "run_dir": str(view.run_dir),
        })
    return out


def _value(row: dict, key: str):
    for place in (row, row["differs"], row["eval"]):
        if key in place:
            return place[key]
    return None


def _cell(value) -> str:
    if value is None:
        return "-"
    if _finite(value):
        return f"{value:.4g}"
    return printable(value if isinstance(value, str) else json.dumps(value), CELL_CHARS)


def columns(found: list[dict]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The table's columns, each (sort key, heading), and each run's cells: one source for the
    terminal table and the dashboard's."""
    differs = list(dict.fromkeys(k for r in found for k in r["differs"]))
    metrics = list(dict.fromkeys(k for r in found for k in r["eval"]))
    header = [("run_id", "RUN ID"), *((k, k) for k in differs), ("state", "STATE"), ("train_loss", "TRAIN LOSS"),
              ("val_loss", "VAL LOSS"), *((m, f"EVAL {m}") for m in metrics), ("output", "OUTPUT")]
    cells = [[_cell(r["run_id"]), *(_cell(r["differs"][k]) for k in differs), _cell(r["state"]),
              _cell(r["train_loss"]), _cell(r["val_loss"]), *(_cell(r["eval"].get(m)) for m in metrics),
              _cell(r["output"])] for r in found]
    return header, cells


def table(found: list[dict]) -> str:
    header, cells = columns(found)
    lines = [[heading for _, heading in header], *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def compare(root: Path, selectors: list[str], sort: str | None = None, reverse: bool = False) -> list[dict]:
    from ftc.compiler.runs.jobs import resolve

    folders: list[Path] = []
    for selector in selectors:
        listed = sweep_runs(root, selector) if SWEEP_ID.fullmatch(selector) else None
        folders += listed if listed is not None else resolve(selector, root)
    return compared(folders, sort, reverse)


def compared(folders: list[Path], sort: str | None = None, reverse: bool = False) -> list[dict]:
    """The rows of these run folders, ordered by `sort` (runs without that value last)."""
    folders = list(dict.fromkeys(folders))
    views = runstate.resolve_states([runstate.load(f) for f in folders if (f / records.PLAN_FILE).is_file()])
    found = rows(views)
    if sort:
        known = {k for r in found for k in (*r, *r["differs"], *r["eval"])}
        if sort not in known:
            raise UserError(f"--sort: no column {printable(sort)!r}; one of {', '.join(sorted(known - {'differs', 'eval'}))}")
        present = [r for r in found if _value(r, sort) is not None]
        missing = [r for r in found if _value(r, sort) is None]
        found = sorted(present, key=lambda r: (not _finite(_value(r, sort)), _value(r, sort) if _finite(
            _value(r, sort)) else str(_value(r, sort))), reverse=reverse) + missing
    return found


def compare_command(args: list[str]) -> int:
    from ftc.compiler.runs.jobs import _Parser

    parser = _Parser(prog="ftc compare")
    parser.add_argument("runs", nargs="+", help="a sweep id, or run ids (or unique prefixes)")
    parser.add_argument("--root", help="output root (default $FTC_OUTPUT_ROOT or ./runs)")
    parser.add_argument("--sort", help="a column to order by: val_loss, train_loss, an eval metric, a config key")
    parser.add_argument("--reverse", action="store_true", help="largest first")
    parser.add_argument("--json", action="store_true", help="the rows as JSON, for scripts")
    options = parser.parse_args(args)
    root = runstate.output_root(options.root)
    found = compare(root, options.runs, options.sort, options.reverse)
    print(json.dumps(found, indent=2) if options.json else table(found))
    return 0


def sweep_column(views: list[runstate.RunView]) -> list[str]:
    """`ftc status`: per run, its sweep id and the values that differ between the listed runs of that sweep."""
    sweeps = [sweep_of(v.run_dir) for v in views]
    plans: dict[Path, dict] = {}
    by_sweep: dict[str, list[runstate.RunView]] = {}
    for view, sweep in zip(views, sweeps):
        if sweep:
            by_sweep.setdefault(sweep, []).append(view)
    differ: dict[str, list[str]] = {}  # per sweep, computed once (10,000 listed runs stay linear)
    cells = []
    for view, sweep in zip(views, sweeps):
        members = by_sweep.get(sweep, []) if sweep else []
        if not sweep or len(members) < 2:
            cells.append(sweep or "-")
            continue
        if sweep not in differ:
            for member in members:
                if member.run_dir not in plans:
                    plans[member.run_dir] = member.plan or records.read_plan(member.run_dir)[0]
            differ[sweep] = differing([plans[m.run_dir] for m in members])
        keys = differ[sweep]
        flat = flatten(plans[view.run_dir].get("job") or {})
        cells.append(f"{sweep}: " + " ".join(f"{k}={_cell(flat.get(k))}" for k in keys))
    return cells
