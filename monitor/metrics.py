"""Prometheus metrics: polls and stage times counted by the process doing the work, the store's figures read at each scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from monitor.domain import POLL_QUEUE, FeedOutcome
from monitor.store.vitals import vitals

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTBOX_STATES = ("pending", "failed")  # always reported, 0 when none


class PipelineMetrics:
    """Feed polls and the time of each stage, in the registry of the process that polls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = Counter(
            "monitor_feed_polls", "Feed polls finished, by outcome (ok or failed).", ["outcome"], registry=registry
        )
        self.articles = Counter("monitor_poll_articles", "New articles stored by this process's polls.", registry=registry)
        self.relevant = Counter(
            "monitor_poll_relevant_articles", "New articles this process's polls found relevant to the first topic.", registry=registry
        )
        self.stage_seconds = Histogram(
            "monitor_stage_seconds",
            "Seconds of one step of a pipeline stage (fetch, extract, parse, embed, score, dedup, store).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self.polls.labels(outcome)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def count_poll(self, outcome: FeedOutcome) -> None:
        self.polls.labels("ok" if outcome.ok else "failed").inc()
        self.articles.inc(outcome.new_articles)
        self.relevant.inc(outcome.relevant)


class StoreCollector(Collector):
    """The store's figures, read at each scrape, so that they are right however many processes write the store."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        topics: list[str],
        clock: Callable[[], datetime],
        queue_depth: Callable[[], int] | None = None,
    ) -> None:
        self.sessions, self.topics, self.clock, self.queue_depth = sessions, topics, clock, queue_depth

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("monitor_store_up", "1 when the store answered this scrape, else 0.")
        try:
            with self.sessions() as session:
                figures = vitals(session)
        except Exception as exc:  # a scrape must still answer, saying the store is down
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            yield from self._queue()
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("monitor_articles", "Articles stored.", value=figures.articles)
        relevant = GaugeMetricFamily("monitor_relevant_articles", "Stored articles relevant to a topic.", labels=["topic"])
        for topic in dict.fromkeys(self.topics + sorted(figures.relevant)):
            relevant.add_metric([topic], figures.relevant.get(topic, 0))
        yield relevant
        yield GaugeMetricFamily("monitor_feeds_active", "Feeds polled.", value=figures.active_feeds)
        yield GaugeMetricFamily("monitor_feeds_failing", "Active feeds whose last poll failed.", value=figures.failing_feeds)
        if figures.last_success_at is not None:
            age = max((self.clock() - figures.last_success_at).total_seconds(), 0.0)
            yield GaugeMetricFamily(
                "monitor_last_successful_poll_age_seconds", "Seconds since the newest successful poll of any feed.", value=age
            )
        outbox = GaugeMetricFamily("monitor_outbox_deliveries", "Alerts and digests in the outbox, by channel and state.", labels=["channel", "state"])
        counts = dict(figures.deliveries)
        for channel in {channel for channel, _ in counts} | {"slack", "digest"}:
            for state in OUTBOX_STATES:
                counts.setdefault((channel, state), 0)
        for (channel, state), count in sorted(counts.items()):
            outbox.add_metric([channel, state], count)
        yield outbox
        yield from self._queue()

    def _queue(self) -> Iterator[Metric]:
        if self.queue_depth is None:
            return
        try:
            depth = self.queue_depth()
        except Exception as exc:  # the broker down is news for the scrape, not a failed scrape
            log.warning("metrics: the broker did not answer: %s", exc)
            return
        yield GaugeMetricFamily("monitor_queue_depth", f"Feed polls waiting in the {POLL_QUEUE} queue.", value=depth)


def broker_queue_depth(broker_url: str, queue: str = POLL_QUEUE, *, timeout: float = 3.0) -> int:
    """Messages waiting in a queue of the broker (Redis or RabbitMQ); 0 when nothing has declared it yet."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as connection:
        connection.ensure_connection(max_retries=1)
        try:
            _, waiting, _ = connection.default_channel.queue_declare(queue=queue, passive=True)
        except connection.channel_errors:
            return 0
        return waiting


def store_registry(
    sessions: sessionmaker[Session], *, topics: list[str], clock: Callable[[], datetime], broker_url: str = ""
) -> CollectorRegistry:
    """The registry of the archive's /metrics: the store's figures, and the queue's depth when a broker is set."""
    registry = CollectorRegistry()
    depth = (lambda: broker_queue_depth(broker_url)) if broker_url else None
    registry.register(StoreCollector(sessions, topics=topics, clock=clock, queue_depth=depth))
    return registry
