"""The seed experiment's scoring and statistics (benchmarks/seed_scoring.py, seed_report.py) on hand-written cases,
and its --quick mode end to end: the numbers in the README's table come from these."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(Path(__file__).parent))

import seed_report as report  # noqa: E402
import seed_scoring as scoring  # noqa: E402
from smollm2_fixture import smollm2_path  # noqa: E402,F401 - fixture


def test_macro_f1_averages_the_four_teams_f1():
    gold = ["billing", "billing", "shipping", "technical", "account", "account"]
    predicted = ["billing", "shipping", "shipping", None, "account", "billing"]
    # billing: tp 1, fp 1, fn 1 -> 0.5; shipping: tp 1, fp 1 -> 2/3; technical: 0; account: tp 1, fn 1 -> 2/3
    assert scoring.macro_f1(predicted, gold) == pytest.approx((0.5 + 2 / 3 + 0 + 2 / 3) / 4)
    assert scoring.macro_f1(gold, gold) == 1.0
    assert scoring.macro_f1([None] * len(gold), gold) == 0.0


@pytest.mark.parametrize(("text", "label"), [
    (" technical", "technical"), ("Team: Billing.", "billing"), ("the shipping team", "shipping"),
    ("I'd say account, maybe billing", "account"), ("", None), ("tech support", None), ("accounts", None),
])
def test_a_team_is_the_first_label_word_said(text, label):
    assert scoring.label_of(text) == label


@pytest.mark.parametrize(("text", "answer", "right"), [
    ("The capital of Colombia is Bogotá.", "Bogota|Bogotá", True), ("A spider has 8 legs.", "eight|8", True),
    ("A spider has six legs.", "eight|8", False), ("PARIS", "Paris", True), ("", "Paris", False),
    ("I am not sure.", "no", False), ("No, ice is cold.", "no", True), ("No.", "no", True),
    ("The answer is 14.", "4", False), ("2 plus 2 is 4.", "4", True), ("It is 4.0", "4", True),
    ("Recycling helps reduce waste.", "red", False), ("A ripe tomato is red!", "red", True),
    ("There are twenty four hours.", "24|twenty-four", True), ("Water is H2O.", "H2O", True),
    ("Mexico is big.", "Mexico City", False), ("It is Mexico City.", "Mexico City", True),
    ("apple, fig, pear", "apple fig pear", True), ("fig, apple, pear", "apple fig pear", False),
    ("anything", "|", False), ("catalog", "cat", False),
])
def test_a_general_answer_is_right_when_one_of_its_spellings_is_said_as_whole_words(text, answer, right):
    assert scoring.says(text, answer) is right


def test_the_ticket_is_compared_without_the_shared_instruction():
    prompt = "Route this support ticket to one team: billing, shipping, technical or account.\nTicket: Hi\nthere\nTeam:"
    assert scoring.ticket_text(prompt) == "Hi\nthere"


def test_nearest_finds_the_most_similar_pool_text():
    found = scoring.nearest(["my parcel is late", "zzzz"], ["My parcel is late!", "the app crashes"])
    assert found[0] == (pytest.approx(2 * 17 / 35), "My parcel is late!")
    assert found[1][0] == 0.0


def test_the_keyword_baseline_learns_words_and_ignores_unseen_ones():
    model = scoring.NaiveBayes(["refund my card", "card charged twice", "parcel late", "parcel lost box"],
                               ["billing", "billing", "shipping", "shipping"])
    assert model.predict("where is the parcel") == "shipping"
    assert model.predict("CARD refund??") == "billing"
    assert model.predict("zebra") == "billing"  # no known word: the first label of equal priors, deterministically


def test_a_bootstrap_interval_of_a_constant_is_that_constant():
    assert scoring.interval(lambda idx: 0.7, 50) == (0.7, 0.7)
    values = [5.0] * 30
    assert scoring.interval(lambda idx: sum(values[i] for i in idx) / len(idx), 30) == (5.0, 5.0)


def test_a_bootstrap_interval_of_a_coin_has_the_binomial_width():
    flips = [i % 2 == 0 for i in range(400)]  # a share of 50 points over 400 items: +-1.96 * 2.5 = +-4.9
    low, high = scoring.interval(lambda idx: scoring.share([flips[i] for i in idx]), len(flips))
    assert low < 50 < high
    assert 4.0 < 50 - low < 6.0 and 4.0 < high - 50 < 6.0
    assert scoring.interval(lambda idx: scoring.share([flips[i] for i in idx]), 400, seed=3) != (low, high)
    with pytest.raises(ValueError):
        scoring.interval(lambda idx: 0.0, 0)


def test_a_paired_change_is_the_difference_on_the_same_items():
    base = [i % 2 == 0 for i in range(200)]
    same = {"test": {"gold": ["billing"], "arms": {report.BASE: [["billing"]], "x": [["billing"]]}},
            "general": {"arms": {report.BASE: [base], "x": [base, base, base]}}}
    change = report.summarise(same, resamples=200)["x"]["general_change"]
    assert (change["value"], change["low"], change["high"]) == (0.0, 0.0, 0.0)
    # Three more right of 200 in every seed: +1.5 points; paired, its interval stays near it, where two
    # independent 50% shares over 200 items would each be +-7 points wide.
    better = [ok or i in (1, 3, 5) for i, ok in enumerate(base)]
    moved = {"test": same["test"], "general": {"arms": {report.BASE: [base], "x": [better, better, better]}}}
    change = report.summarise(moved, resamples=500)["x"]["general_change"]
    assert change["value"] == pytest.approx(1.5)
    assert 0.0 <= change["low"] <= 1.5 <= change["high"] <= 4.0
    assert change["seeds"] == pytest.approx([1.5, 1.5, 1.5])


def predictions(arm_routes: list[list[str]], gold: list[str], base: list[str], arm_right=None, base_right=None):
    base_right = base_right or [True, False] * 50
    return {"test": {"gold": gold, "arms": {report.BASE: [base], "LoRA r8 + replay": arm_routes}},
            "general": {"arms": {report.BASE: [base_right], "LoRA r8 + replay": arm_right or [base_right]}}}


def test_targets_are_met_only_when_the_interval_clears_them():
    gold = (["billing", "shipping", "technical", "account"] * 50)
    wrong = ["billing"] * len(gold)
    table = report.summarise(predictions([gold, gold, gold], gold, wrong), resamples=300)
    checks = {c["target"].split()[0]: c for c in report.targets(table)}
    assert checks["macro"]["met"] and checks["macro"]["value"] == pytest.approx(1.0 - 0.1)
    assert checks["general-set"]["met"]  # the general answers did not move: [0, 0]
    # A gain whose interval straddles +0.15 is missed, even though its point estimate is above it.
    few, few_wrong = gold[:40], wrong[:40]
    near = [g if i < 6 else "billing" for i, g in enumerate(few)]  # 5 more right of 40: +0.18, interval from 0
    table = report.summarise(predictions([near], few, few_wrong), resamples=300)
    f1 = report.targets(table)[0]
    assert f1["value"] > 0.15 and f1["low"] <= 0.15 and not f1["met"]
    # Forgetting whose interval leaves +-3 points is missed.
    base_right = [True] * 100
    lost = [[i >= 10 for i in range(100)]]
    table = report.summarise(predictions([gold], gold, wrong, lost, base_right), resamples=300)
    forgetting = report.targets(table)[1]
    assert forgetting["value"] == pytest.approx(-10.0) and not forgetting["met"]


def test_the_readme_table_is_redrawn_from_the_json_alone(tmp_path):
    gold = ["billing", "shipping", "technical", "account"] * 10
    table = report.summarise(predictions([gold, gold], gold, ["billing"] * 40), resamples=200)
    results = {"table": table, "targets": report.targets(table), "wall_s": 12.0,
               "cost": {"LoRA r8 + replay": {"seconds": 3.0, "tokens": 10, "trainable": 5, "tflop": 0.01}},
               "setup": {"command": "python benchmarks/seed_experiment.py --quick", "mode": "quick",
                         "machine": "2 CPUs", "test_items": 40, "general_items": 100, "seeds": 2, "resamples": 200}}
    text = report.markdown(results)
    assert "| LoRA r8 + replay | 2 | 1.000 [1.000, 1.000] (seeds 1.000..1.000) |" in text and "met: LoRA r8 + replay" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold table\n{report.END}\nafter\n")
    report.replace_table(readme, text)
    assert readme.read_text() == f"intro\n{report.START}\n{text}{report.END}\nafter\n"
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- seed-table:start -->"):
        report.replace_table(tmp_path / "bare.md", text)


def test_the_trained_arms_are_paired_against_the_keyword_baseline_too():
    gold = ["billing", "shipping", "technical", "account"] * 25
    keywords = [g if i % 2 else "billing" for i, g in enumerate(gold)]  # half right
    found = predictions([gold], gold, ["billing"] * 100)
    found["test"]["arms"][report.KEYWORDS] = [keywords]
    table = report.summarise(found, resamples=300)
    vs = table["LoRA r8 + replay"]["f1_vs_keywords"]
    assert vs["value"] == pytest.approx(1.0 - report.macro_f1(keywords, gold)) and 0 < vs["low"] <= vs["high"]
    assert "f1_vs_keywords" not in table[report.KEYWORDS] and "f1_vs_keywords" not in table[report.BASE]


def test_routing_by_style_is_the_share_right_in_each_style_over_seeds():
    test = {"gold": ["billing", "account", "billing", "account"], "style": ["short", "short", "long", "long"],
            "arms": {"base": [["billing", None, None, None]],
                     "LoRA": [["billing", "account", "billing", None], ["billing", "account", None, None]]}}
    lines = report.by_style(test)
    assert lines[3] == "| arm | short (2) | long (2) |"
    assert lines[5:] == ["| base | 50.0 | 0.0 |", "| LoRA | 100.0 | 25.0 |"]
    assert report.by_style({"gold": [], "arms": {}}) == []


@pytest.mark.train
def test_the_quick_mode_runs_the_whole_pipeline_and_writes_its_json(tmp_path, smollm2_path):  # noqa: F811
    pytest.importorskip("peft")
    out = tmp_path / "quick.json"
    started = time.time()
    done = subprocess.run([sys.executable, str(BENCHMARKS / "seed_experiment.py"), "--quick", "--out", str(out),
                           "--runs", str(tmp_path / "runs")], capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["table"]) == {report.BASE, report.KEYWORDS, "LoRA r8 + replay"}
    assert len(results["predictions"]["test"]["gold"]) == 16 and results["targets"] == []
    assert all(0.0 <= row["f1"]["low"] <= row["f1"]["value"] <= row["f1"]["high"] <= 1.0
               for row in results["table"].values())
    assert "| LoRA r8 + replay | 1 |" in done.stdout
    print(f"seed experiment --quick: {time.time() - started:.0f} s")
