"""Writes the seed experiment's task, deterministically: `python conf/datasets/make_seed.py` (`--check` only compares).

Support tickets to route: billing, shipping, technical or account, 400 training and 100 validation rows
(prompt/completion), written from templates with drawn slots so no validation ticket is a training one.
benchmarks/seed_experiment.py fine-tunes SmolLM2-135M-Instruct on it, as the NeMo guide's LoRA experiment.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SEED = 7
TRAINING, VALIDATION = 400, 100
ROOT = Path(__file__).resolve().parent / "seed"
PROMPT = "Route this support ticket to one team: billing, shipping, technical or account.\nTicket: {text}\nTeam:"
TEMPLATES = {
    "billing": ["I was charged twice for my {item} this {when}.", "Can I get a refund for the {item} I returned {when}?",
                "My invoice for the {item} shows the wrong amount.", "Why did my card get declined when paying for the {item}?",
                "The {item} subscription renewed {when} but I had cancelled it."],
    "shipping": ["My {item} has not arrived and it was due {when}.", "The tracking number for my {item} does not work.",
                 "The box with my {item} arrived damaged {when}.", "Can you deliver the {item} to a different address?",
                 "The courier left my {item} at the wrong house {when}."],
    "technical": ["The {item} app crashes every time I open it.", "My {item} will not connect to wifi since {when}.",
                  "The {item} shows an error code after the update {when}.", "The screen of my {item} stays black.",
                  "How do I reset the {item} to factory settings?"],
    "account": ["I cannot log in to my account since {when}, I only wanted to check my {item} order.",
                "Please change the email address on the account I used for the {item} {when}.",
                "I forgot my password and the reset link from {when} for the {item} store expired.",
                "How do I delete my account and my {item} order history?",
                "Someone else logged in to my account {when} and looked at my {item} orders."],
}
ITEMS = ["headphones", "laptop", "phone", "camera", "watch", "printer", "tablet", "speaker", "router", "keyboard",
         "monitor", "blender", "vacuum", "drone", "e-reader"]
WHEN = ["yesterday", "last week", "on Monday", "this morning", "two days ago", "last month", "on Friday", "today"]


def tickets(n: int, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    seen, rows = set(), []
    labels = sorted(TEMPLATES)
    while len(rows) < n:
        label = labels[len(rows) % len(labels)]
        text = rng.choice(TEMPLATES[label]).format(item=rng.choice(ITEMS), when=rng.choice(WHEN))
        if text not in seen:
            seen.add(text)
            rows.append({"prompt": PROMPT.format(text=text), "completion": " " + label})
    rng.shuffle(rows)
    return rows


def render() -> dict[str, str]:
    rows = tickets(TRAINING + VALIDATION)
    splits = {"training": rows[:TRAINING], "validation": rows[TRAINING:]}
    return {f"{split}/tickets.jsonl": "".join(json.dumps(r) + "\n" for r in part) for split, part in splits.items()}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [name for name, text in files.items() if not (ROOT / name).is_file() or (ROOT / name).read_text() != text]
        print("stale: " + ", ".join(stale) if stale else "up to date")
        return 1 if stale else 0
    for name, text in files.items():
        (ROOT / name).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
