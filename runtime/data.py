"""Loads a checked dataset into the columns TRL's trainers read, mixing in replay rows against forgetting.

The rows come from the compile-time check's own reader (compiler/data/reader.py), as canonical rows:
chat -> messages; prompt_completion -> prompt, completion (SFTTrainer puts the loss on the completion
only); text -> text (loss on every token); preference -> prompt, chosen, rejected; prompt_answer ->
prompt, answer (the answer reaches the reward function as a keyword).
"""

from __future__ import annotations

import random

from ftc.compiler.config.schema import DataConfig
from ftc.compiler.data.formats import METHOD_KINDS
from ftc.compiler.data.reader import read_dataset
from ftc.compiler.planning.plan import DatasetSummary


def uniform(rows: list[dict]) -> list[dict]:
    """Rows whose prompt/answers are strings in some rows and message lists in others, all as message lists."""
    keys = ("prompt", "chosen", "rejected")
    if not any(isinstance(row.get(k), list) for row in rows for k in keys):
        return rows
    roles = {"prompt": "user", "chosen": "assistant", "rejected": "assistant"}
    return [{k: [{"role": roles[k], "content": v}] if k in roles and isinstance(v, str) else v for k, v in row.items()}
            for row in rows]


def read_splits(data: DataConfig, method_name: str) -> dict[str, list[dict]]:
    """Canonical rows per split (training, validation, replay), exactly as the compile-time check read them."""
    reading = read_dataset(data, method_name, keep_rows=True)
    if reading.problems:
        raise ValueError("; ".join(reading.problems.lines()))
    return {split: uniform(rows) for split, rows in reading.rows.items()}


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

    if summary.format not in METHOD_KINDS[method_name]:
        raise ValueError(f"method {method_name} cannot train on {summary.format} rows")
    splits = read_splits(data, method_name)
    train = mix_replay(splits["training"], splits.get("replay", []), data.replay.fraction, seed)
    return Dataset.from_list(train), Dataset.from_list(splits["validation"])


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens the trainer sees per row: the chat template's, or prompt + longest answer + end-of-sequence."""
    chats = [row["messages"] for row in rows if "messages" in row]
    if rows and "text" in rows[0]:
        return [len(ids) + 1 for ids in tokenizer([row["text"] for row in rows])["input_ids"]]
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
