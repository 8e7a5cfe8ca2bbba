"""The seed experiment's table, from its raw predictions: intervals, targets, and the README's markdown.

Pure Python, no model: `seed_experiment.py` writes the predictions to JSON and calls `summarise`;
`python benchmarks/seed_experiment.py --table results.json --readme README.md` redraws the README
table from that JSON alone. Each figure is a mean over the arm's seeds with a 95% percentile bootstrap
interval over test items (the same drawn items for every seed); a change against the base is paired
(both arms computed on the same drawn items), so its interval is that of the difference itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from seed_scoring import RESAMPLES, interval, macro_f1, mean_over_seeds, share

BASE = "base with prompting"
KEYWORDS = "keyword baseline (naive Bayes on training words)"
F1_GAIN = 0.15       # the target: macro F1 at least this much above the prompted base, interval above it
FORGETTING = 3.0     # the target: the general-set change's interval within +-3 points
F1_TARGET_ARMS = ("LoRA r8", "LoRA r8 + replay")
FORGETTING_ARMS = ("LoRA r8 + replay",)
START, END = "<!-- seed-table:start -->", "<!-- seed-table:end -->"


def _stat(metric, runs, gold, base=None):
    """statistic(indices) for `interval`: the arm's seed mean, minus the base's on the same items if given."""
    def statistic(indices):
        value = mean_over_seeds(metric, runs, gold, indices)
        return value - metric([base[i] for i in indices], [gold[i] for i in indices]) if base else value
    return statistic


def _figure(metric, runs, gold, base=None, resamples=RESAMPLES) -> dict:
    everything = list(range(len(gold)))
    point = _stat(metric, runs, gold, base)(everything)
    low, high = interval(_stat(metric, runs, gold, base), len(gold), resamples)
    seeds = [metric(run, gold) - (metric(base, gold) if base else 0.0) for run in runs]
    return {"value": point, "low": low, "high": high, "seeds": seeds}


def summarise(predictions: dict, resamples: int = RESAMPLES) -> dict:
    """Per arm: macro F1, its change against the base, general-set accuracy and its paired change, base-right kept."""
    gold = predictions["test"]["gold"]
    routed = predictions["test"]["arms"]
    right = predictions["general"]["arms"]
    base_routes, base_right = routed[BASE][0], right[BASE][0]
    kept_items = [i for i, ok in enumerate(base_right) if ok]
    table = {}
    for arm, runs in routed.items():
        row = {"seeds": len(runs), "f1": _figure(macro_f1, runs, gold, resamples=resamples)}
        if arm != BASE:
            row["f1_change"] = _figure(macro_f1, runs, gold, base_routes, resamples)
        if arm not in (BASE, KEYWORDS) and KEYWORDS in routed:  # what fine-tuning adds over the keyword model
            row["f1_vs_keywords"] = _figure(macro_f1, runs, gold, routed[KEYWORDS][0], resamples)
        if arm in right:
            answers = right[arm]
            truth = [True] * len(base_right)
            row["general"] = _figure(share, answers, truth, resamples=resamples)
            if arm != BASE:
                row["general_change"] = _figure(share, answers, truth, base_right, resamples)
            if kept_items:
                row["kept"] = _figure(share, [[run[i] for i in kept_items] for run in answers],
                                      [True] * len(kept_items), resamples=resamples)
        table[arm] = row
    return table


def targets(table: dict) -> list[dict]:
    """The issue's targets on the arms that ran, each met or missed with the numbers that decide it."""
    checks = []
    for arm in F1_TARGET_ARMS:
        if arm in table:
            change = table[arm]["f1_change"]
            checks.append({"arm": arm, "target": f"macro F1 change vs base > +{F1_GAIN} (interval's low end)",
                           "value": change["value"], "low": change["low"], "high": change["high"],
                           "met": change["low"] > F1_GAIN})
    for arm in FORGETTING_ARMS:
        if arm in table and "general_change" in table[arm]:
            change = table[arm]["general_change"]
            checks.append({"arm": arm, "target": f"general-set change interval within +-{FORGETTING:g} points",
                           "value": change["value"], "low": change["low"], "high": change["high"],
                           "met": -FORGETTING <= change["low"] and change["high"] <= FORGETTING})
    return checks


def _cell(figure: dict | None, digits: int, sign: bool = False) -> str:
    if not figure:
        return ""
    form = f"{'+' if sign else ''}.{digits}f"
    text = f"{figure['value']:{form}} [{figure['low']:{form}}, {figure['high']:{form}}]"
    if len(figure["seeds"]) > 1:
        text += f" (seeds {min(figure['seeds']):{form}}..{max(figure['seeds']):{form}})"
    return text


def markdown(results: dict) -> str:
    """The README's table and its provenance line, from the JSON `seed_experiment.py` writes."""
    lines = ["| arm | seeds | macro F1 | F1 change | F1 vs keywords | general set % | change, points "
             "| base-right kept % | train s | ~TFLOP |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, row in results["table"].items():
        cost = results["cost"].get(arm, {})
        lines.append(" | ".join([
            f"| {arm}", str(row["seeds"]), _cell(row["f1"], 3), _cell(row.get("f1_change"), 3, True),
            _cell(row.get("f1_vs_keywords"), 3, True), _cell(row.get("general"), 1), _cell(row.get("general_change"), 1, True), _cell(row.get("kept"), 1),
            f"{cost['seconds']:.0f}" if cost else "", f"{cost['tflop']:.1f}" if cost else ""]) + " |")
    setup = results["setup"]
    lines.append("")
    lines.append(f"Measured by `{setup['command']}` ({setup['mode']}; {setup['machine']}; {results['wall_s']:.0f} s "
                 f"in all): {setup['test_items']} test tickets, {setup['general_items']} general questions, "
                 f"{setup['seeds']} seed(s) a trained arm. Brackets: 95% bootstrap intervals over test items "
                 f"({setup['resamples']} resamples); changes are paired against the base; (seeds a..b): the "
                 "spread of the seeds' own values; F1 vs keywords is paired against the keyword baseline.")
    for check in results["targets"]:
        lines.append(f"- {'met' if check['met'] else '**missed**'}: {check['arm']}, {check['target']}: "
                     f"{check['value']:+.3f} [{check['low']:+.3f}, {check['high']:+.3f}]")
    if not results["targets"]:
        lines.append("- targets not checked in this mode")
    return "\n".join(lines + by_style(results.get("predictions", {}).get("test", {}))) + "\n"


def by_style(test: dict) -> list[str]:
    """Tickets routed right, % by the test generator's style (mean over seeds): where an arm's routing breaks."""
    styles = list(dict.fromkeys(test.get("style") or []))
    if not styles:
        return []
    gold, style = test["gold"], test["style"]
    items = {s: [i for i, x in enumerate(style) if x == s] for s in styles}
    lines = ["", "Routed right, % by ticket style (mean over seeds; n tickets):", "",
             "| arm | " + " | ".join(f"{s} ({len(items[s])})" for s in styles) + " |",
             "| --- |" + " --- |" * len(styles)]
    for arm, runs in test["arms"].items():
        cells = [100 * sum(run[i] == gold[i] for run in runs for i in items[s]) / (len(runs) * len(items[s]))
                 for s in styles]
        lines.append(f"| {arm} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    return lines


def replace_table(readme: Path, table: str) -> None:
    """Rewrites the README between its seed-table markers; a README without them is an error, not a guess."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: no {START} ... {END} block to replace")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{table}{END}", text, count=1), encoding="utf-8")
