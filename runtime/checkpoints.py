"""Which checkpoints may be resumed from, and what asks for a stop (a file, a signal) or a requeue.

transformers writes `checkpoint-N/` in place (no temporary folder, no rename), and under ZeRO every
rank writes its own shards, so a kill mid-save leaves a folder that looks whole. A checkpoint only
counts once every rank has finished and rank 0 has written `ftc_checkpoint.json` into it; that file
also carries ftc's own state (early stopping, best loss) so a resumed run continues it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

from ftc.compiler.runfolder import REQUEUE_FILE, STOP_FILE, write_json

MARKER = "ftc_checkpoint.json"
PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _numbered(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := PATTERN.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / MARKER).is_file()


def mark_complete(checkpoint: Path, state: dict) -> None:
    """Called by rank 0 after all ranks finished saving `checkpoint`."""
    write_json(checkpoint / MARKER, state)


def last_complete(run_dir: str | Path) -> Path | None:
    complete = [p for _, p in _numbered(checkpoints_dir(run_dir)) if is_complete(p)]
    return complete[-1] if complete else None


def saved_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / MARKER).read_text())


def prune(run_dir: str | Path, keep: int = 2) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and incomplete ones older than those."""
    numbered = _numbered(checkpoints_dir(run_dir))
    complete = [step for step, p in numbered if is_complete(p)]
    if not complete:
        return []
    kept = set(complete[-keep:])
    newest = complete[-1]
    removed = [p for step, p in numbered if step not in kept and (step < newest or step in complete)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def discard_incomplete(run_dir: str | Path) -> list[Path]:
    """Rank 0, at start: folders a killed run left half-written would otherwise be saved over."""
    removed = [p for _, p in _numbered(checkpoints_dir(run_dir)) if not is_complete(p)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def stop_requested(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


def write_requeue(run_dir: str | Path, step: int, checkpoint: str | None) -> None:
    write_json(Path(run_dir) / REQUEUE_FILE, {"step": step, "checkpoint": checkpoint})


_signals = {"count": 0, "name": None}


def _on_signal(signum, frame) -> None:
    _signals["count"] += 1
    _signals["name"] = signal.Signals(signum).name
    if _signals["count"] >= 3:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGINT/SIGUSR1 ask for a checkpoint and a clean stop; a third signal stops at once."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _on_signal)


def signal_received() -> str | None:
    return _signals["name"]
