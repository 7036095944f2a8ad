"""Coverage spikes in the store: each recorded once per topic, tag value and day, and owed to Slack and the digest
through their own outbox, claimed and marked as story deliveries are (store.outbox)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from monitor.store.models import Spike, SpikeDelivery
from monitor.store.outbox import (
    DIGEST,
    SLACK,
    _claim,
    _unclaimed,
    mark_failed,
    mark_sent,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpikeView:
    id: int
    topic: str
    dimension: str  # topic, vendor or country
    value: str
    day: str  # YYYY-MM-DD in the digest's time zone
    stories: int
    baseline: float  # new stories a day before it
    detected_at: datetime


@dataclass(frozen=True)
class OwedSpike:
    """A pending spike delivery, with its spike."""

    id: int
    route: str
    attempts: int
    spike: SpikeView


def _view(row: Spike) -> SpikeView:
    return SpikeView(row.id, row.topic, row.dimension, row.value, row.day, row.stories, row.baseline, row.detected_at)


def record(
    session: Session, *, topic: str, dimension: str, value: str, day: str, stories: int, baseline: float, p_value: float, now: datetime
) -> SpikeView | None:
    """A spike found: recorded and returned when it is new; when that day's spike is already known (an earlier look, or
    another process at the same moment), its count is brought up to date and None says there is nothing to announce."""
    dialect = session.get_bind().dialect.name
    insert = (sqlite_insert if dialect == "sqlite" else postgres_insert)(Spike)
    fields = {"topic": topic, "dimension": dimension, "value": value, "day": day, "stories": stories, "baseline": baseline, "p_value": p_value, "detected_at": now}
    statement = insert.values(**fields).on_conflict_do_nothing(index_elements=["topic", "dimension", "value", "day"]).returning(Spike.id)
    new_id = session.scalar(statement)
    if new_id is None:
        session.execute(
            update(Spike)
            .where(Spike.topic == topic, Spike.dimension == dimension, Spike.value == value, Spike.day == day, Spike.stories < stories)
            .values(stories=stories)
        )
        return None
    return SpikeView(new_id, topic, dimension, value, day, stories, baseline, now)


def owe(session: Session, spike: SpikeView, *, channel: str, route: str, due_at: datetime, now: datetime) -> None:
    """Owe a new spike to a Slack route or the digest, in the transaction that recorded it."""
    session.add(
        SpikeDelivery(
            spike_id=spike.id, channel=channel, route=route, topic=spike.topic, status="pending", attempts=0, due_at=due_at, created_at=now
        )
    )


def _owed(rows) -> list[OwedSpike]:
    return [OwedSpike(delivery.id, delivery.route, delivery.attempts, _view(spike)) for delivery, spike in rows]


def due_spikes(session: Session, *, now: datetime, limit: int = 50) -> list[OwedSpike]:
    """Slack messages of spikes that are due and that no sender holds, oldest first."""
    rows = session.execute(
        select(SpikeDelivery, Spike)
        .join(Spike, Spike.id == SpikeDelivery.spike_id)
        .where(SpikeDelivery.channel == SLACK, SpikeDelivery.status == "pending", SpikeDelivery.due_at <= now, _unclaimed(SpikeDelivery, now))
        .order_by(SpikeDelivery.due_at, SpikeDelivery.id)
        .limit(limit)
    )
    return _owed(rows)


def claim(session: Session, ids: list[int], *, owner: str, now: datetime, seconds: float) -> list[int]:
    return _claim(session, SpikeDelivery, ids, owner=owner, now=now, seconds=seconds)


def sent(session: Session, ids: list[int], *, now: datetime, digest_day: str | None = None) -> None:
    mark_sent(session, ids, now=now, digest_day=digest_day, table=SpikeDelivery)


def failed(session: Session, ids: list[int], *, error: str, retry_at: datetime | None) -> None:
    mark_failed(session, ids, error=error, retry_at=retry_at, table=SpikeDelivery)


def digest_spikes(session: Session, *, topic: str, day: str, until: datetime) -> list[OwedSpike]:
    """The spikes a day's digest opens with: those it already carried, else every one owed that was found before the day ended."""
    base = select(SpikeDelivery, Spike).join(Spike, Spike.id == SpikeDelivery.spike_id).where(SpikeDelivery.channel == DIGEST, SpikeDelivery.topic == topic)
    carried = _owed(session.execute(base.where(SpikeDelivery.digest_day == day).order_by(SpikeDelivery.id)))
    if carried:
        return carried
    return _owed(session.execute(base.where(SpikeDelivery.status == "pending", Spike.detected_at < until).order_by(SpikeDelivery.id)))


def spikes_of_day(session: Session, *, topic: str, day: str) -> list[SpikeView]:
    rows = session.scalars(select(Spike).where(Spike.topic == topic, Spike.day == day).order_by(Spike.id))
    return [_view(row) for row in rows]
