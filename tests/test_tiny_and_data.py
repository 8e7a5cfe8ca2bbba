"""The tiny model builder and the dataset loader, on the nodes' stack (torch, transformers, datasets)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftc.compiler.checks.datasets import inspect_dataset, iter_rows, split_files
from ftc.compiler.config.schema import Architecture, DataConfig
from ftc.compiler.errors import UserError
from ftc.runtime.data import (
    count_long_rows,
    load_splits,
    mix_replay,
    replay_count,
    token_lengths,
)
from ftc.runtime.tiny import ensure_tiny_model

pytest.importorskip("transformers")
pytestmark = pytest.mark.train

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "conf" / "datasets" / "demo"
ARCH = Architecture(**yaml.safe_load((ROOT / "conf" / "model" / "tiny.yaml").read_text())["architecture"])


def hashes(folder: str) -> dict[str, str]:
    return {name: hashlib.sha256(Path(folder, name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return ensure_tiny_model(str(tmp_path_factory.mktemp("models") / "tiny"), ARCH)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny)


# ---------------------------------------------------------------- the tiny model


def test_two_builds_are_byte_identical(tiny, tmp_path):
    again = ensure_tiny_model(str(tmp_path / "again"), ARCH)
    assert hashes(tiny) == hashes(again)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "ftc-tiny.json"} <= set(
        hashes(tiny)
    )
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_the_parameter_count_is_the_planners(tiny):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert sum(p.numel() for p in model.parameters()) == ARCH.parameters == 123200
    assert model.get_input_embeddings().weight.shape == (ARCH.vocab_size, ARCH.hidden_size)
    assert model.config.max_position_embeddings == ARCH.max_seq_length


def test_the_tokenizer_has_exactly_the_vocab_and_round_trips_the_demo(tokenizer):
    assert len(tokenizer) == ARCH.vocab_size
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token) == ("<|pad|>", "<|im_end|>", "<|bos|>")
    assert max(tokenizer.get_vocab().values()) == ARCH.vocab_size - 1
    texts = [
        v
        for form in ("sft", "dpo", "grpo")
        for row in iter_rows(split_files(str(DEMO / form), "training"))
        for v in row.values()
    ]
    texts.append("Ünïcödé, tabs\tand 日本語 survive the byte-level BPE")
    for text in texts:
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert len(tokenizer(" A B C", add_special_tokens=False)["input_ids"]) == 3


def test_the_chat_template_is_chatml_with_assistant_marks(tokenizer):
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert (
        text == "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "{% generation %}" in tokenizer.chat_template


def test_an_existing_build_is_reused_and_a_foreign_folder_refused(tiny, tmp_path):
    before = {n: os.stat(os.path.join(tiny, n)).st_mtime_ns for n in os.listdir(tiny)}
    assert ensure_tiny_model(tiny, ARCH) == tiny
    assert before == {n: os.stat(os.path.join(tiny, n)).st_mtime_ns for n in os.listdir(tiny)}
    with pytest.raises(UserError, match="exists but is not this tiny model"):
        ensure_tiny_model(tiny, ARCH.model_copy(update={"layers": 3}))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "weights.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="exists but is not this tiny model"):
        ensure_tiny_model(str(foreign), ARCH)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert hashes(ensure_tiny_model(str(empty), ARCH)) == hashes(tiny)


def test_concurrent_builders_do_not_collide(tiny, tmp_path):
    target = tmp_path / "shared" / "tiny"
    code = (
        "import sys, yaml; from ftc.compiler.config.schema import Architecture; from ftc.runtime.tiny import ensure_tiny_model; "
        f"a = Architecture(**yaml.safe_load(open({str(ROOT / 'conf/model/tiny.yaml')!r}))['architecture']); "
        f"ensure_tiny_model({str(target)!r}, a)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert [rank.wait(timeout=120) for rank in ranks] == [0, 0, 0]
    assert hashes(str(target)) == hashes(tiny)
    assert os.listdir(target.parent) == ["tiny"]


# ---------------------------------------------------------------- loading the splits


@pytest.mark.parametrize(
    "method, form, columns",
    [
        ("lora", "sft", ["prompt", "completion"]),
        ("sft", "sft", ["prompt", "completion"]),
        ("dpo", "dpo", ["prompt", "chosen", "rejected"]),
        ("grpo", "grpo", ["prompt", "answer"]),
    ],
)
def test_load_splits_gives_the_trl_columns(method, form, columns):
    data = DataConfig(name="demo", path=str(DEMO / form))
    summary = inspect_dataset(data, method, ARCH.max_seq_length)
    train, validation = load_splits(data, summary, method, seed=42)
    assert (train.column_names, validation.column_names) == (columns, columns)
    assert (len(train), len(validation)) == (400, 50)
    assert validation[0] == json.loads((DEMO / form / "validation" / "uppercase.jsonl").read_text().splitlines()[0])
    again, _ = load_splits(data, summary, method, seed=42)
    other, _ = load_splits(data, summary, method, seed=7)
    assert train["prompt"] == again["prompt"] != other["prompt"]
    assert sorted(train["prompt"]) == sorted(other["prompt"])


def write(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_chat_rows_keep_only_role_and_content(tmp_path):
    chat = {
        "messages": [{"role": "user", "content": "hi", "name": "x"}, {"role": "assistant", "content": "yo"}],
        "id": 3,
    }
    write(tmp_path / "ds" / "training", [chat] * 4)
    write(tmp_path / "ds" / "validation", [chat])
    data = DataConfig(name="chat", path=str(tmp_path / "ds"))
    train, validation = load_splits(data, inspect_dataset(data, "sft", 512), "sft", seed=0)
    assert train.column_names == ["messages"]
    assert validation[0]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


@pytest.mark.parametrize(
    "n_train, n_replay, fraction, expected",
    [(400, 30, 0.2, 100), (400, 500, 0.1, 44), (10, 3, 0.5, 10), (7, 5, 0.0, 0)],
)
def test_replay_is_exactly_the_fraction_of_the_mixed_set(tmp_path, n_train, n_replay, fraction, expected):
    write(tmp_path / "ds" / "training", [{"prompt": f"t{i}", "completion": "c"} for i in range(n_train)])
    write(tmp_path / "ds" / "validation", [{"prompt": "v", "completion": "c"}])
    write(tmp_path / "replay", [{"prompt": f"r{i}", "completion": "c"} for i in range(n_replay)])
    data = DataConfig(
        name="ds", path=str(tmp_path / "ds"), replay={"path": str(tmp_path / "replay"), "fraction": fraction}
    )
    summary = inspect_dataset(data, "lora", 512)
    assert summary.rows["replay"] == n_replay
    train, _ = load_splits(data, summary, "lora", seed=1)
    replayed = [p for p in train["prompt"] if p.startswith("r")]
    assert replay_count(n_train, fraction) == len(replayed) == expected
    assert len(train) == n_train + expected
    counts = [replayed.count(f"r{i}") for i in range(n_replay)]
    assert max(counts) - min(counts) <= 1  # a small replay set is cycled evenly
    if expected:
        assert abs(len(replayed) / len(train) - fraction) <= 0.5 / len(train)
    assert train["prompt"] == load_splits(data, summary, "lora", seed=1)[0]["prompt"]


def test_mix_replay_without_replay_only_shuffles():
    rows = [{"prompt": str(i)} for i in range(20)]
    mixed = mix_replay(rows, [], 0.3, seed=0)
    assert sorted(mixed, key=lambda r: int(r["prompt"])) == rows != mixed


# ---------------------------------------------------------------- exact token counts


def test_token_lengths_are_exact(tokenizer):
    row = {"prompt": "uppercase: a b c ->", "completion": " A B C"}
    prompt = len(tokenizer(row["prompt"])["input_ids"])
    assert token_lengths(tokenizer, [row]) == [prompt + 3 + 1]
    pair = {"prompt": row["prompt"], "chosen": " A", "rejected": " a b c"}
    assert token_lengths(tokenizer, [pair]) == [prompt + 3 + 1]
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    text = tokenizer.apply_chat_template(chat["messages"], tokenize=False)
    assert token_lengths(tokenizer, [chat]) == [len(tokenizer(text, add_special_tokens=False)["input_ids"])]


def test_count_long_rows_counts_rows_above_the_limit(tokenizer):
    rows = [{"prompt": "uppercase: " + "a " * n + "->", "completion": " A"} for n in range(1, 9)]
    lengths = token_lengths(tokenizer, rows)
    limit = lengths[3]
    assert count_long_rows(tokenizer, rows, limit) == sum(n > limit for n in lengths) == 4
    assert count_long_rows(tokenizer, iter(rows), limit, chunk=3) == 4
    assert count_long_rows(tokenizer, [], 10) == 0
