"""Dataset checks on the login node: every bad dataset is refused with the exact `file:line: reason`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.compiler.checks.datasets import inspect_dataset
from ftc.compiler.config.schema import DataConfig
from ftc.compiler.errors import UserError

DEMO = Path(__file__).resolve().parent.parent / "conf" / "datasets"
PC = {"prompt": "p", "completion": "c"}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
PREF = {"prompt": "p", "chosen": "good", "rejected": "bad"}
PA = {"prompt": "p", "answer": "a"}


def line(row) -> str:
    return row if isinstance(row, str) else json.dumps(row)


def make(root: Path, files: dict[str, list | bytes]) -> str:
    """A dataset folder from {relative path: rows (dicts or raw lines) or raw bytes}."""
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            target.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text("".join(line(r) + "\n" for r in content))
    return str(root)


def good(row=PC, n=3) -> dict:
    return {"training/a.jsonl": [row] * n, "validation/a.jsonl": [row]}


def problems(path: str, method: str = "lora", max_seq_length: int = 512, **data) -> list[str]:
    with pytest.raises(UserError) as exc:
        inspect_dataset(DataConfig(name="t", path=path, **data), method, max_seq_length)
    return exc.value.problems


def summary(path: str, method: str = "lora", max_seq_length: int = 512, **data):
    return inspect_dataset(DataConfig(name="t", path=path, **data), method, max_seq_length)


# ---------------------------------------------------------------- the bad-dataset catalogue

ONE_BAD_TRAINING_LINE = [
    ("bad json", '{"prompt": "p", "completion": }', PC, "lora", "not valid JSON (Expecting value at column 31)"),
    ("truncated json", '{"prompt": "p"', PC, "lora", "not valid JSON (Expecting ',' delimiter at column 15)"),
    ("not an object", '["p", "c"]', PC, "lora", "expected a JSON object, got array"),
    ("a bare string", '"p"', PC, "lora", "expected a JSON object, got string"),
    ("missing field", {"prompt": "p"}, PC, "lora", 'missing field "completion"'),
    ("empty string", {"prompt": "p", "completion": ""}, PC, "lora", 'field "completion" is empty'),
    ("whitespace string", {"prompt": "  \t", "completion": "c"}, PC, "lora", 'field "prompt" is empty'),
    ("wrong type", {"prompt": 3, "completion": "c"}, PC, "lora", 'field "prompt" must be a string, got number'),
    ("null", {"prompt": "p", "completion": None}, PC, "sft", 'field "completion" must be a string, got null'),
    ("blank line", "", PC, "lora", "blank line (NDJSON has none; delete it)"),
    ("whitespace line", "   ", PC, "lora", "blank line (NDJSON has none; delete it)"),
    (
        "mixed formats",
        CHAT,
        PC,
        "lora",
        "mixed formats: this row is chat, the dataset is prompt_completion (from {T}:1)",
    ),
    (
        "mixed answer",
        PA,
        PC,
        "lora",
        "mixed formats: this row is prompt_answer, the dataset is prompt_completion (from {T}:1)",
    ),
    (
        "chat bad role",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]},
        CHAT,
        "lora",
        'messages[1]: role must be system, user or assistant, got "bot"',
    ),
    (
        "chat missing role",
        {"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]},
        CHAT,
        "lora",
        'messages[0]: missing field "role"',
    ),
    (
        "chat ends with user",
        {"messages": [{"role": "user", "content": "hi"}]},
        CHAT,
        "lora",
        "the last message must be from the assistant, got user",
    ),
    (
        "chat late system",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "x"},
                {"role": "assistant", "content": "y"},
            ]
        },
        CHAT,
        "sft",
        "messages[1]: a system message may only come first",
    ),
    (
        "chat empty content",
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "yo"}]},
        CHAT,
        "lora",
        'messages[0]: field "content" is empty',
    ),
    ("chat messages not a list", {"messages": "hi"}, CHAT, "lora", 'field "messages" must be an array, got string'),
    ("chat no messages", {"messages": []}, CHAT, "lora", 'field "messages" is empty'),
    ("chat message not an object", {"messages": ["hi"]}, CHAT, "lora", "messages[0]: must be an object, got string"),
    ("preference missing rejected", {"prompt": "p", "chosen": "good"}, PREF, "dpo", 'missing field "rejected"'),
    (
        "preference identical",
        {"prompt": "p", "chosen": "x", "rejected": "x"},
        PREF,
        "dpo",
        'fields "chosen" and "rejected" are identical',
    ),
    ("answer a number", {"prompt": "p", "answer": 42}, PA, "grpo", 'field "answer" must be a string, got number'),
]


@pytest.mark.parametrize(
    "bad, row, method, reason", [case[1:] for case in ONE_BAD_TRAINING_LINE], ids=[c[0] for c in ONE_BAD_TRAINING_LINE]
)
def test_one_bad_line_is_reported_with_file_and_line(tmp_path, bad, row, method, reason):
    path = make(tmp_path / "ds", {"training/a.jsonl": [row, row, bad, row], "validation/a.jsonl": [row]})
    training = f"{path}/training/a.jsonl"
    assert problems(path, method) == [f"{training}:3: {reason.replace('{T}', training)}"]


def test_the_first_row_decides_the_format_and_a_wrong_one_for_the_method_is_one_line(tmp_path):
    path = make(tmp_path / "ds", good(PREF, n=50))
    assert problems(path, "lora") == [
        (
            f'{path}/training/a.jsonl:1: rows are preference {{"prompt", "chosen", "rejected"}}; '
            'method lora reads chat {"messages"} or sharegpt {"conversations"} or alpaca {"instruction", "output"} '
            'or prompt_completion {"prompt", "completion"} or text {"text"}'
        )
    ]
    path = make(tmp_path / "pc", good(PC))
    assert problems(path, "dpo") == [
        (
            f'{path}/training/a.jsonl:1: rows are prompt_completion {{"prompt", "completion"}}; '
            f'method dpo reads preference {{"prompt", "chosen", "rejected"}}'
        )
    ]
    assert problems(path, "grpo")[0].endswith('method grpo reads prompt_answer {"prompt", "answer"}')


def test_fields_that_match_no_format_name_the_mapping(tmp_path):
    path = make(tmp_path / "ds", good({"question": "i", "response": "o"}))
    assert problems(path, "grpo") == [
        f'4 rows: cannot tell the format from the fields ("question", "response"); '
        'method grpo reads prompt_answer {"prompt", "answer"}; map other column names with '
        f"data.fields.<field>=<column> (first at {path}/training/a.jsonl:1)",
    ]
    mapped = summary(path, "grpo", fields={"prompt": "question", "answer": "response"})
    assert (mapped.format, mapped.rows) == ("prompt_answer", {"training": 3, "validation": 1})


def test_an_explicit_format_is_checked_against_the_method_and_the_rows(tmp_path):
    path = make(tmp_path / "ds", good(CHAT))
    assert problems(path, "dpo", format="chat") == [
        "data.format: method dpo reads preference, not chat"
    ]
    # Nothing is mixed here: the rows are all chat, data.format says otherwise. One line, with the fix.
    assert problems(path, "lora", format="prompt_completion") == [
        f'4 rows: rows are chat {{"messages"}}, not data.format=prompt_completion; set data.format=chat or auto '
        f"(first at {path}/training/a.jsonl:1)"
    ]


def test_files_in_the_folder_itself_are_split_by_row_hash(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": "c"} for i in range(40)]
    path = make(tmp_path / "ds", {"a.jsonl": rows[:20], "b.jsonl": rows[20:]})
    got = summary(path)
    assert got.rows == {"training": 38, "validation": 2} and got.validation_from.startswith("0.05 of the rows")
    # Adding rows does not move the ones already split off; a row's split is its content's.
    more = make(tmp_path / "more", {"a.jsonl": rows + [{"prompt": f"q{i}", "completion": "c"} for i in range(40)]})
    assert summary(more).rows["validation"] >= 2
    assert summary(path, validation_max_rows=1).rows == {"training": 39, "validation": 1}


def test_one_row_cannot_be_split(tmp_path):
    path = make(tmp_path / "ds", {"training/a.jsonl": [PC] * 3})
    assert problems(path) == [
        f"{path}: too few distinct rows to split off validation rows; add rows, or give a validation/ folder"
    ]


def test_empty_split_and_files_of_another_kind(tmp_path):
    path = make(tmp_path / "ds", {"training/": [], "training/notes.txt": b"x", "validation/a.json": [PC]})
    assert problems(path) == [
        f"data.path: no data files in {path}/training (found notes.txt); ftc reads .jsonl, .ndjson, .json, .csv, .tsv, .parquet, .arrow"
    ]


def test_empty_file(tmp_path):
    path = make(tmp_path / "ds", {**good(), "validation/b.jsonl": b""})
    assert problems(path) == [f"{path}/validation/b.jsonl: empty file (no rows)"]


def test_bytes_that_are_not_utf8(tmp_path):
    path = make(
        tmp_path / "ds", {**good(), "validation/a.jsonl": b'{"prompt": "p", "completion": "c"}\n{"prompt": "\xff"}\n'}
    )
    assert problems(path) == [f"{path}/validation/a.jsonl:2: not valid UTF-8"]


def test_no_such_folder(tmp_path):
    assert problems(str(tmp_path / "nope")) == [f"data.path: no such file or folder: {tmp_path / 'nope'}"]


def test_problems_are_grouped_by_cause_one_line_each(tmp_path):
    bad = [{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}] * 500
    path = make(tmp_path / "ds", {"training/a.jsonl": [CHAT] + ["nope"] * 30 + bad, "validation/a.jsonl": [{"x": 1}]})
    assert problems(path) == [
        f"30 rows: not valid JSON (Expecting value at column 1) (first at {path}/training/a.jsonl:2)",
        f'500 rows: messages[1]: role must be system, user or assistant, got "bot" (first at {path}/training/a.jsonl:32)',
        f'{path}/validation/a.jsonl:1: missing field "messages"',
    ]
    many = make(tmp_path / "many", {"training/a.jsonl": [PC] + [{"prompt": "p", f"k{i}": 1} for i in range(30)]
                                    + [f"[{i}" for i in range(5)], "validation/a.jsonl": [PC]})
    assert len(problems(many)) == 2  # numbers are not causes


def test_problems_in_several_files_are_listed_in_file_order(tmp_path):
    path = make(
        tmp_path / "ds",
        {
            "training/b.jsonl": [PC, "[]"],
            "training/a.ndjson": [PC, {"prompt": 1, "completion": "c"}],
            "validation/v.jsonl": [PC, ""],
        },
    )
    assert problems(path) == [
        f'{path}/training/a.ndjson:2: field "prompt" must be a string, got number',
        f"{path}/training/b.jsonl:2: expected a JSON object, got array",
        f"{path}/validation/v.jsonl:2: blank line (NDJSON has none; delete it)",
    ]


def test_replay_in_the_wrong_format(tmp_path):
    path = make(tmp_path / "ds", good(PC))
    replay = make(tmp_path / "replay", {"general.jsonl": [PC, CHAT]})
    assert problems(path, replay={"path": replay, "fraction": 0.2}) == [
        (
            f"{replay}/general.jsonl:2: mixed formats: this row is chat, the dataset is prompt_completion "
            f"(from {path}/training/a.jsonl:1)"
        )
    ]


def test_replay_without_files_or_path(tmp_path):
    path = make(tmp_path / "ds", good(PC))
    empty = make(tmp_path / "replay", {"notes.txt": b"x"})
    assert problems(path, replay={"path": empty, "fraction": 0.1}) == [
        f"data.replay.path: no data files in {empty} (nor in its training/); "
        "ftc reads .jsonl, .ndjson, .json, .csv, .tsv, .parquet, .arrow"
    ]
    assert problems(path, replay={"fraction": 0.1}) == ["data.replay.fraction: 0.1 needs data.replay.path"]


# ---------------------------------------------------------------- what passes, and the counts


def test_extra_fields_crlf_and_a_bom_are_accepted(tmp_path):
    rows = (
        b'\xef\xbb\xbf{"prompt": "p", "completion": "c", "id": 1}\r\n{"prompt": "p", "completion": "c", "meta": {}}\r\n'
    )
    path = make(tmp_path / "ds", {"training/a.jsonl": rows, "validation/a.jsonl": [PC]})
    assert summary(path).rows == {"training": 2, "validation": 1}


def test_a_last_line_without_newline_is_a_row(tmp_path):
    path = make(
        tmp_path / "ds", {"training/a.jsonl": b'{"prompt": "p", "completion": "c"}', "validation/a.jsonl": [PC]}
    )
    assert summary(path).rows["training"] == 1


@pytest.mark.parametrize(
    "row, method, fmt",
    [
        (PC, "lora", "prompt_completion"),
        (CHAT, "sft", "chat"),
        (PREF, "dpo", "preference"),
        (PA, "grpo", "prompt_answer"),
    ],
)
def test_counts_are_exact_per_split_and_file(tmp_path, row, method, fmt):
    path = make(
        tmp_path / "ds",
        {"training/a.jsonl": [row] * 7, "training/b.ndjson": [row] * 5, "validation/a.jsonl": [row] * 3},
    )
    result = summary(path, method)
    assert (result.format, result.rows, result.long_rows, result.path) == (
        fmt,
        {"training": 12, "validation": 3},
        {},
        path,
    )


def test_long_rows_are_counted_not_refused(tmp_path):
    """Estimate: UTF-8 bytes / 4; a row of exactly 4 * max_seq_length bytes still fits."""
    fits = {"prompt": "p" * 20, "completion": "c" * 20}
    long = {"prompt": "p" * 20, "completion": "c" * 21}
    wide = {"prompt": "é" * 10, "completion": "c" * 21}
    path = make(tmp_path / "ds", {"training/a.jsonl": [fits, long, long, wide], "validation/a.jsonl": [fits, long]})
    result = summary(path, max_seq_length=10)
    assert result.rows == {"training": 4, "validation": 2}
    assert result.long_rows == {"training": 3, "validation": 1}


def test_long_preference_rows_count_the_longer_answer(tmp_path):
    row = {"prompt": "p" * 8, "chosen": "c", "rejected": "r" * 9}
    path = make(tmp_path / "ds", {"training/a.jsonl": [row], "validation/a.jsonl": [PREF]})
    assert summary(path, "dpo", max_seq_length=4).long_rows == {"training": 1}


def test_replay_rows_are_counted(tmp_path):
    path = make(tmp_path / "ds", good(PC))
    nested = make(tmp_path / "nested", {"training/a.jsonl": [PC] * 4, "other.jsonl": [CHAT]})
    assert summary(path, replay={"path": nested, "fraction": 0.5}).rows == {"training": 3, "validation": 1, "replay": 4}
    single = make(tmp_path / "single", {"r.jsonl": [PC] * 2})
    assert summary(path, replay={"path": f"{single}/r.jsonl"}).rows["replay"] == 2


@pytest.mark.parametrize(
    "method, form, fmt",
    [
        ("lora", "sft", "prompt_completion"),
        ("sft", "sft", "prompt_completion"),
        ("dpo", "dpo", "preference"),
        ("grpo", "grpo", "prompt_answer"),
    ],
)
def test_the_demo_data_passes_for_each_method(method, form, fmt):
    result = summary(str(DEMO / "demo" / form), method)
    assert (result.format, result.rows, result.long_rows) == (fmt, {"training": 400, "validation": 50}, {})


def test_the_demo_files_are_what_make_demo_writes():
    spec = importlib.util.spec_from_file_location("make_demo", DEMO / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert {p.relative_to(DEMO / "demo").as_posix() for p in (DEMO / "demo").rglob("*.jsonl")} == set(rendered)
    for rel, text in rendered.items():
        assert (DEMO / "demo" / rel).read_text(encoding="utf-8") == text
    assert sum(len(t.encode()) for t in rendered.values()) < 200_000
    train = {json.loads(x)["prompt"] for x in rendered["sft/training/uppercase.jsonl"].splitlines()}
    held_out = {json.loads(x)["prompt"] for x in rendered["sft/validation/uppercase.jsonl"].splitlines()}
    assert not train & held_out


def test_the_seed_task_compiles_with_its_replay_set(ftc):
    result = ftc("method=lora", "model=smollm2-135m", "data=custom", "data.name=seed", f"data.path={DEMO / 'seed'}",
                 f"data.replay.path={DEMO / 'seed_replay' / 'replay.jsonl'}", "data.replay.fraction=0.25",
                 "cluster=local", "dry_run=true")
    assert result.code == 0, result.err
    folder = next(line.split()[-1] for line in result.out.splitlines() if line.startswith("run folder "))
    plan = json.loads((Path(folder) / "plan.json").read_text())
    replay = len((DEMO / "seed_replay" / "replay.jsonl").read_text().splitlines())
    assert plan["dataset"]["rows"] == {"training": 400, "validation": 100, "replay": replay}


def test_the_check_imports_no_training_stack():
    code = (
        "import sys, ftc.compiler.checks.datasets; "
        "bad = {'torch', 'transformers', 'peft', 'trl', 'deepspeed', 'datasets', 'tokenizers'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
