"""Passes over many feeds or articles: run_pass overlaps fetching (threads) with embedding; rescore_all scores the store again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import Document, TopicScorer
from monitor.deps import Deps
from monitor.domain import Embedder, FeedOutcome
from monitor.embed import from_bytes
from monitor.hostpool import HostPool
from monitor.pipeline import collect_feed, ingest, record_crash
from monitor.store import repository as repo

# Feeds read at once per page thread: each outlet is asked at most once per politeness delay, so the page threads
# stay busy only when several outlets have pages waiting. A feed's thread mostly waits for its pages.
FEEDS_PER_PAGE_THREAD = 4


def run_pass(
    feed_ids: list[int],
    deps: Deps,
    *,
    on_done: Callable[[FeedOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Poll feeds once, fetching in threads while the calling thread embeds and stores, so the model never waits."""
    outcomes: list[FeedOutcome] = []
    stop = stop or threading.Event()
    workers = deps.settings.fetch_workers
    in_flight = workers * FEEDS_PER_PAGE_THREAD
    with ThreadPoolExecutor(in_flight, thread_name_prefix="feed") as feed_pool, HostPool(deps.fetcher, workers) as page_pool:
        deps = replace(deps, page_pool=page_pool)
        pending: dict[Future, int] = {}
        queue = list(feed_ids)
        while queue or pending:
            while queue and len(pending) < in_flight and not stop.is_set():
                feed_id = queue.pop(0)
                pending[feed_pool.submit(collect_feed, feed_id, deps)] = feed_id
            if stop.is_set():
                queue.clear()
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                feed_id = pending.pop(future)
                try:
                    outcome = ingest(future.result(), deps)
                except Exception as exc:  # one feed's crash must not end the pass for the others
                    outcome = record_crash(feed_id, deps, exc)
                outcomes.append(outcome)
                if deps.on_outcome:
                    deps.on_outcome(outcome)
                if on_done:
                    on_done(outcome)
    return outcomes


def rescore_all(
    sessions: sessionmaker[Session], scorers: list[TopicScorer], embedder: Embedder, *, now: datetime, batch: int = 256
) -> dict[str, tuple[int, int]]:
    """Score stored articles again from their stored text and vectors: (articles, relevant) per topic."""
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
                    repo.save_verdicts(session, row.id, [verdict], now=now)
                    counts[scorer.spec.name][0] += 1
                    counts[scorer.spec.name][1] += verdict.relevant
        after = rows[-1].id
    return {name: (total, relevant) for name, (total, relevant) in counts.items()}
