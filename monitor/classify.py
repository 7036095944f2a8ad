"""Topic scoring: how close an article is to what a topic is about."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from monitor.config import TopicSpec
from monitor.domain import TopicVerdict
from monitor.embed import Embedder

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Document:
    """The text a topic judges: an article, or a line given to `monitor score`."""

    title: str
    text: str

    @property
    def for_embedding(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


class TopicScorer:
    """Scores documents by cosine similarity to the topic's description and examples."""

    def __init__(self, spec: TopicSpec, embedder: Embedder):
        self.spec = spec
        self.embedder = embedder
        self.threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLD
        self._examples: np.ndarray | None = None
        self._labels: list[str] = []

    def _example_vectors(self) -> np.ndarray:
        if self._examples is None:
            texts = [self.spec.description, *self.spec.examples]
            self._labels = ["description"] + [f"example {i + 1}" for i in range(len(self.spec.examples))]
            self._examples = self.embedder.embed(texts)
        return self._examples

    def score(self, documents: list[Document], vectors: np.ndarray) -> list[TopicVerdict]:
        examples = self._example_vectors()
        similarities = vectors @ examples.T if len(documents) else np.zeros((0, len(examples)))
        verdicts = []
        for row in similarities:
            best = int(np.argmax(row))
            score = float(np.clip(row[best], 0.0, 1.0))
            verdicts.append(
                TopicVerdict(
                    topic=self.spec.name,
                    score=round(score, 4),
                    relevant=score >= self.threshold,
                    why={"closest": self._labels[best], "similarity": round(float(row[best]), 4)},
                )
            )
        return verdicts
