"""APScheduler jobs: thin wrappers that poll a feed when its row says it is due."""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta

from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.domain import FeedOutcome
from monitor.pipeline import Deps, poll_feed
from monitor.store import repository as repo
from monitor.store.models import Feed

log = logging.getLogger(__name__)

MAX_JITTER = 300.0


def poll_if_due(feed_id: int, deps: Deps) -> FeedOutcome | None:
    """Poll a feed unless its row says to wait (backoff after failures, or a server's Retry-After)."""
    now = deps.clock()
    with deps.sessions() as session:
        due = repo.feed_next_due(session, feed_id)
    if due is not None and due > now + timedelta(seconds=1):
        log.debug("feed %s not due before %s", feed_id, due.isoformat())
        return None
    try:
        outcome = poll_feed(feed_id, deps)
    except Exception:  # the job must survive anything one poll does; the trace is logged
        log.exception("poll of feed %s crashed", feed_id)
        return None
    if outcome.ok:
        log.info("feed %s: %d new, %d relevant", outcome.feed, outcome.new_articles, outcome.relevant)
    return outcome


def build_scheduler(deps: Deps, feeds: list[Feed], *, workers: int) -> BackgroundScheduler:
    """One job per feed at its interval with jitter; a feed never runs twice at once; missed runs coalesce."""
    scheduler = BackgroundScheduler(
        executors={"default": JobExecutor(workers)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    now = deps.clock()
    for feed in feeds:
        jitter = min(feed.interval_seconds * 0.1, MAX_JITTER)
        first = max(now, feed.next_due_at or now) + timedelta(seconds=random.uniform(0, min(jitter, 30.0)))
        scheduler.add_job(
            poll_if_due,
            IntervalTrigger(seconds=feed.interval_seconds, jitter=jitter or None, timezone="UTC"),
            args=(feed.id, deps),
            id=f"feed-{feed.id}",
            name=f"poll {feed.name}",
            next_run_time=first,
        )
    return scheduler


def serve_forever(scheduler: BackgroundScheduler, stop: threading.Event) -> None:
    """Run until stop is set (by SIGINT/SIGTERM), then let the polls in hand finish."""
    scheduler.start()
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))
    stop.wait()
    log.info("stopping: finishing the polls in hand")
    scheduler.shutdown(wait=True)
