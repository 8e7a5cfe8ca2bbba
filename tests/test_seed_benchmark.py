"""The seed experiment's scoring (benchmarks/seed_experiment.py): the numbers in the README's table come from these."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_experiment.py"
spec = importlib.util.spec_from_file_location("seed_experiment", SCRIPT)
seed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed)


def test_macro_f1_averages_the_four_teams_f1():
    gold = ["billing", "billing", "shipping", "technical", "account", "account"]
    predicted = ["billing", "shipping", "shipping", None, "account", "billing"]
    # billing: tp 1, fp 1, fn 1 -> 0.5; shipping: tp 1, fp 1 -> 2/3; technical: 0; account: tp 1, fn 1 -> 2/3
    assert seed.macro_f1(predicted, gold) == pytest.approx((0.5 + 2 / 3 + 0 + 2 / 3) / 4)
    assert seed.macro_f1(gold, gold) == 1.0
    assert seed.macro_f1([None] * len(gold), gold) == 0.0


@pytest.mark.parametrize(("text", "label"), [
    (" technical", "technical"), ("Team: Billing.", "billing"), ("the shipping team", "shipping"),
    ("I'd say account, maybe billing", "account"), ("", None), ("tech support", None), ("accounts", None),
])
def test_a_team_is_the_first_label_word_said(text, label):
    assert seed.label_of(text) == label


@pytest.mark.parametrize(("text", "answer", "right"), [
    ("The capital of Colombia is Bogotá.", "Bogota|Bogotá", True), ("A spider has 8 legs.", "eight|8", True),
    ("A spider has six legs.", "eight|8", False), ("PARIS", "Paris", True), ("", "Paris", False),
])
def test_a_general_answer_is_right_when_one_of_its_spellings_is_said(text, answer, right):
    assert seed.says(text, answer) is right

