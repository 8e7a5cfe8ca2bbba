"""plan.json, the runtime's one input, read as any input is: a bad file names its field in one line.

The plan must also be this folder's: a run folder moved after compile would write its checkpoints to
the old place (plan.json's run_dir) and its status to the new one, so the runtime refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from ftc.compiler import records
from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import Plan
from ftc.compiler.planning.versions import migrate


def printable(text: str, limit: int | None = 200, keep: str = "") -> str:
    """Text for a terminal: control characters (an escape sequence, a bell) shown escaped, not obeyed; long text cut."""
    text = "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in str(text))
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


def _field(loc: tuple, data) -> str:
    """The dotted field a pydantic error is about, without the tags it inserts for a union (job.method.lora.x)."""
    parts, node = [], data
    for index, part in enumerate(loc):
        following = loc[index + 1] if index + 1 < len(loc) else None
        if isinstance(node, dict) and following is not None:
            child = node.get(part)
            in_child = isinstance(child, dict) and following in child
            if part not in node or (following in node and not in_child):
                continue  # a union's tag, not a key of the file
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "(the whole file)"


def _first_problem(exc: ValidationError, data) -> str:
    error = exc.errors(include_url=False)[0]
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{printable(_field(error['loc'], data), 120)}: {printable(error['msg'])}{more}; recompile the run"


def _parsed(text: bytes):
    try:
        return migrate(json.loads(text))
    except (ValueError, RecursionError):
        return None


def read_plan(text: bytes) -> Plan:
    """A plan.json of this release or an earlier one of the same major release, migrated.

    Raises ValidationError for a plan the schema refuses, ValueError for one another release wrote
    that this one cannot run."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Plan.model_validate_json(text)  # pydantic's own words for bad JSON
    return Plan.model_validate_json(json.dumps(migrate(data)))


def load_plan(run_dir: str) -> Plan:
    """The plan the compiler wrote for this folder; the runtime reads nothing else."""
    path = Path(run_dir) / "plan.json"
    try:
        text = records.read_text(path, records.PLAN_LIMIT)  # a regular file, bounded; never a link
        if text is None:
            raise FileNotFoundError
        plan = read_plan(text)
    except records.RecordError as exc:
        raise UserError(f"{exc}; recompile the run") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no plan here; compile one with python -m ftc ... dry_run=true") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValidationError as exc:
        raise UserError(f"{path}: {_first_problem(exc, _parsed(text))}") from None
    except ValueError as exc:  # a release this ftc cannot run (see planning/versions.py)
        raise UserError(f"{path}: {printable(str(exc), 400)}") from None
    if Path(plan.run_dir).resolve() != Path(run_dir).resolve():
        raise UserError(
            f"{path}: run_dir: the plan belongs to {printable(plan.run_dir)}, not this folder; "
            "a moved run folder would split its files: recompile it here"
        )
    return plan
