"""Who may work on what when many processes share the store: feed leases and the story placement lock."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, text, update
from sqlalchemy.orm import Session

from monitor.store.models import Feed

PLACEMENT_LOCK = 0x6D6F6E69746F72  # "monitor": the advisory lock key that serialises story placement
FEEDS_LOCK = PLACEMENT_LOCK + 1  # serialises bringing the feeds table in line with feeds.yaml
WORD_BLOCKS_LOCK = PLACEMENT_LOCK + 2  # serialises making the word index's next block (monitor/store/word_blocks.py)


def _hold(session: Session, key: int) -> None:
    """PostgreSQL: a transaction-level advisory lock. SQLite: its one write lock, taken now rather than at the
    first insert (the effect of BEGIN IMMEDIATE), so the reads that follow see every write before ours."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        session.execute(text("UPDATE feeds SET id = id WHERE 0"))


def lock_placement(session: Session) -> None:
    """Hold the placement lock until the caller's transaction ends: one process places articles at a time."""
    _hold(session, PLACEMENT_LOCK)


def lock_feeds(session: Session) -> None:
    """Hold the feeds lock until the caller's transaction ends: processes started at once add each feed once."""
    _hold(session, FEEDS_LOCK)


def lock_word_blocks(session: Session) -> None:
    """Hold the word blocks' lock until the caller's transaction ends: processes storing at once make each block once."""
    _hold(session, WORD_BLOCKS_LOCK)


def _free(now: datetime):
    return or_(Feed.lease_until.is_(None), Feed.lease_until < now)


def lease_due_feeds(
    session: Session, *, now: datetime, seconds: float, token: str, limit: int = 500
) -> list[int]:
    """Lease the active feeds that are due and not leased (or whose lease expired): their ids."""
    return lease_feeds(session, or_(Feed.next_due_at.is_(None), Feed.next_due_at <= now), now=now, seconds=seconds, token=token, limit=limit)


def lease_feeds(
    session: Session, wanted: ColumnElement[bool], *, now: datetime, seconds: float, token: str, limit: int = 500
) -> list[int]:
    """Lease the active feeds that match `wanted` and are not leased (or whose lease expired): their ids.

    One UPDATE … RETURNING, so two schedulers never lease one feed; PostgreSQL's SKIP LOCKED lets the
    second pass over rows the first is leasing. The token (fresh per call) goes with each feed's task.
    """
    due = (
        select(Feed.id)
        .where(Feed.active, wanted, _free(now))
        .order_by(Feed.next_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    leased = session.execute(
        update(Feed)
        .where(Feed.id.in_(due.scalar_subquery()), _free(now))
        .values(lease_until=now + timedelta(seconds=seconds), leased_by=token)
        .returning(Feed.id)
    )
    return sorted(leased.scalars())


def take_lease(session: Session, feed_id: int, *, token: str, run: str, now: datetime, seconds: float) -> bool:
    """A worker starts the poll its lease token names: the lease becomes the run's own, or False when the token
    is stale (the poll was done, or the lease expired and was given to another task)."""
    taken = session.execute(
        update(Feed)
        .where(Feed.id == feed_id, Feed.leased_by == token)
        .values(leased_by=run, lease_until=now + timedelta(seconds=seconds))
        .returning(Feed.id)
    )
    return taken.first() is not None


def release_lease(session: Session, feed_id: int, *, run: str) -> None:
    session.execute(update(Feed).where(Feed.id == feed_id, Feed.leased_by == run).values(leased_by=None, lease_until=None))


def leased_feeds(session: Session, *, now: datetime) -> int:
    """Feeds whose poll is enqueued or running now."""
    return session.scalar(select(func.count()).select_from(Feed).where(Feed.lease_until >= now)) or 0
