"""Loads a checked dataset into the columns TRL's trainers read, mixing in replay rows against forgetting.

Columns per format: prompt_completion -> prompt, completion (SFTTrainer puts the loss on the completion
only); chat -> messages; preference -> prompt, chosen, rejected; prompt_answer -> prompt, answer (the
answer reaches the reward function as a keyword). Fields beyond these are dropped.
"""

from __future__ import annotations

import random

from ftc.compiler.checks.datasets import (
    FIELDS,
    METHOD_FORMATS,
    iter_rows,
    replay_files,
    split_files,
)
from ftc.compiler.config.schema import DataConfig
from ftc.compiler.planning.plan import DatasetSummary


def columns(row: dict, fmt: str) -> dict:
    if fmt == "chat":
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]}
    return {field: row[field] for field in FIELDS[fmt]}


def read_split(path: str, split: str, fmt: str) -> list[dict]:
    return [columns(row, fmt) for row in iter_rows(split_files(path, split))]


def replay_count(n_train: int, fraction: float) -> int:
    """Replay rows to add so that they are `fraction` of the mixed training set."""
    return round(n_train * fraction / (1.0 - fraction)) if fraction > 0 else 0


def mix_replay(train: list[dict], replay: list[dict], fraction: float, seed: int) -> list[dict]:
    """`train` plus `replay_count` replay rows (whole shuffled passes, then a sample), shuffled with `seed`.

    A replay set smaller than needed is repeated rather than letting the share fall short.
    """
    rng = random.Random(seed)
    want = replay_count(len(train), fraction)
    picked: list[dict] = []
    if want and replay:
        while want - len(picked) >= len(replay):
            picked += rng.sample(replay, len(replay))
        picked += rng.sample(replay, want - len(picked))
    mixed = train + picked
    rng.shuffle(mixed)
    return mixed


def load_splits(data: DataConfig, summary: DatasetSummary, method_name: str, seed: int):
    """(training, validation) as `datasets.Dataset`; training is shuffled with `seed`, validation keeps file order."""
    from datasets import Dataset

    fmt = summary.format
    if fmt not in METHOD_FORMATS[method_name]:
        raise ValueError(f"method {method_name} cannot train on {fmt} rows")
    train = read_split(data.path, "training", fmt)
    validation = read_split(data.path, "validation", fmt)
    if data.replay.path:
        replay = [columns(row, fmt) for row in iter_rows(replay_files(data.replay.path))]
    else:
        replay = []
    train = mix_replay(train, replay, data.replay.fraction, seed)
    return Dataset.from_list(train), Dataset.from_list(validation)


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens the trainer sees per row: the chat template's, or prompt + longest answer + end-of-sequence."""
    chats = [row["messages"] for row in rows if "messages" in row]
    if chats:
        return [len(ids) for ids in tokenizer.apply_chat_template(chats, tokenize=True, return_dict=True)["input_ids"]]
    prompts = tokenizer([row["prompt"] for row in rows])["input_ids"]
    longest = [0] * len(rows)
    for key in ("completion", "chosen", "rejected", "answer"):
        if rows and key in rows[0]:
            ids = tokenizer([row[key] for row in rows], add_special_tokens=False)["input_ids"]
            longest = [max(a, len(b)) for a, b in zip(longest, ids)]
    return [len(p) + a + 1 for p, a in zip(prompts, longest)]


def count_long_rows(tokenizer, rows, max_seq_length: int, chunk: int = 1024) -> int:
    """Rows of one format whose exact token count exceeds `max_seq_length`: the trainer truncates them."""
    rows = list(rows)
    return sum(
        n > max_seq_length for i in range(0, len(rows), chunk) for n in token_lengths(tokenizer, rows[i : i + chunk])
    )
