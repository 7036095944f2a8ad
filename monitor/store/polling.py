"""Feeds' rows and their polling state: which feeds are due, what a poll needs to know of one, what it leaves behind,
and what choosing a feed's interval reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from monitor.domain import PollHint
from monitor.specs import FeedSpec
from monitor.store.leases import lock_feeds
from monitor.store.models import Article, Feed, FetchFailure


@dataclass(frozen=True)
class FeedState:
    """What a poll needs to know of a feed, detached from the session."""

    id: int
    name: str
    url: str
    interval_seconds: int
    language: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    last_full_fetch_at: datetime | None
    error_count: int
    created_at: datetime | None = None
    poll_interval: int | None = None  # chosen at the last poll; None before the first
    min_interval: int | None = None
    max_interval: int | None = None
    hints: tuple[PollHint, ...] = ()  # the feed document's, from its last parse

    @property
    def current_interval(self) -> int:
        """The interval in force: the one chosen at the last poll, else the configured one."""
        return self.poll_interval or self.interval_seconds


@dataclass(frozen=True)
class FeedStatus:
    """A feed's row as its readers see it: what it is, whether it is polled, and how its last polls went."""

    id: int
    name: str
    url: str
    interval_seconds: int
    active: bool
    created_at: datetime
    next_due_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    error_count: int
    poll_interval: int | None = None  # chosen at the last poll (adaptive polling); None before the first
    poll_reason: str | None = None  # why, in words: "12 items/day → 30 min"
    hub_url: str | None = None  # the WebSub hub the feed names, if any


def sync_feeds(session: Session, specs: Iterable[FeedSpec], *, now: datetime) -> None:
    """Make the feeds table follow the config: add, update, and deactivate what is gone (keeping its articles)."""
    specs = list(specs)
    lock_feeds(session)
    existing = {feed.name: feed for feed in session.scalars(select(Feed))}
    for spec in specs:
        feed = existing.get(spec.name)
        if feed is None:
            session.add(
                Feed(
                    name=spec.name,
                    url=spec.url,
                    interval_seconds=spec.interval,
                    min_interval_seconds=spec.min_interval,
                    max_interval_seconds=spec.max_interval,
                    language=spec.language,
                    tags=spec.tags,
                    active=True,
                    error_count=0,
                    next_due_at=now,
                    created_at=now,
                )
            )
            continue
        if feed.url != spec.url:
            feed.etag = feed.last_modified = feed.content_hash = None
            feed.next_due_at = now
        cadence = (spec.interval, spec.min_interval, spec.max_interval)
        if cadence != (feed.interval_seconds, feed.min_interval_seconds, feed.max_interval_seconds):
            feed.poll_interval = feed.poll_reason = None  # chosen again at a poll made now, within the new bounds
            feed.next_due_at = now
        feed.interval_seconds, feed.min_interval_seconds, feed.max_interval_seconds = cadence
        feed.url, feed.language, feed.tags = spec.url, spec.language, spec.tags
        feed.active = True
    names = {spec.name for spec in specs}
    for name, feed in existing.items():
        if name not in names:
            feed.active = False
    session.flush()


def active_feed_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Feed.id).where(Feed.active).order_by(Feed.id)))


def due_feed_ids(session: Session, *, now: datetime) -> list[int]:
    query = select(Feed.id).where(Feed.active, (Feed.next_due_at.is_(None)) | (Feed.next_due_at <= now))
    return list(session.scalars(query.order_by(Feed.next_due_at)))


def feed_state(session: Session, feed_id: int) -> FeedState:
    feed = session.get_one(Feed, feed_id)
    return FeedState(
        id=feed.id,
        name=feed.name,
        url=feed.url,
        interval_seconds=feed.interval_seconds,
        language=feed.language,
        etag=feed.etag,
        last_modified=feed.last_modified,
        content_hash=feed.content_hash,
        last_full_fetch_at=feed.last_full_fetch_at,
        error_count=feed.error_count,
        created_at=feed.created_at,
        poll_interval=feed.poll_interval,
        min_interval=feed.min_interval_seconds,
        max_interval=feed.max_interval_seconds,
        hints=tuple(PollHint(source, seconds) for source, seconds in feed.poll_hints or []),
    )


def feed_next_due(session: Session, feed_id: int) -> datetime | None:
    return session.scalar(select(Feed.next_due_at).where(Feed.id == feed_id))


def record_feed_failure(
    session: Session, feed_id: int, *, url: str, message: str, now: datetime, next_due: datetime
) -> None:
    session.execute(
        update(Feed)
        .where(Feed.id == feed_id)
        .values(
            last_polled_at=now,
            last_error=message,
            last_error_at=now,
            error_count=Feed.error_count + 1,
            next_due_at=next_due,
        )
    )
    session.add(FetchFailure(feed_id=feed_id, url=url, message=message, at=now))


def record_page_failures(session: Session, feed_id: int, failures: list[tuple[str, str]], *, now: datetime) -> None:
    session.add_all(FetchFailure(feed_id=feed_id, url=url, message=message, at=now) for url, message in failures)


def record_feed_success(session: Session, feed_id: int, *, now: datetime, next_due: datetime, **state) -> None:
    """Mark a poll that worked; state holds the etag, last_modified, content_hash, full-fetch time, the interval chosen
    (poll_interval, poll_reason) and the document's hints (poll_hints) to keep."""
    session.execute(
        update(Feed)
        .where(Feed.id == feed_id)
        .values(last_polled_at=now, last_success_at=now, error_count=0, last_error=None, next_due_at=next_due, **state)
    )


def feeds_overview(session: Session) -> list[FeedStatus]:
    """Every feed, active ones first, as `monitor status` and the scheduler read them."""
    rows = session.scalars(select(Feed).order_by(Feed.active.desc(), Feed.name))
    return [FeedStatus(**{name: getattr(row, name) for name in FeedStatus.__dataclass_fields__}) for row in rows]


def article_counts(session: Session) -> dict[int, int]:
    return dict(session.execute(select(Article.feed_id, func.count()).group_by(Article.feed_id)).all())


def item_times(session: Session, feed_id: int, *, since: datetime) -> list[datetime]:
    """When each of the feed's articles since then appeared: published, or first stored when undated (or dated later)."""
    rows = session.execute(
        select(Article.published_at, Article.fetched_at).where(
            Article.feed_id == feed_id, (Article.published_at >= since) | (Article.fetched_at >= since)
        )
    )
    return [published if published is not None and published <= fetched else fetched for published, fetched in rows]


def active_feed_urls(session: Session) -> list[str]:
    return list(session.scalars(select(Feed.url).where(Feed.active)))
