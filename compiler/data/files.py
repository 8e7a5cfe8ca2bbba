"""Where a dataset's rows are, and reading them from each file type with the ecosystem's own readers.

`data.path` may be one data file, a folder of data files, a folder with `training/` (or `train/`)
and `validation/` (or `val/`, `valid/`, `eval/`, `dev/`) folders, or a Hugging Face `datasets`
`save_to_disk` folder (a Dataset, or a DatasetDict with its splits). Files of one folder are read in
sorted order. JSON Lines, JSON arrays and CSV/TSV are read with the standard library; Parquet and
Arrow with pyarrow, an optional extra on login nodes (`pip install 'ftc[data]'`).

Every file yields (where, row, problem): `where` is `file:line` for text files and `file:row N` for
Parquet and Arrow; exactly one of row and problem is set.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator

from ftc.compiler.errors import UserError
from ftc.compiler.limits import DATASET_JSON_BYTES, DATASET_LINE_BYTES, DATASET_ROWS

TEXT_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
ARROW_EXTENSIONS = (".parquet", ".arrow")
EXTENSIONS = TEXT_EXTENSIONS + ARROW_EXTENSIONS
SPLIT_NAMES = {"training": ("training", "train"), "validation": ("validation", "val", "valid", "eval", "dev")}
CSV_FIELD_LIMIT = 64 * 2**20  # bytes in one CSV cell; the standard library's default is 128 KiB

Read = tuple[str, dict | None, str | None]


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def data_files(folder: str) -> list[str]:
    """The data files directly in `folder`, sorted; none when it is not a folder."""
    if not os.path.isdir(folder):
        return []
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if name.endswith(EXTENSIONS) and not name.startswith(".") and os.path.isfile(os.path.join(folder, name))
    ]


def _saved_dataset(folder: str) -> list[str] | None:
    """The Arrow files of a `Dataset.save_to_disk` folder, in its state.json order; None when it is not one."""
    state = os.path.join(folder, "state.json")
    if not os.path.isfile(state):
        return None
    try:
        with open(state, encoding="utf-8") as handle:
            names = [f["filename"] for f in json.load(handle)["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{state}: not a datasets save_to_disk state file (no _data_files list)") from None
    if any(not isinstance(n, str) or os.sep in n or n.startswith(".") for n in names):
        raise UserError(f"{state}: _data_files names files outside the folder")
    return [os.path.join(folder, n) for n in names]


def split_folder(path: str, split: str) -> str | None:
    """The folder holding `split` (its first existing name), or None."""
    return next((os.path.join(path, n) for n in SPLIT_NAMES[split] if os.path.isdir(os.path.join(path, n))), None)


def _folder_files(folder: str) -> list[str]:
    saved = _saved_dataset(folder)
    return saved if saved is not None else data_files(folder)


def layout(path: str, field: str = "data.path") -> dict[str, list[str]]:
    """{"training": files, "validation": files (only when the data has that split)}; raises on no such path."""
    if os.path.isfile(path):
        if not path.endswith(EXTENSIONS):
            raise UserError(f"{field}: {path} is not a data file; ftc reads {', '.join(EXTENSIONS)}")
        return {"training": [path]}
    if not os.path.isdir(path):
        raise UserError(f"{field}: no such file or folder: {path}")
    found = {}
    for split in SPLIT_NAMES:
        folder = split_folder(path, split)
        if folder:
            found[split] = _folder_files(folder)
    if "training" not in found:
        found["training"] = _folder_files(path)
    return found


def other_files(folder: str) -> list[str]:
    """Names in a folder that are not read (shown when a folder holds no data files)."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and not n.endswith(EXTENSIONS))


# ---------------------------------------------------------------- one file


def _decode(text: str, where: str) -> Read:
    if not text.strip():
        return where, None, "blank line (NDJSON has none; delete it)"
    try:
        row = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        return where, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:  # NaN, Infinity: Python reads them, JSON has none
        return where, None, f"not valid JSON ({exc})"
    except RecursionError:
        return where, None, "not a flat row: arrays or objects nested too deeply"
    return _object(row, where)


def _object(row: object, where: str) -> Read:
    if not isinstance(row, dict):
        from ftc.compiler.data.formats import type_name

        return where, None, f"expected a JSON object, got {type_name(row)}"
    return where, row, None


def _json_lines(file: str) -> Iterator[Read]:
    with open(file, "rb") as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(DATASET_LINE_BYTES + 1), b""), 1):
            if len(raw) > DATASET_LINE_BYTES or number > DATASET_ROWS:  # bounds: compiler/limits.py
                what = f"a line longer than {DATASET_LINE_BYTES >> 20} MiB" if number <= DATASET_ROWS else \
                    f"more than {DATASET_ROWS:,} rows"
                raise UserError(f"{file}:{number}: {what}; split the dataset")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError:
                yield f"{file}:{number}", None, "not valid UTF-8"
                continue
            yield _decode(text, f"{file}:{number}")


def _json(file: str) -> Iterator[Read]:
    """A .json file: an array of row objects, or (as `datasets` also reads it) JSON Lines."""
    with open(file, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        yield from _json_lines(file)
        return
    if os.path.getsize(file) > DATASET_JSON_BYTES:  # parsed whole: bounded (compiler/limits.py)
        raise UserError(f"{file}: a JSON array of more than {DATASET_JSON_BYTES >> 20} MiB; write it as JSON Lines")
    try:
        with open(file, encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        yield f"{file}:{text_line(file, exc.start)}", None, "not valid UTF-8"
        return
    try:
        rows = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        yield f"{file}:{exc.lineno}", None, f"not valid JSON ({exc.msg} at column {exc.colno})"
        return
    except (ValueError, RecursionError) as exc:
        yield f"{file}:1", None, f"not valid JSON ({exc})"
        return
    for index, row in enumerate(rows, 1):
        yield _object(row, f"{file}:row {index}")


def text_line(file: str, offset: int) -> int:
    with open(file, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def _csv(file: str) -> Iterator[Read]:
    """CSV (or TSV) with a header row; every cell is a string, so only string formats fit."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    delimiter = "\t" if file.endswith(".tsv") else ","
    last = 1
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter, strict=True)
            for row in reader:
                where = f"{file}:{last + 1}"
                last = reader.line_num
                if None in row:
                    yield where, None, f"{len(row[None])} more values than the header has columns"
                elif any(v is None for v in row.values()):
                    yield where, None, "fewer values than the header has columns"
                elif "\x00" in "".join(row.values()):
                    yield where, None, "a NUL character (not a text file?)"
                else:
                    yield where, row, None
    except csv.Error as exc:
        yield f"{file}:{last + 1}", None, f"not valid CSV ({exc})"
    except UnicodeDecodeError:
        yield f"{file}:{last + 1}", None, "not valid UTF-8"


def pyarrow_or_refuse(file: str):
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UserError(f"{file}: reading Parquet and Arrow files needs pyarrow: pip install 'ftc[data]'") from None
    return pyarrow


def _arrow(file: str) -> Iterator[Read]:
    pa = pyarrow_or_refuse(file)
    index = 0
    try:
        if file.endswith(".parquet"):
            batches = pa.parquet.ParquetFile(file).iter_batches(batch_size=1024)
        else:
            try:
                batches = iter(pa.ipc.open_stream(pa.memory_map(file)))  # datasets writes the stream format
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(pa.memory_map(file))
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        for batch in batches:
            for row in batch.to_pylist():
                index += 1
                yield _object(row, f"{file}:row {index}")
    except (pa.ArrowException, OSError) as exc:
        yield f"{file}:row {index + 1}", None, f"not a readable {file.rsplit('.', 1)[-1]} file ({exc})"


def read_file(file: str) -> Iterator[Read]:
    """(where, row, problem) for every row of one data file."""
    if file.endswith(ARROW_EXTENSIONS):
        yield from _arrow(file)
    elif file.endswith((".csv", ".tsv")):
        yield from _csv(file)
    elif file.endswith(".json"):
        yield from _json(file)
    else:
        yield from _json_lines(file)
