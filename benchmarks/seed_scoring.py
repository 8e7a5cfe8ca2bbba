"""The seed experiment's statistics, pure Python: what its table's numbers are computed with.

Scoring (a team is the first label word said; a general answer is right when one of its spellings is
said as whole words), macro F1, a bag-of-words baseline, nearest-neighbour similarity between sets,
and percentile bootstrap intervals over test items, paired where two arms answer the same items.
tests/test_seed_benchmark.py checks each on hand-written cases.
"""

from __future__ import annotations

import difflib
import math
import random
import re
import unicodedata
from collections import Counter
from typing import Callable, Sequence

LABELS = ("billing", "shipping", "technical", "account")
RESAMPLES = 2000


def label_of(text: str) -> str | None:
    words = re.findall(r"[a-z]+", text.lower())
    return next((w for w in words if w in LABELS), None)


def macro_f1(predicted: Sequence[str | None], gold: Sequence[str]) -> float:
    scores = []
    for label in LABELS:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def words(text: str) -> str:
    """Accents dropped, case folded, every run of non-alphanumerics one space: "Bogotá!" -> "bogota"."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", plain.casefold()))


def says(text: str, answer: str) -> bool:
    """One of the answer's "a|b" spellings appears in the text as whole words ("4" is not in "14")."""
    said = f" {words(text)} "
    return any(f" {words(spelling)} " in said for spelling in answer.split("|") if words(spelling))


def ticket_text(prompt: str) -> str:
    """The ticket of a routing prompt, without the instruction line every prompt shares."""
    return prompt.split("\nTicket: ", 1)[-1].rsplit("\nTeam:", 1)[0]


def nearest(texts: Sequence[str], pool: Sequence[str]) -> list[tuple[float, str]]:
    """For each text, the highest difflib ratio to any pool text (case folded) and that text."""
    found = []
    for text in texts:
        best, match = 0.0, ""
        for other in pool:
            m = difflib.SequenceMatcher(None, text.casefold(), other.casefold(), autojunk=False)
            if m.real_quick_ratio() > best and m.quick_ratio() > best and m.ratio() > best:
                best, match = m.ratio(), other
        found.append((best, match))
    return found


class NaiveBayes:
    """Multinomial naive Bayes on word counts, add-one smoothed: the keyword model fine-tuning must beat."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str]):
        self.counts = {label: Counter() for label in sorted(set(labels))}
        for text, label in zip(texts, labels):
            self.counts[label].update(words(text).split())
        self.vocabulary = set().union(*self.counts.values())
        self.prior = {label: math.log(labels.count(label) / len(labels)) for label in self.counts}
        self.total = {label: sum(c.values()) for label, c in self.counts.items()}

    def predict(self, text: str) -> str:
        seen = [w for w in words(text).split() if w in self.vocabulary]
        size = len(self.vocabulary)

        def log_score(label: str) -> float:
            return self.prior[label] + sum(
                math.log((self.counts[label][w] + 1) / (self.total[label] + size)) for w in seen)

        return max(sorted(self.counts), key=log_score)


def interval(statistic: Callable[[list[int]], float], items: int, resamples: int = RESAMPLES,
             seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of statistic(indices) over `items` test items drawn with replacement.

    A paired comparison is a statistic that computes both arms on the same drawn indices.
    """
    if items <= 0:
        raise ValueError("no items to resample")
    rng = random.Random(seed)
    draws = sorted(statistic([rng.randrange(items) for _ in range(items)]) for _ in range(resamples))
    return draws[int(0.025 * (resamples - 1))], draws[math.ceil(0.975 * (resamples - 1))]


def mean_over_seeds(metric: Callable[[list, list], float], runs: Sequence[Sequence], gold: Sequence,
                    indices: Sequence[int]) -> float:
    """The metric on the drawn items, averaged over the seeds' predictions of those items."""
    picked_gold = [gold[i] for i in indices]
    return sum(metric([run[i] for i in indices], picked_gold) for run in runs) / len(runs)


def share(predicted: Sequence[bool], _gold: Sequence = ()) -> float:
    """The share of items answered right, in points (0 to 100)."""
    return 100.0 * sum(predicted) / len(predicted) if predicted else float("nan")
