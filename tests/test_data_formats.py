"""Every format as data (tests/data/formats: two rows each and the canonical rows they must become),
read from every file type into the same canonical rows, and hostile variants refused in one grouped line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.compiler.checks.datasets import inspect_dataset
from ftc.compiler.config.schema import DataConfig
from ftc.compiler.data.formats import FORMATS
from ftc.compiler.data.reader import read_dataset, row_hash, validation_cut
from ftc.compiler.errors import UserError

CASES = Path(__file__).parent / "data" / "formats"
NAMES = sorted(p.name.removesuffix(".jsonl") for p in CASES.glob("*.jsonl"))
METHOD = {"preference": "dpo", "preference_messages": "dpo", "prompt_answer": "grpo"}
# Formats whose rows are all strings fit CSV; mixed string/list columns do not fit one Parquet column type.
CSV_OK = {"alpaca", "prompt_completion", "text", "preference"}
ARROW_OK = {"chat", "sharegpt", "alpaca", "prompt_completion", "text", "preference"}


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (CASES / f"{name}.jsonl").read_text().splitlines()]


def write(path: Path, rows: list[dict], kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=2))
    elif kind == "csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
    else:
        pa = pytest.importorskip("pyarrow")  # an optional extra: the login-node environment has none
        import pyarrow.parquet as pq

        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])
        if kind == "parquet":
            pq.write_table(table, path)
        else:
            with pa.ipc.new_stream(str(path), table.schema) as writer:
                writer.write_table(table)


def read(path, name: str, **data):
    return read_dataset(DataConfig(name="t", path=str(path), **data), METHOD.get(name, "sft"))


def test_every_format_has_its_data_and_every_data_file_a_format():
    named = {f.name for f in FORMATS}
    assert named <= set(NAMES) and {n.removesuffix("_messages") for n in NAMES} <= named


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "arrow"])
@pytest.mark.parametrize("name", NAMES)
def test_each_format_from_each_file_type_gives_the_same_canonical_rows(tmp_path, name, kind):
    if kind == "csv" and name not in CSV_OK or kind in ("parquet", "arrow") and name not in ARROW_OK:
        pytest.skip(f"{name} rows do not fit {kind}")
    rows = rows_of(name)
    write(tmp_path / "ds" / "training" / f"a.{kind}", rows, kind)
    write(tmp_path / "ds" / "validation" / f"a.{kind}", rows[:1], kind)
    reading = read(tmp_path / "ds", name)
    assert not reading.problems, reading.problems.lines()
    canonical = json.loads((CASES / f"{name}.canonical.json").read_text())
    assert reading.rows == {"training": canonical, "validation": canonical[:1]}
    assert reading.format.name == name.removesuffix("_messages")
    # The explicit format reads the same rows.
    assert read(tmp_path / "ds", name, format=reading.format.name).rows == reading.rows


def test_a_datasets_save_to_disk_folder_and_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": f"p{i}", "completion": "c"} for i in range(4)]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                                   "validation": datasets.Dataset.from_list(rows[:1])})
    splits.save_to_disk(str(tmp_path / "dict"))
    assert read(tmp_path / "dict", "prompt_completion").rows == {"training": rows, "validation": rows[:1]}
    splits["train"].save_to_disk(str(tmp_path / "one"))
    got = read(tmp_path / "one", "prompt_completion")
    assert got.validation == "split" and sorted(got.rows["training"] + got.rows["validation"], key=str) == rows


def test_one_file_is_split_by_row_hash_and_adding_rows_keeps_the_split(tmp_path):
    rows = [{"text": f"row {i}"} for i in range(400)]
    write(tmp_path / "a.jsonl", rows[:200], "jsonl")
    write(tmp_path / "b.jsonl", rows, "jsonl")
    small, big = read(tmp_path / "a.jsonl", "text"), read(tmp_path / "b.jsonl", "text")
    assert 2 <= len(small.rows["validation"]) <= 25
    assert all(r in big.rows["validation"] for r in small.rows["validation"])
    assert not {json.dumps(r) for r in big.rows["validation"]} & {json.dumps(r) for r in big.rows["training"]}
    assert validation_cut([row_hash(r) for r in rows], 0.5, 3) == sorted(row_hash(r) for r in rows)[2]


def test_field_mapping_renames_columns_and_message_keys(tmp_path):
    rows = [{"dialog": [{"speaker": "user", "text": "q"}, {"speaker": "assistant", "text": f"a{i}"}]} for i in range(2)]
    write(tmp_path / "ds" / "training" / "a.jsonl", rows, "jsonl")
    write(tmp_path / "ds" / "validation" / "a.jsonl", rows, "jsonl")
    got = read(tmp_path / "ds", "chat", fields={"messages": "dialog", "role": "speaker", "content": "text"})
    assert got.rows["training"][1] == {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"}]}
    with pytest.raises(ValueError, match="unknown field 'question'"):
        DataConfig(name="t", path="x", fields={"question": "q"})
    with pytest.raises(ValueError, match="printable"):
        DataConfig(name="t", path="x", fields={"prompt": "a\x1bb"})


SHAREGPT = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
HOSTILE = [
    ("wrong type", [SHAREGPT, {"conversations": "q"}], "sft", 'field "conversations" must be an array, got string'),
    ("bad role", [SHAREGPT, {"conversations": [{"from": "bot", "value": "q"}]}], "sft",
     'conversations[0]: from must be one of human, user, gpt, assistant, system, model, got "bot"'),
    ("missing output", [{"instruction": "i", "output": "o"}, {"instruction": "i"}], "sft", 'missing field "output"'),
    ("empty text", [{"text": "t"}, {"text": " "}], "sft", 'field "text" is empty'),
    ("mixed", [{"text": "t"}, SHAREGPT], "sft", "mixed formats: this row is sharegpt, the dataset is text (from {F}:1)"),
    ("alpaca input a number", [{"instruction": "i", "output": "o"}, {"instruction": "i", "output": "o", "input": 3}], "sft",
     'field "input" must be a string, got number'),
    ("preference list of strings", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                    {"prompt": "p", "chosen": ["a"], "rejected": "b"}], "dpo",
     "chosen[0]: must be an object, got string"),
    ("grpo answer missing", [{"prompt": "p", "answer": "a"}, {"prompt": [{"role": "user", "content": "q"}]}], "grpo",
     'missing field "answer"'),
]


@pytest.mark.parametrize("rows, method, reason", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_rows_are_one_grouped_line(tmp_path, rows, method, reason):
    many = rows + [rows[-1]] * 40
    file = tmp_path / "ds" / "training" / "a.jsonl"
    write(file, many, "jsonl")
    write(tmp_path / "ds" / "validation" / "a.jsonl", rows[:1], "jsonl")
    with pytest.raises(UserError) as exc:
        inspect_dataset(DataConfig(name="t", path=str(tmp_path / "ds")), method, 512)
    reason = reason.replace("{F}", str(file))
    assert exc.value.problems == [f"41 rows: {reason} (first at {file}:2)"]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("a.jsonl", b"", "empty file (no rows)"),
        ("a.csv", b"", "empty file (no rows)"),
        ("a.csv", b'prompt,completion\n"p,c\n', "{F}:2: not valid CSV (unexpected end of data)"),
        ("a.csv", b'prompt,completion\n"p"x,c\n', "{F}:2: not valid CSV (',' expected after '\"')"),
        ("a.csv", b"prompt,completion\np,c,extra\n", "{F}:2: 1 more values than the header has columns"),
        ("a.csv", b"prompt,completion\np\x00,c\n", "{F}:2: a NUL character (not a text file?)"),
        ("a.json", b'[{"prompt": "p", "completion": "c"},\n {"prompt": }]', "{F}:2: not valid JSON (Expecting value at column 13)"),
        ("a.json", b'[{"prompt": "p", "completion": "c"}, 3]', "{F}:row 2: expected a JSON object, got number"),
        ("a.jsonl", b'{"prompt": "p\\u0000\\u001b", "completion": "c"}\n{"prompt": NaN, "completion": "c"}\n',
         "{F}:2: not valid JSON (NaN is not a JSON value)"),
        ("a.parquet", b"PAR1 not really", "{F}:row 1: not a readable parquet file"),
    ],
)
def test_hostile_files(tmp_path, name, content, reason):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    file = tmp_path / "ds" / "training" / name
    file.parent.mkdir(parents=True)
    file.write_bytes(content)
    write(tmp_path / "ds" / "validation" / "a.jsonl", [{"prompt": "p", "completion": "c"}], "jsonl")
    with pytest.raises(UserError) as exc:
        inspect_dataset(DataConfig(name="t", path=str(tmp_path / "ds")), "sft", 512)
    expected = reason.replace("{F}", str(file)) if "{F}" in reason else f"{file}: {reason}"
    assert len(exc.value.problems) == 1 and exc.value.problems[0].startswith(expected)


def test_a_huge_row_is_read_and_counted_long(tmp_path):
    rows = [{"prompt": "p", "completion": "x" * 3_000_000}, {"prompt": "q", "completion": "y"}]
    for kind in ("jsonl", "csv"):
        write(tmp_path / kind / "training" / f"a.{kind}", rows, kind)
        write(tmp_path / kind / "validation" / f"a.{kind}", rows[1:], kind)
        got = inspect_dataset(DataConfig(name="t", path=str(tmp_path / kind)), "sft", 512)
        assert got.long_rows == {"training": 1} and got.rows == {"training": 2, "validation": 1}


def test_without_pyarrow_parquet_is_one_line_naming_the_extra(tmp_path):
    write(tmp_path / "ds" / "a.parquet", [{"text": "t"}] * 3, "parquet")
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from ftc.compiler.checks.datasets import inspect_dataset\n"
        "from ftc.compiler.config.schema import DataConfig\n"
        "from ftc.compiler.errors import UserError\n"
        f"try: inspect_dataset(DataConfig(name='t', path={str(tmp_path / 'ds')!r}), 'sft', 512)\n"
        "except UserError as e: print(e.problems)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "reading Parquet and Arrow files needs pyarrow: pip install 'ftc[data]'" in out


def test_the_readme_shows_every_format_with_these_two_rows():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in NAMES:
        assert f"```jsonl\n{(CASES / f'{name}.jsonl').read_text()}```" in readme, name
        assert f"`{name.removesuffix('_messages')}`: " in readme


TEMPLATES = Path(__file__).parent / "data" / "chat_templates"


@pytest.mark.parametrize(
    "template, conversation, reason",
    [
        ("gemma", [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "a system message: the chat template refuses it: System role not supported"),
        ("mistral_v0_1", [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}],
         "an assistant-first conversation: the chat template refuses it: Conversation roles must alternate"),
        ("phi3", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                  {"role": "user", "content": "r"}, {"role": "assistant", "content": "b"}], None),
    ],
)
def test_the_models_chat_template_is_checked_before_the_queue(tmp_path, template, conversation, reason):
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": (TEMPLATES / f"{template}.jinja").read_text(), "eos_token": "</s>", "bos_token": "<s>"}))
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(3)]
    write(tmp_path / "ds" / "training" / "a.jsonl", rows + [{"messages": conversation}], "jsonl")
    write(tmp_path / "ds" / "validation" / "a.jsonl", rows[:1], "jsonl")
    data = DataConfig(name="t", path=str(tmp_path / "ds"))
    if reason is None:
        assert inspect_dataset(data, "sft", 512, str(model)).rows["training"] == 4
        return
    with pytest.raises(UserError) as exc:
        inspect_dataset(data, "sft", 512, str(model))
    (line,) = exc.value.problems
    assert line.startswith(f"{tmp_path}/ds/training/a.jsonl:4: {reason}") and str(model) in line
