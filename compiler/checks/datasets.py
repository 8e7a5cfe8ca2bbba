"""Dataset checks: read every row before the job is queued, so a bad row costs seconds, not a GPU slot.

The rows are read by the same reader the runtime loads them with (compiler/data/reader.py): any
format of compiler/data/formats.py, from JSON Lines, JSON, CSV, Parquet, Arrow or a save_to_disk
folder, split into training and validation. Rules the checks enforce (and the runtime relies on):
every row of a dataset has one format (data.format, or the first row's); text fields are non-empty
strings; fields beyond the format's are ignored. Problems are grouped by cause, one line each.

Token counts here are an estimate, UTF-8 bytes / 4 rounded up, since the login node has no tokenizer;
rows above `max_seq_length` are counted in `long_rows`, not refused (the trainer truncates them, and
the runtime counts them exactly).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ftc.compiler.config.schema import DataConfig
from ftc.compiler.data import files as _files
from ftc.compiler.data.formats import BY_NAME, METHOD_KINDS
from ftc.compiler.data.reader import read_dataset, split_rule
from ftc.compiler.data.template import check_template, read_template
from ftc.compiler.errors import UserError
from ftc.compiler.planning.plan import DatasetSummary

BYTES_PER_TOKEN = 4


def split_files(path: str, split: str) -> list[str]:
    """The data files of one split folder of `path` (the bundled demo's layout)."""
    return _files.data_files(_files.split_folder(path, split) or "")


def iter_rows(files: list[str]) -> Iterator[dict]:
    """The raw rows of already-checked files, in order."""
    for file in files:
        for _, row, _ in _files.read_file(file):
            if row is not None:
                yield row


def template_problem(model_dir: str | None, samples: dict) -> str | None:
    """One line when the model folder's chat template cannot train the dataset's conversations (rendered here, without torch)."""
    found = read_template(model_dir) if model_dir and os.path.isdir(model_dir) else None
    if not found or not samples:
        return None
    template, special = found
    for where, messages in samples.values():
        reason = check_template(template, special, [messages])
        if reason:
            return f"{where}: {reason} (the chat template of {model_dir}); use a model whose template can, or rewrite such rows"
    return None


def inspect_dataset(data: DataConfig, method_name: str, max_seq_length: int, model_dir: str | None = None) -> DatasetSummary:
    """Check every row of the dataset (and replay set) for `method_name`; raise UserError with one line per cause.

    With `model_dir`, chat rows are also rendered with that model's chat template (one row of each shape).
    """
    if method_name not in METHOD_KINDS:
        raise ValueError(f"unknown method {method_name!r}")
    if data.format != "auto" and BY_NAME[data.format].kind not in METHOD_KINDS[method_name]:
        choices = ", ".join(f for f, fmt in BY_NAME.items() if fmt.kind in METHOD_KINDS[method_name])
        raise UserError(f"data.format: method {method_name} reads {choices}, not {data.format}")
    replay = data.replay
    if replay.fraction > 0 and not replay.path:
        raise UserError(f"data.replay.fraction: {replay.fraction} needs data.replay.path")
    reading = read_dataset(data, method_name, keep_rows=False)
    if reading.problems:
        raise UserError(*reading.problems.lines())
    problem = template_problem(model_dir, reading.samples)
    if problem:
        raise UserError(problem)
    limit = max_seq_length * BYTES_PER_TOKEN
    sizes = reading.rows
    return DatasetSummary(
        path=data.path,
        format=reading.format.kind,
        row_format=reading.format.name,
        validation_from="folder" if reading.validation == "folder" else split_rule(data),
        rows={split: len(s) for split, s in sizes.items()},
        long_rows={split: n for split, s in sizes.items() if (n := sum(b > limit for b in s))},
        tokens={split: sum(-(-min(b, limit) // BYTES_PER_TOKEN) for b in s) for split, s in sizes.items()},
        longest_row_bytes=max((b for s in sizes.values() for b in s), default=0),
    )
