"""The model folders POST targets registered, kept in the output root so they outlive the server.

Customizer's targets are entities that stay; ftc keeps the list of folders only (each is read
again, as `model=custom model.path=DIR` reads it, whenever it is used). The file is input like
any record: read without following a link, bounded, refused when another user owns it or others
may write it (checks/ownership.py), every entry a printable absolute path; an entry the site's model
paths no longer allow is left out when it is used, not trusted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ftc.compiler import records
from ftc.compiler.checks import ownership
from ftc.compiler.runfolder import file_mode, is_shared, make_folders, write_atomic

FILE = "registered-targets.json"
LIMIT = 1 << 20


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, str) or not entry or len(entry) > 4096:
        return "not a path"
    if not os.path.isabs(entry) or not entry.isprintable():
        return "not a printable absolute path"
    return None


def load(output_root: Path, most: int) -> tuple[list[str], list[str]]:
    """The folders registered before (at most `most`), and one line per entry or file left out."""
    path = Path(output_root) / FILE
    try:
        found = ownership.problem(path, os.lstat(path), "registered targets file")  # another user's, or writable
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{path}: {exc.strerror}"]
    if found:
        return [], [found]
    try:
        data = records.read_json_file(path, LIMIT, inside=Path(output_root))
    except records.RecordError as exc:
        return [], [str(exc)]
    if data is None:
        return [], []
    folders = data.get("model_paths")
    if not isinstance(folders, list):
        return [], [f"{path}: model_paths: not a list; no registered target is kept"]
    kept, skipped = [], []
    for index, entry in enumerate(folders[:most]):
        problem = _entry_problem(entry)
        if problem:
            skipped.append(f"{path}: model_paths[{index}]: {problem}; left out")
        elif entry not in kept:
            kept.append(entry)
    return kept, skipped


def save(output_root: Path, folders: list[str]) -> None:
    """The whole list, written atomically (never through a link planted as the file), writable by no one
    but its owner whatever the umask, as `load` requires."""
    make_folders(Path(output_root))
    mode = file_mode(is_shared(os.stat(output_root))) & ~0o022
    write_atomic(Path(output_root) / FILE, json.dumps({"model_paths": folders}, indent=1) + "\n", mode=mode)
