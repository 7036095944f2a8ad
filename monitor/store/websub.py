"""WebSub's queries: each feed's push subscription, the hub's verifications, and the pushed bodies waiting to be read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from monitor.domain import ACTIVE, FAILED, PENDING, SUBSCRIBE, UNSUBSCRIBE, UNSUBSCRIBING, Subscription
from monitor.store.leases import lease_feeds
from monitor.store.models import Feed, Push, PushSubscription

WANTED = (PENDING, ACTIVE, FAILED)  # states in which a hub's verification of a subscription is confirmed


@dataclass(frozen=True)
class PushFeed:
    """A feed that names a hub or holds a subscription, with what push needs to decide about it."""

    id: int
    name: str
    active: bool
    hub_url: str | None
    topic_url: str | None
    interval_seconds: int  # the interval in force: adaptive polling's last choice, else the configured one
    next_due_at: datetime | None
    last_polled_at: datetime | None
    error_count: int
    subscription: Subscription | None


@dataclass(frozen=True)
class PendingPush:
    id: int
    feed_id: int
    body: bytes
    content_type: str
    attempts: int


def _plain(row: PushSubscription) -> Subscription:
    return Subscription(**{name: getattr(row, name) for name in Subscription.__dataclass_fields__})


def subscription(session: Session, subscription_id: str) -> Subscription | None:
    row = session.get(PushSubscription, subscription_id)
    return _plain(row) if row else None


def subscriptions(session: Session) -> dict[int, Subscription]:
    """Every subscription, by feed id."""
    return {row.feed_id: _plain(row) for row in session.scalars(select(PushSubscription))}


def push_feeds(session: Session) -> list[PushFeed]:
    """The feeds that name a hub, and those that still hold a subscription (to end it)."""
    rows = session.execute(
        select(Feed, PushSubscription)
        .outerjoin(PushSubscription, PushSubscription.feed_id == Feed.id)
        .where(Feed.hub_url.is_not(None) | PushSubscription.id.is_not(None))
        .order_by(Feed.id)
    )
    return [
        PushFeed(
            id=feed.id,
            name=feed.name,
            active=feed.active,
            hub_url=feed.hub_url,
            topic_url=feed.topic_url,
            interval_seconds=feed.poll_interval or feed.interval_seconds,
            next_due_at=feed.next_due_at,
            last_polled_at=feed.last_polled_at,
            error_count=feed.error_count,
            subscription=_plain(sub) if sub else None,
        )
        for feed, sub in rows
    ]


def open_request(
    session: Session, feed_id: int, *, hub: str, topic: str, new_id: str, new_secret: str, mode: str, now: datetime
) -> Subscription:
    """Record a request about to be sent to the hub, before it is sent (the hub may verify at once).

    A feed without a subscription, or whose hub or topic changed, gets a new one: a new id and secret, so that
    whatever the old hub still pushes is refused.
    """
    row = session.scalar(select(PushSubscription).where(PushSubscription.feed_id == feed_id))
    if mode == SUBSCRIBE and (row is None or (row.hub_url, row.topic_url) != (hub, topic)):
        if row is not None:
            session.delete(row)
            session.flush()
        row = PushSubscription(
            id=new_id, feed_id=feed_id, hub_url=hub, topic_url=topic, secret=new_secret, state=PENDING, attempts=0, created_at=now
        )
        session.add(row)
    if mode == UNSUBSCRIBE:
        row.state = UNSUBSCRIBING
    elif row.state == FAILED:
        row.state = PENDING
    row.requested_at = now
    session.flush()
    return _plain(row)


def close_request(session: Session, subscription_id: str, *, error: str | None, next_try_at: datetime) -> None:
    """What the hub answered a request: accepted (its verification is awaited until next_try_at) or an error.

    A verification that arrived while the request was in flight is kept as it is.
    """
    row = session.get(PushSubscription, subscription_id)
    if row is None or (row.verified_at is not None and row.requested_at is not None and row.verified_at >= row.requested_at):
        return
    row.attempts += 1
    row.next_try_at = next_try_at
    if error is not None:
        row.last_error = error
        if row.state == PENDING:
            row.state = FAILED


def confirm_intent(session: Session, subscription_id: str, *, mode: str, topic: str, lease_seconds: int, now: datetime) -> bool:
    """The hub asks whether we want this (un)subscription: yes only for what we asked, for the topic we asked it for.

    A confirmed subscription records its lease; a confirmed unsubscription ends the subscription.
    """
    row = session.get(PushSubscription, subscription_id)
    if row is None or row.topic_url != topic:
        return False
    if mode == UNSUBSCRIBE and row.state == UNSUBSCRIBING:
        session.delete(row)
        return True
    if mode != SUBSCRIBE or row.state not in WANTED:
        return False
    row.state, row.verified_at, row.lease_expires_at = ACTIVE, now, now + timedelta(seconds=lease_seconds)
    row.attempts, row.next_try_at, row.last_error = 0, None, None
    return True


def record_denial(session: Session, subscription_id: str, *, topic: str, reason: str, retry_at: datetime) -> bool:
    """The hub refused the subscription (hub.mode=denied): it is asked again later."""
    row = session.get(PushSubscription, subscription_id)
    if row is None or row.topic_url != topic:
        return False
    row.state, row.last_error, row.next_try_at = FAILED, f"denied by the hub: {reason or 'no reason given'}", retry_at
    return True


def forget(session: Session, subscription_id: str) -> None:
    session.execute(delete(PushSubscription).where(PushSubscription.id == subscription_id))


def add_push(session: Session, subscription_id: str, *, body: bytes, content_type: str, now: datetime) -> bool:
    """Keep a pushed body whose signature was checked, to be read as its feed's bytes; False for an unknown id."""
    row = session.get(PushSubscription, subscription_id)
    if row is None:
        return False
    row.last_push_at = now
    session.add(Push(feed_id=row.feed_id, body=body, content_type=content_type, received_at=now, next_try_at=now, attempts=0))
    return True


def due_pushes(session: Session, *, now: datetime, feed_id: int | None = None, limit: int = 50) -> list[PendingPush]:
    """Pushed bodies to read now, oldest first (of one feed, or of all)."""
    query = select(Push).where(Push.next_try_at <= now).order_by(Push.id).limit(limit)
    if feed_id is not None:
        query = query.where(Push.feed_id == feed_id)
    return [PendingPush(p.id, p.feed_id, p.body, p.content_type, p.attempts) for p in session.scalars(query)]


def push_done(session: Session, push_id: int) -> None:
    session.execute(delete(Push).where(Push.id == push_id))


def push_failed(session: Session, push_id: int, *, error: str, next_try_at: datetime) -> None:
    """A body that could not be read stays, with its error, and is read again later."""
    session.execute(
        update(Push).where(Push.id == push_id).values(attempts=Push.attempts + 1, last_error=error, next_try_at=next_try_at)
    )


def push_backlog(session: Session) -> dict[int, tuple[int, str | None]]:
    """Pushed bodies waiting per feed, with the last error of one that failed."""
    rows = session.execute(select(Push.feed_id, func.count(), func.max(Push.last_error)).group_by(Push.feed_id))
    return {feed_id: (count, error) for feed_id, count, error in rows}


def lease_pushed_feeds(session: Session, *, now: datetime, seconds: float, token: str) -> list[int]:
    """Lease the feeds with pushed bodies to read now (distributed mode: a worker reads them under the lease)."""
    waiting = select(Push.feed_id).where(Push.next_try_at <= now)
    return lease_feeds(session, Feed.id.in_(waiting), now=now, seconds=seconds, token=token)


def put_off_poll(
    session: Session, feed_id: int, subscription_id: str, *, seen_due: datetime | None, due: datetime, deferred: bool
) -> bool:
    """Move the feed's next poll (push healthy: put off; push quiet: brought back), unless a poll moved it meanwhile."""
    moved = session.execute(
        update(Feed)
        .where(Feed.id == feed_id, Feed.next_due_at.is_(None) if seen_due is None else Feed.next_due_at == seen_due)
        .values(next_due_at=due)
        .returning(Feed.id)
    ).first()
    if moved is not None:
        session.execute(
            update(PushSubscription).where(PushSubscription.id == subscription_id).values(deferred_due=due if deferred else None)
        )
    return moved is not None
