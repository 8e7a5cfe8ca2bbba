"""Writes the bundled demo task, deterministically: `python conf/datasets/make_demo.py` (`--check` only compares).

The task is upper-casing three letters from a-j, written with spaces so that each letter is one token:
`uppercase: c a j ->` gives ` C A J`. A random-init tiny Llama scores 0 exact match on the held-out
rows; LoRA (rank 8 on q/k/v/o, learning rate 5e-3, batch 16, 150-300 steps) gets nearly all of them
right after a few seconds of CPU. Why this task: each output token is read from the input at one
fixed distance and mapped letter to letter, which a rank-8 adapter on attention learns for any weight
seed (reversal, or 26 letters, need more steps or rank and fail for some seeds). 1,000 possible
inputs, 450 drawn without repeats: no validation prompt is a training prompt.

Three forms of the same rows: `sft` (prompt, completion), `dpo` (prompt, chosen, rejected: the rejected
answer is the letters left in lower case, the usual mistake) and `grpo` (prompt, answer: the answer
without the leading space, for an exact-match reward on stripped text).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 2024
LETTERS = "abcdefghij"
LENGTH = 3
TRAINING, VALIDATION = 400, 50
ROOT = Path(__file__).resolve().parent / "demo"


def words(n: int, seed: int = SEED) -> list[list[str]]:
    """`n` distinct letter triples, so that no validation prompt is also a training prompt."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        word = [rng.choice(LETTERS) for _ in range(LENGTH)]
        if "".join(word) not in seen:
            seen.add("".join(word))
            out.append(word)
    return out


def rows(word: list[str]) -> dict[str, dict[str, str]]:
    prompt = f"uppercase: {' '.join(word)} ->"
    answer = " ".join(word).upper()
    return {
        "sft": {"prompt": prompt, "completion": " " + answer},
        "dpo": {"prompt": prompt, "chosen": " " + answer, "rejected": " " + " ".join(word)},
        "grpo": {"prompt": prompt, "answer": answer},
    }


def render() -> dict[str, str]:
    """Relative path -> file text, for every file of the demo."""
    all_words = words(TRAINING + VALIDATION)
    splits = {"training": all_words[:TRAINING], "validation": all_words[TRAINING:]}
    files = {}
    for form in ("sft", "dpo", "grpo"):
        for split, split_words in splits.items():
            lines = [json.dumps(rows(w)[form]) for w in split_words]
            files[f"{form}/{split}/uppercase.jsonl"] = "\n".join(lines) + "\n"
    return files


def main(argv: list[str]) -> int:
    stale = []
    for rel, text in render().items():
        target = ROOT / rel
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if "--check" not in argv:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8", newline="\n")
    if "--check" in argv and stale:
        print("stale demo files (run conf/datasets/make_demo.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
