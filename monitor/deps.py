"""What a poll needs, built once by the composition root (Deps), and where its time goes (Timings)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import TopicScorer
from monitor.config import Settings
from monitor.dedup import Deduper
from monitor.domain import Embedder, FeedOutcome
from monitor.fetch import Fetcher
from monitor.hostpool import HostPool


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Timings:
    """Seconds spent in each stage, summed over threads: where a pass spends its time; each step also goes to observe."""

    def __init__(self, observe: Callable[[str, float], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._observe = observe

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += elapsed
            if self._observe:
                self._observe(stage, elapsed)


@dataclass
class Deps:
    """The side effects a poll needs, built once by the composition root."""

    settings: Settings
    sessions: sessionmaker[Session]
    fetcher: Fetcher
    embedder: Embedder
    scorers: list[TopicScorer]
    clock: Callable[[], datetime] = utcnow
    page_pool: HostPool | None = None
    timings: Timings = field(default_factory=Timings)
    deduper: Deduper = field(default_factory=Deduper)
    on_relevant_story: Callable[[Session, int, str], None] | None = None  # called in the storing transaction
    wake_sender: Callable[[], None] | None = None  # called after a transaction that owed an alert has committed
    on_outcome: Callable[[FeedOutcome], None] | None = None  # called once per finished poll (metrics)

    def load_models(self) -> float:
        """Loads the embedding model and reads (or trains) each topic's classifier, once, before polling: loaded by the
        first article instead, they hold it and every article behind it, and poll threads would race to train. Returns
        the seconds it took."""
        start = time.perf_counter()
        self.embedder.embed(["the model loads before the first poll"])
        for scorer in self.scorers:
            scorer.model  # noqa: B018  read (or trained) here, once
        return time.perf_counter() - start
