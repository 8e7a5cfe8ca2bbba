"""Dataset checks: read every line before the job is queued, so a bad row costs seconds, not a GPU slot.

A dataset is a folder with `training/` and `validation/` holding `.jsonl` or `.ndjson` files, read in
sorted order. Rules the checks enforce (and the runtime relies on):

* one JSON object per line; a blank line is an error (NDJSON has none); a UTF-8 BOM at the start of a
  file is accepted; fields beyond the format's are allowed and ignored;
* every row has the same format: `prompt_completion`, `chat`, `preference` or `prompt_answer`;
  `format: auto` takes it from the first valid row;
* string fields must be non-empty (not only whitespace).

Token counts here are an estimate, UTF-8 bytes / 4 rounded up, since the login node has no tokenizer;
rows above `max_seq_length` are counted in `long_rows`, not refused (the trainer truncates them, and
the runtime counts them exactly). Every problem is reported as `file:line: reason`, all at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from ftc.compiler.config.schema import DataConfig
from ftc.compiler.errors import UserError
from ftc.compiler.limits import DATASET_LINE_BYTES, DATASET_ROWS
from ftc.compiler.planning.plan import DatasetSummary

EXTENSIONS = (".jsonl", ".ndjson")
SPLITS = ("training", "validation")
MAX_LISTED = 20
BYTES_PER_TOKEN = 4

FIELDS = {
    "prompt_completion": ("prompt", "completion"),
    "chat": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt_answer": ("prompt", "answer"),
}
METHOD_FORMATS = {
    "lora": ("prompt_completion", "chat"),
    "sft": ("prompt_completion", "chat"),
    "dpo": ("preference",),
    "grpo": ("prompt_answer",),
}
ROLES = ("system", "user", "assistant")


def describe(fmt: str) -> str:
    return f"{fmt} {{{', '.join(json.dumps(f) for f in FIELDS[fmt])}}}"


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def _type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "null")


# ---------------------------------------------------------------- files


def data_files(folder: str) -> list[str]:
    """The data files directly in `folder`, sorted; none when it is not a folder."""
    if not os.path.isdir(folder):
        return []
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if name.endswith(EXTENSIONS) and not name.startswith(".") and os.path.isfile(os.path.join(folder, name))
    ]


def split_files(path: str, split: str) -> list[str]:
    return data_files(os.path.join(path, split))


def replay_files(path: str) -> list[str]:
    """A replay set is a data file, a folder with training/, or a folder of data files."""
    if os.path.isfile(path):
        return [path]
    nested = split_files(path, "training")
    return nested or data_files(path)


def read_lines(file: str) -> Iterator[tuple[int, str | None]]:
    """(line number, text) per line, streamed; text is None where the bytes are not UTF-8."""
    with open(file, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(DATASET_LINE_BYTES + 1), b""), 1):
            if len(raw) > DATASET_LINE_BYTES or number > DATASET_ROWS:  # bounds: compiler/limits.py
                what = f"a line longer than {DATASET_LINE_BYTES >> 20} MiB" if number <= DATASET_ROWS else \
                    f"more than {DATASET_ROWS:,} rows"
                raise UserError(f"{file}:{number}: {what}; split the dataset")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield number, raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError:
                yield number, None


def iter_rows(files: list[str]) -> Iterator[dict]:
    """The rows of already-checked files, in order."""
    for file in files:
        for _, text in read_lines(file):
            yield json.loads(text)


# ---------------------------------------------------------------- rows


def _string(row: dict, field: str, where: str = "") -> str | int:
    """The field's UTF-8 size, or the reason it is not a non-empty string."""
    if field not in row:
        return f'{where}missing field "{field}"'
    value = row[field]
    if not isinstance(value, str):
        return f'{where}field "{field}" must be a string, got {_type(value)}'
    if not value.strip():
        return f'{where}field "{field}" is empty'
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f'{where}field "{field}" holds a lone surrogate {ascii(value[exc.start])} (\\u escapes must pair up)'


def _strings(row: dict, fields: tuple[str, ...]) -> list[int] | str:
    sizes = []
    for field in fields:
        size = _string(row, field)
        if isinstance(size, str):
            return size
        sizes.append(size)
    return sizes


def _prompt_completion(row: dict) -> int | str:
    sizes = _strings(row, FIELDS["prompt_completion"])
    return sizes if isinstance(sizes, str) else sum(sizes)


def _prompt_answer(row: dict) -> int | str:
    sizes = _strings(row, FIELDS["prompt_answer"])
    return sizes if isinstance(sizes, str) else sum(sizes)


def _preference(row: dict) -> int | str:
    sizes = _strings(row, FIELDS["preference"])
    if isinstance(sizes, str):
        return sizes
    if row["chosen"] == row["rejected"]:
        return 'fields "chosen" and "rejected" are identical'
    return sizes[0] + max(sizes[1], sizes[2])


def _chat(row: dict) -> int | str:
    if "messages" not in row:
        return 'missing field "messages"'
    messages = row["messages"]
    if not isinstance(messages, list):
        return f'field "messages" must be an array, got {_type(messages)}'
    if not messages:
        return 'field "messages" is empty'
    total = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]: "
        if not isinstance(message, dict):
            return f"{where}must be an object, got {_type(message)}"
        role = message.get("role")
        if "role" not in message:
            return f'{where}missing field "role"'
        if role not in ROLES:
            return f"{where}role must be system, user or assistant, got {json.dumps(role)}"
        if role == "system" and i:
            return f"{where}a system message may only come first"
        size = _string(message, "content", where)
        if isinstance(size, str):
            return size
        total += size
    if messages[-1]["role"] != "assistant":
        return f"the last message must be from the assistant, got {messages[-1]['role']}"
    return total


CHECKS = {
    "prompt_completion": _prompt_completion,
    "chat": _chat,
    "preference": _preference,
    "prompt_answer": _prompt_answer,
}


def detect(row: dict) -> str | None:
    """The format a row's fields point to, before checking them."""
    if "messages" in row:
        return "chat"
    if "chosen" in row or "rejected" in row:
        return "preference"
    if "completion" in row:
        return "prompt_completion"
    if "answer" in row:
        return "prompt_answer"
    return None


# ---------------------------------------------------------------- the check


class _Check:
    """One pass over every file of every split; holds the format once it is known."""

    def __init__(self, fmt: str | None, method_name: str, max_seq_length: int):
        self.format = fmt
        self.format_origin = "data.format"
        self.accepted = METHOD_FORMATS[method_name]
        self.method = method_name
        self.limit_bytes = max_seq_length * BYTES_PER_TOKEN
        self.problems: list[str] = []
        self.refused = False
        self.longest = 0  # UTF-8 bytes of the longest row, over every split

    def files(self, files: list[str]) -> tuple[int, int, int]:
        """(rows, long rows, estimated tokens after truncation) of the files; bad lines go to `problems`."""
        rows = long = tokens = 0
        for file in files:
            before, file_rows = len(self.problems), 0
            for number, text in read_lines(file):
                size = self.line(text, f"{file}:{number}")
                if isinstance(size, str):
                    self.problems.append(f"{file}:{number}: {size}")
                    continue
                file_rows += 1
                self.longest = max(self.longest, size)
                long += size > self.limit_bytes
                tokens += -(-min(size, self.limit_bytes) // BYTES_PER_TOKEN)
            if not file_rows and len(self.problems) == before:
                self.problems.append(f"{file}: empty file (no rows)")
            rows += file_rows
        return rows, long, tokens

    def line(self, text: str | None, where: str) -> int | str:
        if text is None:
            return "not valid UTF-8"
        if not text.strip():
            return "blank line (NDJSON has none; delete it)"
        try:
            row = json.loads(text, parse_constant=_not_json)
        except json.JSONDecodeError as exc:
            return f"not valid JSON ({exc.msg} at column {exc.colno})"
        except ValueError as exc:  # NaN, Infinity: Python reads them, JSON has none
            return f"not valid JSON ({exc})"
        except RecursionError:
            return "not a flat row: arrays or objects nested too deeply"
        if not isinstance(row, dict):
            return f"expected a JSON object, got {_type(row)}"
        if self.format is None:
            found = detect(row)
            if found is None:
                keys = ", ".join(json.dumps(k) for k in row) or "none"
                choices = " or ".join(describe(f) for f in self.accepted)
                return f"cannot tell the format from the fields ({keys}); method {self.method} reads {choices}"
            self.format, self.format_origin = found, where
            if found not in self.accepted:
                self.refused = True
                choices = " or ".join(describe(f) for f in self.accepted)
                return f"rows are {describe(found)}; method {self.method} reads {choices}"
        if self.refused:
            return 0
        size = CHECKS[self.format](row)
        if isinstance(size, str):
            other = detect(row)
            if other and other != self.format:
                return f"mixed formats: this row is {other}, the dataset is {self.format} (from {self.format_origin})"
        return size


def _split(check: _Check, path: str, split: str) -> tuple[int, int, int] | None:
    files = split_files(path, split)
    if not files:
        folder = os.path.join(path, split)
        if split == "training":
            check.problems.append(f"empty dataset: training files must be in {folder}/")
        else:
            check.problems.append(
                f"missing validation split: validation files must be in {folder}/ "
                f"(NeMo requires one; move about a tenth of the training rows there)"
            )
        others = sorted(n for n in os.listdir(folder) if not n.startswith(".")) if os.path.isdir(folder) else []
        if others:
            check.problems.append(f"{folder}/: found {', '.join(others[:5])}; only .jsonl and .ndjson files are read")
        return None
    return check.files(files)


def inspect_dataset(data: DataConfig, method_name: str, max_seq_length: int) -> DatasetSummary:
    """Check every line of the dataset (and replay set) for `method_name`; raise UserError listing all problems."""
    if method_name not in METHOD_FORMATS:
        raise ValueError(f"unknown method {method_name!r}")
    path = data.path
    if not os.path.isdir(path):
        raise UserError(f"data.path: no such folder: {path}")
    fmt = None if data.format == "auto" else data.format
    if fmt is not None and fmt not in METHOD_FORMATS[method_name]:
        choices = " or ".join(METHOD_FORMATS[method_name])
        raise UserError(f"data.format: method {method_name} reads {choices}, not {fmt}")
    check = _Check(fmt, method_name, max_seq_length)
    counts: dict[str, tuple[int, int, int]] = {}
    for split in SPLITS:
        result = _split(check, path, split)
        if result:
            counts[split] = result
    if "training" not in counts:
        loose = data_files(path)
        if loose:
            names = ", ".join(os.path.basename(f) for f in loose[:5])
            check.problems.append(
                f"{path}: found {names} in the folder itself; move them into training/ and validation/"
            )
    replay = data.replay
    if replay.fraction > 0 and not replay.path:
        check.problems.append(f"data.replay.fraction: {replay.fraction} needs data.replay.path")
    if replay.path:
        files = replay_files(replay.path)
        if not files:
            check.problems.append(
                f"data.replay.path: no .jsonl or .ndjson files in {replay.path} (nor in {os.path.join(replay.path, 'training')}/)"
            )
        else:
            counts["replay"] = check.files(files)
    if check.problems:
        listed = check.problems[:MAX_LISTED]
        extra = len(check.problems) - len(listed)
        raise UserError(*listed, f"... and {extra} more" if extra else "")
    return DatasetSummary(
        path=path,
        format=check.format,
        rows={split: rows for split, (rows, _, _) in counts.items()},
        long_rows={split: long for split, (_, long, _) in counts.items() if long},
        tokens={split: tokens for split, (_, _, tokens) in counts.items()},
        longest_row_bytes=check.longest,
    )
