"""WebSub push on the pipeline's side: subscribe feeds at their hubs, renew leases, put polls off while push is
healthy and bring them back when it goes quiet, and read the bodies the archive's callback kept as feed bytes."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from monitor.config import Settings
from monitor.domain import SUBSCRIBE, UNSUBSCRIBE, FeedOutcome
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher, FetchError
from monitor.deps import Deps
from monitor.hostpool import HostPool
from monitor.pipeline import ingest, read_entries, store_failure
from monitor.times import backoff_delay
from monitor.store import polling
from monitor.store import websub as store
from monitor.websub import FORGET, RETRY_FIRST, VERIFY_WAIT, HubLinks, callback_url, next_step, poll_due, push_healthy, request_form

log = logging.getLogger(__name__)

PUSH_RETRY = 30.0  # seconds before a pushed body that could not be read is read again (doubling per failure)


@dataclass
class Upkeep:
    """The side effects the push upkeep needs: the scheduler builds it without a model (distributed mode too)."""

    settings: Settings
    sessions: sessionmaker[Session]
    fetcher: Fetcher
    clock: Callable[[], datetime]


def upkeep(push: Upkeep) -> dict[str, int]:
    """One round over the feeds that name a hub: the requests each needs, then its next poll. Counts by what was done."""
    done: dict[str, int] = {}
    with push.sessions() as session:
        feeds = store.push_feeds(session)
    for feed in feeds:
        try:
            step = _ask_hub(push, feed)
            if step:
                done[step] = done.get(step, 0) + 1
            if _pace_polls(push, feed, ended=step in (FORGET, UNSUBSCRIBE)):
                done["polls moved"] = done.get("polls moved", 0) + 1
        except SQLAlchemyError as exc:
            log.error("push upkeep of feed %s: %s", feed.name, store_failure(exc))
    return done


def _ask_hub(push: Upkeep, feed: store.PushFeed) -> str | None:
    settings, now, sub = push.settings, push.clock(), feed.subscription
    wanted = feed.active and feed.hub_url and feed.topic_url and settings.public_url
    step = next_step(sub, HubLinks(feed.hub_url, feed.topic_url) if wanted else None, now=now)
    if step is None:
        return None
    if step == FORGET or (step == UNSUBSCRIBE and not settings.public_url):
        log.info("feed %s: push subscription at %s dropped", feed.name, sub.hub_url)
        with push.sessions.begin() as session:
            store.forget(session, sub.id)
        return FORGET
    hub, topic = (feed.hub_url, feed.topic_url) if step == SUBSCRIBE else (sub.hub_url, sub.topic_url)
    with push.sessions.begin() as session:  # committed before the request: a hub may verify before it answers
        sub = store.open_request(
            session, feed.id, hub=hub, topic=topic, new_id=secrets.token_urlsafe(24), new_secret=secrets.token_hex(32), mode=step, now=now
        )
    form = request_form(
        step, topic=topic, callback=callback_url(settings.public_url, sub.id), secret=sub.secret, lease_seconds=settings.websub_lease
    )
    try:
        push.fetcher.post(hub, form=form)
        error = None
    except FetchError as exc:
        error = str(exc)
    wait = backoff_delay(RETRY_FIRST, sub.attempts + 1, settings.max_backoff)
    if error:
        log.warning("feed %s: hub refused to %s: %s; asked again in %.0fs", feed.name, step, error, wait)
        if step == UNSUBSCRIBE:  # the hub's lease lapses on its own; nothing here waits for it
            with push.sessions.begin() as session:
                store.forget(session, sub.id)
            return step
    else:
        log.info("feed %s: asked %s to %s to %s", feed.name, hub, step, topic)
        wait = max(wait, VERIFY_WAIT)
    with push.sessions.begin() as session:
        store.close_request(session, sub.id, error=error, next_try_at=push.clock() + timedelta(seconds=wait))
    return step


def _pace_polls(push: Upkeep, feed: store.PushFeed, *, ended: bool) -> bool:
    """Put the feed's polls off while push is healthy; bring back a poll put off once push is quiet (or ended)."""
    sub, now = feed.subscription, push.clock()
    if sub is None:
        return False
    healthy = not ended and push_healthy(sub, interval=feed.interval_seconds, now=now)
    due = poll_due(
        healthy=healthy,
        next_due=feed.next_due_at,
        last_polled=feed.last_polled_at,
        deferred_due=sub.deferred_due,
        safety=max(push.settings.push_safety_poll, feed.interval_seconds),
        error_count=feed.error_count,
        now=now,
    )
    if due is None:
        return False
    with push.sessions.begin() as session:
        moved = store.put_off_poll(session, feed.id, sub.id, seen_due=feed.next_due_at, due=due, deferred=healthy)
    if moved and not healthy:
        log.info("feed %s: push went quiet (nothing heard for over %ds); polling it again", feed.name, feed.interval_seconds)
    return moved


def read_push(feed_id: int, body: bytes, content_type: str, deps: Deps) -> FeedOutcome:
    """A pushed body read as its feed's bytes, then the usual per-entry path; the feed's polling state is left alone."""
    if deps.page_pool is None:  # a worker's task: its pages go through a pool of their own, as a poll's do
        with HostPool(deps.fetcher, 1) as pages:
            return read_push(feed_id, body, content_type, replace(deps, page_pool=pages))
    with deps.sessions() as session:
        state = polling.feed_state(session, feed_id)
    with deps.timings.measure("parse"):
        parsed = parse_feed(body, url=state.url, content_type=content_type)
    return ingest(read_entries(state, parsed.entries, deps, feed_state={}, pushed=True), deps)


def drain_pushes(deps: Deps, *, feed_id: int | None = None, limit: int = 50) -> list[FeedOutcome]:
    """Read the pushed bodies that are due (of one feed, or all). One that fails stays, with its error, and is read
    again after a backoff; one read is deleted (a crash in between reads it again, which stores nothing twice)."""
    now = deps.clock()
    with deps.sessions() as session:
        pending = store.due_pushes(session, now=now, feed_id=feed_id, limit=limit)
    outcomes = []
    for item in pending:
        try:
            outcome = read_push(item.feed_id, item.body, item.content_type, deps)
        except Exception as exc:  # one body's failure must not hold up the others; it is kept to be read again
            message = store_failure(exc) if isinstance(exc, SQLAlchemyError) else f"{type(exc).__name__}: {exc}"
            wait = backoff_delay(PUSH_RETRY, item.attempts + 1, deps.settings.max_backoff)
            log.warning("pushed body %d of feed %d: %s; read again in %.0fs", item.id, item.feed_id, message, wait)
            with deps.sessions.begin() as session:
                store.push_failed(session, item.id, error=message, next_try_at=deps.clock() + timedelta(seconds=wait))
            continue
        with deps.sessions.begin() as session:
            store.push_done(session, item.id)
        log.info("feed %s (pushed): %d new, %d relevant", outcome.feed, outcome.new_articles, outcome.relevant)
        outcomes.append(outcome)
    return outcomes
