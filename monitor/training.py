"""`monitor train`: a topic's training set extended with the readers' labels, the model retrained on it, and the
cross-validated figures before and after, so that a reader sees what the labels changed (and what they cost)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.classify import Labelled, TopicScorer
from monitor.domain import Embedder
from monitor.specs import TopicSpec
from monitor.evaluate import binary_scores
from monitor.topic_eval import FOLDS, Progress, cross_validated, embed_reporting


@dataclass(frozen=True)
class Figures:
    """Cross-validated figures of the detector on one training set."""

    items: int
    relevant: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class TrainReport:
    topic: str
    shipped: int  # items of the topic's training files
    labelled: int  # readers' items, before and after
    labelled_before: int
    before: Figures
    after: Figures
    agree_before: int  # readers' items the model in use before agreed with
    agree_after: int  # readers' items the retrained detector agrees with, each judged by a model that never saw it
    threshold: float
    trained_on: int


def _figures(scorer: TopicScorer, items: list[Labelled], vectors: np.ndarray, progress: Progress) -> tuple[Figures, np.ndarray]:
    _, decisions = cross_validated(scorer, items, vectors, progress)
    gold = [i.relevant for i in items]
    scores = binary_scores(decisions.tolist(), gold)
    return Figures(len(items), sum(gold), scores.precision, scores.recall, scores.f1), decisions


def train_with_labels(
    spec: TopicSpec,
    embedder: Embedder,
    shipped: list[Labelled],
    before: list[Labelled],
    after: list[Labelled],
    *,
    cache_dir: Path | None,
    progress: Progress,
) -> TrainReport:
    """Cross-validate the training set in use (shipped + labels folded before) and the new one (shipped + every label),
    then fit the new model and cache it, where every command that scores finds it."""
    texts = {item.id: item.document.for_embedding for item in [*shipped, *before, *after]}
    keys = list(texts)
    vectors = embed_reporting(embedder, [texts[k] for k in keys], "embedding training items", progress)
    row = {key: n for n, key in enumerate(keys)}

    def matrix(items: list[Labelled]) -> np.ndarray:
        return vectors[[row[item.id] for item in items]]

    old_set, new_set = [*shipped, *before], [*shipped, *after]
    old_scorer = TopicScorer(spec, embedder, training=old_set, cache_dir=cache_dir)
    before_figures, _ = _figures(old_scorer, old_set, matrix(old_set), progress)
    after_figures, decisions = _figures(old_scorer, new_set, matrix(new_set), progress)
    agree_after = sum(bool(d) == item.relevant for d, item in zip(decisions[len(shipped) :], after))
    cached = old_scorer.cache_path()
    old_model = old_scorer.model if cached and cached.is_file() else old_scorer.fit(matrix(old_set))
    if after:
        features, _, _ = old_scorer.featurizer.features([item.document for item in after], matrix(after))
        old_decisions = old_model.probabilities(features) >= old_model.threshold
    else:
        old_decisions = np.zeros(0, dtype=bool)
    agree_before = sum(bool(d) == item.relevant for d, item in zip(old_decisions, after))
    new_scorer = TopicScorer(spec, embedder, training=new_set, cache_dir=cache_dir)
    model = new_scorer.fit(matrix(new_set))
    return TrainReport(
        topic=spec.name,
        shipped=len(shipped),
        labelled=len(after),
        labelled_before=len(before),
        before=before_figures,
        after=after_figures,
        agree_before=agree_before,
        agree_after=agree_after,
        threshold=model.threshold,
        trained_on=model.trained_on,
    )


def render(report: TrainReport) -> str:
    def line(name: str, f: Figures) -> str:
        return f"{name:8}{f.items:>7}{f.relevant:>10}{f.precision:>11.3f}{f.recall:>8.3f}{f.f1:>8.3f}"

    return "\n".join(
        [
            (
                f"topic {report.topic}: {report.shipped} items from its training files, {report.labelled} from readers' "
                f"labels ({report.labelled_before} before)"
            ),
            f"{FOLDS}-fold cross-validated:",
            f"{'':8}{'items':>7}{'relevant':>10}{'precision':>11}{'recall':>8}{'F1':>8}",
            line("before", report.before),
            line("after", report.after),
            (
                f"readers' labelled articles the detector agrees with: before {report.agree_before} of {report.labelled} "
                f"(the model in use), after {report.agree_after} of {report.labelled} (cross-validated)"
            ),
            (
                f"model retrained on {report.trained_on} items, threshold {report.threshold:.2f}; "
                "`monitor rescore` applies it to the stored articles"
            ),
        ]
    )
