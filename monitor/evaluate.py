"""Quality figures: token-level extraction scores (and, with the topic issue, detector scores)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import mean


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float


def token_scores(predicted: str, truth: str) -> Scores:
    """Bag-of-whitespace-tokens overlap, as the article-extraction-benchmark measures it."""
    got, want = Counter(predicted.split()), Counter(truth.split())
    overlap = sum((got & want).values())
    if not got or not want or not overlap:
        return Scores(0.0, 0.0, 0.0)
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    return Scores(precision, recall, 2 * precision * recall / (precision + recall))


def extraction_f1(pairs: Iterable[tuple[str, str]]) -> Scores:
    """Mean per-page precision, recall and F1 over (predicted, truth) pairs."""
    scores = [token_scores(predicted, truth) for predicted, truth in pairs]
    return Scores(*(mean(getattr(s, name) for s in scores) for name in ("precision", "recall", "f1")))


def binary_scores(predicted: list[bool], gold: list[bool]) -> Scores:
    tp = sum(p and g for p, g in zip(predicted, gold))
    fp = sum(p and not g for p, g in zip(predicted, gold))
    fn = sum(g and not p for p, g in zip(predicted, gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1)
