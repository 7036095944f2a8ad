"""`monitor rescore`: the stored articles scored again by the topics' current models, from their stored text and
vectors (nothing fetched), then every story's relevance settled to agree, a reader's label winning over the model."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import Document, TopicScorer
from monitor.domain import Embedder
from monitor.embed import from_bytes
from monitor.store import feedback
from monitor.store import repository as repo

log = logging.getLogger(__name__)


def rescore_all(
    sessions: sessionmaker[Session], scorers: list[TopicScorer], embedder: Embedder, *, now: datetime, batch: int = 256
) -> dict[str, tuple[int, int]]:
    """Score stored articles again from their stored text and vectors: (articles, relevant) per topic, where an
    article a reader labelled counts as the label says."""
    counts = {scorer.spec.name: [0, 0] for scorer in scorers}
    after = 0
    while True:
        with sessions() as session:
            rows = repo.articles_after(session, after, limit=batch)
        if not rows:
            break
        documents = [Document(row.title, row.text) for row in rows]
        missing = [i for i, row in enumerate(rows) if row.embedding is None]
        vectors = [from_bytes(row.embedding) if row.embedding is not None else None for row in rows]
        for i, vector in zip(missing, embedder.embed([documents[i].for_embedding for i in missing])):
            vectors[i] = vector
        matrix = np.vstack(vectors)
        with sessions.begin() as session:
            for scorer in scorers:
                for row, verdict in zip(rows, scorer.score(documents, matrix)):
                    saved = repo.save_verdicts(session, row.id, [verdict], now=now)
                    counts[scorer.spec.name][0] += 1
                    counts[scorer.spec.name][1] += saved[0].relevant
        after = rows[-1].id
    return {name: (total, relevant) for name, (total, relevant) in counts.items()}


def settle_all(sessions: sessionmaker[Session], *, now: datetime) -> feedback.Settled:
    """Every story's relevance made to agree with its articles' verdicts and its label, page by page: a story turned
    off owes no more alerts, one turned on is relevant from now without an alert (old news, newly seen)."""
    settled, after = feedback.Settled(), 0
    while True:
        with sessions.begin() as session:
            ids = feedback.story_ids_after(session, after)
            if not ids:
                return settled
            settled += feedback.settle_stories(session, ids, now=now)
        after = ids[-1]
