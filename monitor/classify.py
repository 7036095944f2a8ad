"""Topic detection: a small logistic model over meaning (embedding similarities) and lexical evidence (tags)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from monitor.domain import Embedder, TopicVerdict

from monitor.specs import TopicSpec
from monitor.tags import NEGATIVE_FEATURES, POSITIVE_FEATURES, Tagger, Tags

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)

SIMILARITY_FEATURES = ["sim_description", "sim_examples", "sim_negatives", "sim_margin"]
SIGN_FREE_ROUNDS = 5
FOLDS = 5
REGULARISATION = 1.0
CALIBRATION_REGULARISATION = 1.0
FALLBACK_THRESHOLD = 0.5
LOWEST_THRESHOLD = 0.5
READER_KIND = "reader_label"  # the kind of a training item that comes from a reader's label


@dataclass(frozen=True)
class Document:
    """The text a topic judges: an article, or a line given to `monitor score`."""

    title: str
    text: str

    @property
    def for_embedding(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Labelled:
    """An item of a labelled set (JSON Lines with the fields of `monitor eval`)."""

    id: str
    document: Document
    relevant: bool
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    kind: str = ""


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file; a bad line raises ValueError naming it."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        yield number, record


def read_labelled(path: Path) -> list[Labelled]:
    items = []
    for number, raw in jsonl_records(path):
        try:
            items.append(
                Labelled(
                    id=str(raw.get("id", number)),
                    document=Document(str(raw.get("title") or ""), str(raw.get("text") or "")),
                    relevant=bool(raw["relevant"]),
                    vendors=list(raw.get("vendors") or []),
                    countries=list(raw.get("countries") or []),
                    actions=list(raw.get("actions") or []),
                    kind=str(raw.get("kind") or ""),
                )
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a labelled item (missing or wrong {exc})") from exc
    return items


def reader_item(key: str, title: str, text: str, relevant: bool) -> Labelled:
    """A reader's labelled article as a training item, its kind marking it as the reader's."""
    return Labelled(id=f"label:{key}", document=Document(title, text), relevant=relevant, vendors=[], countries=[], actions=[], kind=READER_KIND)


class TopicModel(BaseModel):
    """Trained parameters of one topic, cached as JSON and keyed by the fingerprint of what they came from."""

    topic: str
    fingerprint: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    calibration: tuple[float, float] = (1.0, 0.0)
    threshold: float
    trained_on: int

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: the model's log-odds mapped by the Platt scaling fitted on held-out folds."""
        z = (matrix - np.asarray(self.mean)) / np.asarray(self.scale)
        slope, offset = self.calibration
        return sigmoid(slope * (z @ np.asarray(self.coef) + self.intercept) + offset)


class Featurizer:
    """Features of documents for one topic: similarity to its description and examples, and its tag evidence."""

    def __init__(self, spec: TopicSpec, embedder: Embedder, tagger: Tagger):
        self.spec = spec
        self.embedder = embedder
        self.tagger = tagger
        self._anchors: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.example_labels = [f"example {i + 1}: {_headline(t)}" for i, t in enumerate(spec.examples)]

    def anchors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._anchors is None:
            description = self.embedder.embed([self.spec.description])
            examples = self.embedder.embed(self.spec.examples or [self.spec.description])
            negatives = self.embedder.embed(self.spec.negative_examples) if self.spec.negative_examples else None
            dim = description.shape[1]
            self._anchors = (description, examples, negatives if negatives is not None else np.zeros((0, dim), np.float32))
        return self._anchors

    @property
    def names(self) -> list[str]:
        return SIMILARITY_FEATURES + self.tagger.feature_names

    @property
    def signs(self) -> np.ndarray:
        """+1 where a feature's weight may not be negative, -1 where it may not be positive, 0 where it is free."""
        actions = {f"action_{key}" for key in self.tagger.action_keys}
        positive = POSITIVE_FEATURES | actions | {"sim_description", "sim_examples", "sim_margin"}
        negative = NEGATIVE_FEATURES | {"sim_negatives"}
        return np.array([1 if name in positive else -1 if name in negative else 0 for name in self.names])

    def features(self, documents: list[Document], vectors: np.ndarray) -> tuple[np.ndarray, list[Tags], np.ndarray]:
        """The feature matrix, the tags of each document, and the index of each one's closest example."""
        description, examples, negatives = self.anchors()
        to_description = (vectors @ description.T)[:, 0] if len(vectors) else np.zeros(0)
        to_examples = vectors @ examples.T if len(vectors) else np.zeros((0, len(examples)))
        to_negatives = vectors @ negatives.T if len(negatives) and len(vectors) else np.zeros((len(vectors), 1))
        best_example = to_examples.max(axis=1) if len(vectors) else np.zeros(0)
        best_negative = to_negatives.max(axis=1) if len(vectors) else np.zeros(0)
        tags = [self.tagger.tag(d.title, d.text) for d in documents]
        lexical = np.array([[t.features[name] for name in self.tagger.feature_names] for t in tags], dtype=np.float64)
        similarity = np.column_stack([to_description, best_example, best_negative, best_example - best_negative])
        matrix = np.hstack([similarity, lexical.reshape(len(documents), -1)]) if len(documents) else np.zeros((0, len(self.names)))
        closest = to_examples.argmax(axis=1) if len(vectors) else np.zeros(0, dtype=int)
        return matrix, tags, closest


def _headline(text: str) -> str:
    """A short label for an example: its first line that reads like a sentence, not navigation or a dateline."""
    for line in text.splitlines()[:40]:
        words = line.split()
        if 6 <= len(words) <= 40 and sum(w[0].islower() or w[0].isdigit() for w in words) >= len(words) * 0.4:
            return " ".join(words[:14]) + ("…" if len(words) > 14 else "")
    return " ".join(text.split()[:14])


def fingerprint(spec: TopicSpec, training: list[Labelled], embedding: str, featurizer_names: list[str]) -> str:
    payload = json.dumps(
        {
            "spec": spec.model_dump(mode="json"),
            "training": [(i.document.title, i.document.text, i.relevant) for i in training],
            "model": embedding,
            "features": featurizer_names,
            "version": 2,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def fit(matrix: np.ndarray, labels: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, np.ndarray, LogisticRegression]:
    """Logistic regression whose weights keep the signs asked for: a feature whose weight comes out the wrong way
    (evidence of the event counting against it, as collinear features do on a few hundred items) is left out and
    the rest refitted, so that a short story's action up front never lowers its score."""
    from sklearn.linear_model import LogisticRegression  # here, not on import: commands that never fit start seconds sooner

    mean = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale == 0] = 1.0
    used = np.ones(matrix.shape[1], dtype=bool)
    standardised = (matrix - mean) / scale
    for _ in range(SIGN_FREE_ROUNDS):
        model = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=2000)
        model.fit(standardised * used, labels)
        wrong = model.coef_[0] * signs < 0
        if not wrong.any():
            break
        used &= ~wrong
    model.coef_[0][~used] = 0.0
    return mean, scale, model


def out_of_fold(matrix: np.ndarray, labels: np.ndarray, signs: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Each item's log-odds from a model that never saw it (uncalibrated: the model weighs both classes alike)."""
    from sklearn.model_selection import StratifiedKFold

    log_odds = np.zeros(len(labels))
    splitter = StratifiedKFold(n_splits=min(folds, int(labels.sum()), int((~labels).sum())), shuffle=True, random_state=seed)
    for train, test in splitter.split(matrix, labels):
        mean, scale, model = fit(matrix[train], labels[train], signs)
        log_odds[test] = model.decision_function((matrix[test] - mean) / scale)
    return log_odds


def platt(log_odds: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and offset mapping held-out log-odds to probabilities that match how often items were relevant
    (Platt scaling), so that a score ranks and reads as a frequency instead of crowding at 1.00."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=CALIBRATION_REGULARISATION, max_iter=1000)
    model.fit(log_odds.reshape(-1, 1), labels)
    return float(model.coef_[0][0]), float(model.intercept_[0])


def best_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold of best F1 on held-out calibrated probabilities: the middle of the best plateau, never below
    one half (below it an item is more likely irrelevant, and real news holds far fewer relevant items than the
    training set, so a lower threshold costs precision there)."""
    thresholds = np.round(np.arange(LOWEST_THRESHOLD, 0.96, 0.01), 2)
    scores = []
    for threshold in thresholds:
        predicted = probabilities >= threshold
        tp = float((predicted & labels).sum())
        scores.append(2 * tp / (predicted.sum() + labels.sum()) if tp else 0.0)
    best = max(scores)
    plateau = [float(t) for t, f1 in zip(thresholds, scores) if f1 >= best - 1e-9]
    return plateau[len(plateau) // 2] if best > 0 else FALLBACK_THRESHOLD


def fitted_model(matrix: np.ndarray, labels: np.ndarray, featurizer: Featurizer, *, topic: str, key: str, threshold: float | None) -> TopicModel:
    """Fit on every item; calibration and threshold come from out-of-fold log-odds, never from the fitted items."""
    signs = featurizer.signs
    log_odds = out_of_fold(matrix, labels, signs)
    calibration = platt(log_odds, labels)
    if threshold is None:
        threshold = best_threshold(sigmoid(calibration[0] * log_odds + calibration[1]), labels)
    mean, scale, model = fit(matrix, labels, signs)
    return TopicModel(
        topic=topic,
        fingerprint=key,
        features=featurizer.names,
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=model.coef_[0].tolist(),
        intercept=float(model.intercept_[0]),
        calibration=calibration,
        threshold=threshold,
        trained_on=len(labels),
    )


def train_topic(spec: TopicSpec, training: list[Labelled], featurizer: Featurizer, vectors: np.ndarray, *, key: str) -> TopicModel:
    matrix, _, _ = featurizer.features([item.document for item in training], vectors)
    labels = np.array([item.relevant for item in training])
    return fitted_model(matrix, labels, featurizer, topic=spec.name, key=key, threshold=spec.threshold)


class TopicScorer:
    """Scores documents against one topic and tags them, with the evidence of each verdict."""

    def __init__(self, spec: TopicSpec, embedder: Embedder, *, training: list[Labelled] | None = None, cache_dir: Path | None = None):
        self.spec = spec
        self.embedder = embedder
        self.tagger = Tagger(spec)
        self.featurizer = Featurizer(spec, embedder, self.tagger)
        self.training = training or []
        self.cache_dir = cache_dir
        self._model: TopicModel | None = None

    @property
    def key(self) -> str:
        """The fingerprint of what the model learns from: the topic, its training items and what embeds them (the model,
        its backend and how much of a text it reads, since each gives other vectors)."""
        embedding = getattr(self.embedder, "identity", type(self.embedder).__name__)
        return fingerprint(self.spec, self.training, embedding, self.featurizer.names)

    @property
    def model(self) -> TopicModel | None:
        """The trained model, loaded from the cache or trained once; None when the topic has no training set."""
        if self._model is None and self.training:
            path = self.cache_path()
            if path and path.is_file():
                self._model = TopicModel.model_validate_json(path.read_text(encoding="utf-8"))
            else:
                self.fit(self.embedder.embed([item.document.for_embedding for item in self.training]))
        return self._model

    def cache_path(self) -> Path | None:
        return self.cache_dir / f"{self.spec.name}-{self.key}.json" if self.cache_dir else None

    def fit(self, vectors: np.ndarray) -> TopicModel:
        """Train on the training items' vectors (embedded by the caller, who may need them too) and cache the model."""
        log.info("training topic %s on %d labelled items", self.spec.name, len(self.training))
        self._model = train_topic(self.spec, self.training, self.featurizer, vectors, key=self.key)
        path = self.cache_path()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._model.model_dump_json(indent=1), encoding="utf-8")
        return self._model

    @property
    def threshold(self) -> float:
        if self.model is not None:
            return self.model.threshold
        return self.spec.threshold if self.spec.threshold is not None else FALLBACK_THRESHOLD

    def score(self, documents: list[Document], vectors: np.ndarray) -> list[TopicVerdict]:
        matrix, tags, closest = self.featurizer.features(documents, vectors)
        model = self.model
        if model is not None:
            scores = model.probabilities(matrix) if len(documents) else np.zeros(0)
        else:
            scores = np.clip(matrix[:, SIMILARITY_FEATURES.index("sim_examples")], 0, 1) if len(documents) else np.zeros(0)
        threshold = self.threshold
        verdicts = []
        for row, tag, example, score in zip(matrix, tags, closest, scores):
            relevant = bool(score >= threshold)
            verdicts.append(
                TopicVerdict(
                    topic=self.spec.name,
                    score=round(float(score), 4),
                    relevant=relevant,
                    vendors=tag.vendors,
                    countries=tag.countries,
                    actions=tag.actions,
                    why=self._why(row, tag, int(example), model),
                )
            )
        return verdicts

    def _why(self, row: np.ndarray, tag: Tags, example: int, model: TopicModel | None) -> dict:
        labels = self.featurizer.example_labels or ["description"]
        why = {
            "closest_example": labels[min(example, len(labels) - 1)],
            "similarity": round(float(row[SIMILARITY_FEATURES.index("sim_examples")]), 3),
            "vendor_phrases": tag.evidence.get("vendors", []),
            "subject_phrases": tag.evidence.get("subjects", []),
            "action_phrases": tag.evidence.get("actions", []),
            "country_phrases": tag.evidence.get("countries", []),
            "event": tag.event,
            "vendors_mentioned": tag.mentioned_vendors,
        }
        if model is not None:
            z = (row - np.asarray(model.mean)) / np.asarray(model.scale) * np.asarray(model.coef)
            order = np.argsort(-np.abs(z))[:3]
            why["strongest_signals"] = [f"{model.features[i]} {'+' if z[i] > 0 else '-'}{abs(z[i]):.1f}" for i in order]
        return why
