"""The records ftc writes into a run folder about its jobs (job.json), and reading them back.

The submitters write them, the run commands read them; both sides import this light module.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ftc.compiler.runfolder import write_atomic

JOB_FILE = "job.json"
STATUS_FILE = "status.json"


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / JOB_FILE)


def write_record(run_dir: Path, record: dict) -> None:
    write_atomic(Path(run_dir) / JOB_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(run_dir: Path, executor: str, **fields) -> dict:
    """A record for a new submission; earlier job ids of the same run are kept under `previous`."""
    old = read_record(run_dir) or {}
    previous = list(old.get("previous", []))
    if old.get("job"):
        previous.append(old["job"])
    return {"executor": executor, "submitted_at": now(), "previous": previous, **fields}
