"""The seed experiment's sets measure what they claim, on the shipped files (no model needed).

The test tickets are held out in wording, not only in identity: no test ticket is within difflib ratio
0.7 of any training ticket (the old split's nearest neighbours were >= 0.88), and they use none of the
training products. Replay shares no template with the forgetting set: no replay prompt is within 0.7
of any general question (the old replay had 120 of 243 at >= 0.85).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1] / "conf" / "datasets"
sys.path.insert(0, str(DATASETS.parent.parent / "benchmarks"))

from seed_scoring import nearest, ticket_text, words  # noqa: E402

BOUND = 0.7


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


TRAINING = rows(DATASETS / "seed" / "training" / "tickets.jsonl")
TEST = rows(DATASETS / "seed_test" / "tickets.jsonl")
GENERAL = rows(DATASETS / "seed_general" / "general.jsonl")
REPLAY = rows(DATASETS / "seed_replay" / "replay.jsonl")


def test_training_validation_and_test_share_no_ticket():
    validation = rows(DATASETS / "seed" / "validation" / "tickets.jsonl")
    training = {row["prompt"] for row in TRAINING}
    assert len(training) == 400 and len(validation) == 100
    assert not training & {row["prompt"] for row in validation} and not training & {row["prompt"] for row in TEST}


def test_the_test_set_is_large_balanced_and_in_five_styles():
    teams = Counter(row["completion"].strip() for row in TEST)
    assert len(TEST) >= 200 and set(teams) == {"billing", "shipping", "technical", "account"}
    assert max(teams.values()) == min(teams.values())
    assert set(Counter(row["style"] for row in TEST)) == {"short", "long", "misspelled", "multi", "indirect"}
    assert len({row["prompt"] for row in TEST}) == len(TEST)


def test_no_test_ticket_is_close_to_a_training_ticket():
    train = [ticket_text(row["prompt"]) for row in TRAINING]
    found = nearest([ticket_text(row["prompt"]) for row in TEST], train)
    close = [(round(ratio, 3), text) for (ratio, text), row in zip(found, TEST) if ratio >= BOUND]
    assert not close, close[:5]


def test_the_test_tickets_name_none_of_the_training_products():
    sys.path.insert(0, str(DATASETS))
    from make_seed import ITEMS

    tickets = [f" {words(ticket_text(row['prompt']))} " for row in TEST]
    # "phone" is a word customers use for their own mobile ("my phone refuse to talk"), not a product slot.
    named = {item for item in ITEMS if item != "phone" and any(f" {words(item)} " in t for t in tickets)}
    assert named == set()


def test_no_replay_prompt_is_close_to_a_general_question():
    found = nearest([row["prompt"] for row in REPLAY], [row["prompt"] for row in GENERAL])
    close = [(round(ratio, 3), row["prompt"], text) for (ratio, text), row in zip(found, REPLAY) if ratio >= BOUND]
    assert not close, close[:5]
    assert len(REPLAY) >= 80 and all(row["completion"].startswith(" ") and row["completion"].strip() for row in REPLAY)


def test_the_general_set_asks_four_kinds_of_question():
    prompts = [row["prompt"] for row in GENERAL]
    kinds = {
        "arithmetic": sum(bool(re.match(r"What is \d+ \w+", p)) for p in prompts),
        "instructions": sum(p.startswith(("Repeat", "Say the word", "Reply with", "Which of these")) or
                            p.endswith("Answer yes or no.") for p in prompts),
        "formatting": sum(p.startswith(("Write the", "What comes next", "Put these")) for p in prompts),
    }
    kinds["facts"] = len(prompts) - sum(kinds.values())
    assert min(kinds.values()) >= 10, kinds
    assert all(row["answer"] and all(words(a) for a in row["answer"].split("|")) for row in GENERAL)


@pytest.mark.parametrize("script", ["make_seed.py", "make_seed_test.py", "make_seed_general.py"])
def test_the_seed_experiment_files_are_what_their_scripts_write(script):
    result = subprocess.run([sys.executable, str(DATASETS / script), "--check"], capture_output=True, text=True,
                            check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "up to date"), result.stdout + result.stderr
