"""The one reader of a dataset: files -> rows -> canonical rows -> training and validation splits.

The compile-time check and the runtime's data loading both call `read_dataset`, so what was checked
is what trains. Rows are mapped (`data.fields`), their format detected (or `data.format`), and
converted to canonical rows (formats.py). Without a validation split in the data, one is made: a row
goes to validation when a hash of its canonical content falls below `data.validation_split` (at most
`data.validation_max_rows` rows, the lowest hashes), so adding rows never reshuffles the split and
duplicate rows never straddle it. Problems are grouped by cause (problems.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ftc.compiler.data import files as data_files
from ftc.compiler.data.formats import BY_NAME, METHOD_KINDS, Format, describe, detect, for_method, rename, row_size
from ftc.compiler.data.problems import Problems


def row_hash(row: dict) -> float:
    """A canonical row's place in [0, 1): the same content always lands in the same split."""
    digest = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest()[:8], "big") / 2**64


def validation_cut(hashes: list[float], fraction: float, max_rows: int) -> float | None:
    """Rows with a hash <= the cut are validation: `fraction` of them, at most `max_rows`, at least one."""
    if not hashes:
        return None
    ordered = sorted(hashes)
    below = sum(h < fraction for h in ordered)
    keep = min(max(below, 1), max_rows)
    return ordered[keep - 1]


def split_rule(data) -> str:
    return (f"{data.validation_split:g} of the rows by a hash of each row, at most {data.validation_max_rows} "
            "(data.validation_split, data.validation_max_rows)")


@dataclass
class Reading:
    """What reading a dataset found: canonical rows (or only their sizes) per split, and the problems."""

    format: Format | None = None
    origin: str = "data.format"
    rows: dict[str, list] = field(default_factory=dict)  # split -> canonical rows (keep_rows) or UTF-8 sizes
    validation: str = "folder"  # "folder": the data's own validation split; "split": made by split_rule
    problems: Problems = field(default_factory=Problems)
    # The first conversation of each shape (first role, one or more answers): what a chat template is checked on.
    samples: dict[tuple[str, bool], tuple[str, list[dict]]] = field(default_factory=dict)


class _Rows:
    """Turns raw rows into canonical rows of one format, recording why others are refused."""

    def __init__(self, reading: Reading, data, method: str):
        self.reading = reading
        self.fields = dict(data.fields)
        self.method = method
        self.refused = False
        if data.format != "auto":
            reading.format = BY_NAME[data.format]

    def choices(self) -> str:
        return " or ".join(describe(f) for f in for_method(self.method))

    def convert(self, raw: dict, where: str) -> dict | str:
        row = rename(raw, self.fields)
        reading = self.reading
        if reading.format is None:
            found = detect(row)
            if found is None:
                keys = ", ".join(json.dumps(k) for k in row) or "none"
                return (f"cannot tell the format from the fields ({keys}); method {self.method} reads {self.choices()}; "
                        "map other column names with data.fields.<field>=<column>")
            reading.format, reading.origin = found, where
            if found.kind not in METHOD_KINDS[self.method]:
                self.refused = True
                return f"rows are {describe(found)}; method {self.method} reads {self.choices()}"
        if self.refused:
            return ""
        converted = reading.format.convert(row)
        if isinstance(converted, str):
            other = detect(row)
            if other and other is not reading.format and not any(f in row for f in reading.format.detect):
                if reading.origin == "data.format":
                    return (f"rows are {describe(other)}, not data.format={reading.format.name}; "
                            f"set data.format={other.name} or auto")
                return f"mixed formats: this row is {other.name}, the dataset is {reading.format.name} (from {reading.origin})"
        return converted

    def read(self, files: list[str], keep_rows: bool) -> list[tuple[float, object]]:
        """(hash, canonical row or its size) of every good row of `files`."""
        out = []
        problems = self.reading.problems
        for file in files:
            before, count = problems.total, 0
            for where, raw, problem in data_files.read_file(file):
                if raw is not None:
                    problem = self.convert(raw, where)
                    if problem == "":
                        continue
                if isinstance(problem, str):
                    problems.add(where, problem)
                    continue
                count += 1
                if "messages" in problem:
                    messages = problem["messages"]
                    shape = (messages[0]["role"], sum(m["role"] == "assistant" for m in messages) > 1)
                    self.reading.samples.setdefault(shape, (where, messages))
                out.append((row_hash(problem), problem if keep_rows else row_size(problem)))
            if not count and problems.total == before and not self.refused:
                problems.add(file, "empty file (no rows)")
        return out


def read_dataset(data, method: str, keep_rows: bool = True) -> Reading:
    """Every row of `data.path` (and the replay set) as canonical rows, split into training and validation."""
    reading = Reading()
    rows = _Rows(reading, data, method)
    found = data_files.layout(data.path)
    for split, files in found.items():
        if not files:
            folder = data_files.split_folder(data.path, split) or data.path
            others = data_files.other_files(folder)
            seen = f" (found {', '.join(others[:5])})" if others else ""
            reading.problems.add("data.path", f"no data files in {folder}{seen}; ftc reads {', '.join(data_files.EXTENSIONS)}")
    read = {split: rows.read(files, keep_rows) for split, files in found.items()}
    training = read.get("training", [])
    if "validation" not in found:
        reading.validation = "split"
        cut = validation_cut([h for h, _ in training], data.validation_split, data.validation_max_rows)
        if cut is not None:
            read["validation"] = [item for item in training if item[0] <= cut]
            read["training"] = training = [item for item in training if item[0] > cut]
            if not training and not reading.problems:
                reading.problems.add(data.path, "too few distinct rows to split off validation rows; add rows, "
                                     "or give a validation/ folder")
    if data.replay.path:
        replay_files = data_files.layout(data.replay.path, "data.replay.path")["training"]
        if not replay_files:
            reading.problems.add("data.replay.path", f"no data files in {data.replay.path} "
                                 f"(nor in its training/); ftc reads {', '.join(data_files.EXTENSIONS)}")
        read["replay"] = rows.read(replay_files, keep_rows)
    reading.rows = {split: [value for _, value in items] for split, items in read.items()}
    return reading
