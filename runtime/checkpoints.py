"""Which checkpoints may be resumed from, and what asks for a stop (a file, a signal) or a requeue.

transformers writes `checkpoint-N/` in place (no temporary folder, no rename), and under ZeRO every
rank writes its own shards, so a kill mid-save leaves a folder that looks whole. A checkpoint only
counts once every rank has finished and rank 0 has written `ftc_checkpoint.json` (ftc's own state:
early stopping, best loss) and then, last and atomically, `ftc_manifest.json`: the size and sha256
of every file. A resume trusts only a checkpoint whose files still match their manifest, so a
truncated, overwritten or missing file sends it to the previous checkpoint instead of into training.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ftc.compiler.runfolder import REQUEUE_FILE, STOP_FILE, write_json

MARKER = "ftc_checkpoint.json"
MANIFEST = "ftc_manifest.json"
DAMAGED = "damaged"  # checkpoints/damaged/checkpoint-N: set aside, never resumed from
PATTERN = re.compile(r"^checkpoint-(\d+)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


AUTO_CHECKPOINT_MINUTES = 30.0


def checkpoint_interval_s(checkpoint_minutes: float | str, time_limit: str) -> float:
    """Seconds between time-based checkpoints: the plan's training.checkpoint_minutes, or for auto a
    tenth of the job's --time and at most 30 minutes. Slurm's warning signal saves before a soft end;
    these bound what a hard one (TIMEOUT after the grace, NODE_FAIL, an OOM kill) can lose."""
    from ftc.compiler.config.fields import slurm_minutes

    if checkpoint_minutes == "auto":
        return 60.0 * min(AUTO_CHECKPOINT_MINUTES, slurm_minutes(time_limit) / 10)
    return 60.0 * float(checkpoint_minutes)


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _numbered(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := PATTERN.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    """The save finished (its manifest was written); whether its files are intact is `verify`'s question."""
    return (checkpoint / MANIFEST).is_file()


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _files(checkpoint: Path) -> list[str]:
    return sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*") if p.is_file() and p.name != MANIFEST)


def _digests(checkpoint: Path, names: list[str]) -> list[tuple[int, str]]:
    """Large checkpoints hash in parallel threads (hashlib releases the GIL on big reads)."""
    workers = max(1, min(8, os.cpu_count() or 1, len(names)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda name: file_digest(checkpoint / name), names))


def mark_complete(checkpoint: Path, state: dict) -> None:
    """Rank 0, after all ranks finished saving `checkpoint`: ftc's state, then the manifest of every file, last."""
    write_json(checkpoint / MARKER, state)
    names = _files(checkpoint)
    digests = _digests(checkpoint, names)
    files = [{"path": name, "bytes": size, "sha256": sha} for name, (size, sha) in zip(names, digests)]
    write_json(checkpoint / MANIFEST, {"version": 1, "files": files})


def _manifest_entries(checkpoint: Path) -> list[dict]:
    """The manifest's file list, checked for shape: relative paths inside the checkpoint, sizes, hex digests."""
    data = json.loads((checkpoint / MANIFEST).read_text(encoding="utf-8"))
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not files:
        raise ValueError("no file list")
    for entry in files:
        ok = (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("bytes"), int)
              and isinstance(entry.get("sha256"), str) and SHA256.match(entry["sha256"]))
        parts = Path(entry["path"]).parts if ok else ()
        if not ok or not parts or Path(entry["path"]).is_absolute() or ".." in parts:
            raise ValueError(f"bad entry {str(entry)[:80]}")
    if MARKER not in {entry["path"] for entry in files}:
        raise ValueError(f"{MARKER} is not listed")
    return files


def verify(checkpoint: Path) -> str | None:
    """None when every file the manifest lists is there with its size and sha256; else what is wrong."""
    try:
        files = _manifest_entries(checkpoint)
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        return f"{MANIFEST} is unreadable ({exc})"
    for entry in files:
        path = checkpoint / entry["path"]
        if not path.is_file():
            return f"{entry['path']} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{entry['path']} has {path.stat().st_size} bytes, not {entry['bytes']}"
    digests = _digests(checkpoint, [entry["path"] for entry in files])
    for entry, (_, sha) in zip(files, digests):
        if sha != entry["sha256"]:
            return f"{entry['path']} does not match its sha256"
    return None


def last_complete(run_dir: str | Path) -> Path | None:
    complete = [p for _, p in _numbered(checkpoints_dir(run_dir)) if is_complete(p)]
    return complete[-1] if complete else None


def set_aside(checkpoint: Path) -> Path:
    """Move a damaged checkpoint out of the numbered ones (kept for a post-mortem, replacing an older copy)."""
    target = checkpoint.parent / DAMAGED / checkpoint.name
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    checkpoint.rename(target)
    return target


def choose_resume(run_dir: str | Path) -> tuple[Path | None, list[str]]:
    """Rank 0, at start: the newest checkpoint whose files verify, and one note per checkpoint passed over.

    Unfinished saves (no manifest) are deleted, as before; finished ones that fail verification are set
    aside under checkpoints/damaged/ so a later save of the same step starts from an empty folder.
    """
    unfinished = discard_incomplete(run_dir)
    notes = [f"discarded {p.name}: the save did not finish ({MANIFEST} is missing)" for p in unfinished]
    for _, checkpoint in reversed(_numbered(checkpoints_dir(run_dir))):
        problem = verify(checkpoint)
        if problem is None:
            return checkpoint, notes
        moved = set_aside(checkpoint)
        notes.append(f"skipped damaged {checkpoint.name}: {problem} (moved to {moved})")
    return None, notes


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
