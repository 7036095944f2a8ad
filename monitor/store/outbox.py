"""The outbox's queries: what is owed to Slack and the digest, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from monitor.store.models import Delivery, DigestRun, StoryTopic

SLACK = "slack"
DIGEST = "digest"


@dataclass(frozen=True)
class Owed:
    """A pending delivery, detached from its session."""

    id: int
    route: str
    topic: str
    story_id: int
    attempts: int
    held: bool


@dataclass(frozen=True)
class DueDigest:
    id: int
    topic: str
    day: str
    attempts: int


@dataclass(frozen=True)
class DigestState:
    """One day's digest of one topic, as `monitor status` and `monitor digest` read it."""

    id: int
    topic: str
    day: str
    status: str
    stories: int
    due_at: datetime
    sent_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, run: DigestRun) -> DigestState:
        return cls(run.id, run.topic, run.day, run.status, run.stories, run.due_at, run.sent_at, run.last_error)


@dataclass(frozen=True)
class OutboxRow:
    """One line of `monitor status`: a delivery or digest that is waiting or has failed."""

    channel: str
    route: str
    subject: str
    status: str
    attempts: int
    due_at: datetime | None
    last_error: str | None


def story_score(session: Session, story_id: int, topic: str) -> float:
    view = session.get(StoryTopic, (story_id, topic))
    return view.score if view else 0.0


def owe(session: Session, *, channel: str, route: str, topic: str, story_id: int, due_at: datetime, held: bool, now: datetime) -> bool:
    """Record a delivery in the caller's transaction; False when it is already owed or done (a story alerts once)."""
    exists = session.scalar(
        select(Delivery.id).where(
            Delivery.channel == channel, Delivery.route == route, Delivery.topic == topic, Delivery.story_id == story_id
        )
    )
    if exists is not None:
        return False
    session.add(
        Delivery(
            channel=channel,
            route=route,
            topic=topic,
            story_id=story_id,
            status="pending",
            attempts=0,
            due_at=due_at,
            held=held,
            created_at=now,
        )
    )
    session.flush()
    return True


def withdraw(session: Session, *, story_id: int, topic: str) -> int:
    """Forget what is still owed for a story that is no longer relevant (a reader said so, or the retrained model);
    what was sent stays sent. Should the story become relevant again, it is owed again."""
    result = session.execute(
        delete(Delivery)
        .where(Delivery.story_id == story_id, Delivery.topic == topic, Delivery.status == "pending")
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def _unclaimed(table, now: datetime):
    return or_(table.claimed_until.is_(None), table.claimed_until < now)


def _claim(session: Session, table, ids: list[int], *, owner: str, now: datetime, seconds: float) -> list[int]:
    """Claim the pending rows among ids that no other sender holds: one UPDATE … RETURNING.

    PostgreSQL locks the rows with FOR UPDATE SKIP LOCKED, so a second sender claiming at the same moment
    passes over them instead of waiting; SQLite has one writer at a time, so the UPDATE alone decides.
    """
    free = (table.status == "pending", _unclaimed(table, now))
    lockable = select(table.id).where(table.id.in_(ids), *free).with_for_update(skip_locked=True)
    claimed = session.execute(
        update(table)
        .where(table.id.in_(lockable.scalar_subquery()), *free)
        .values(claimed_until=now + timedelta(seconds=seconds), claimed_by=owner)
        .returning(table.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(claimed.scalars())


def claim_deliveries(session: Session, ids: list[int], *, owner: str, now: datetime, seconds: float) -> list[int]:
    """The deliveries among ids this sender may send now; another sender's claim holds until it expires."""
    return _claim(session, Delivery, ids, owner=owner, now=now, seconds=seconds)


def claim_digest(session: Session, run_id: int, *, owner: str, now: datetime, seconds: float) -> bool:
    return bool(_claim(session, DigestRun, [run_id], owner=owner, now=now, seconds=seconds))


def due_deliveries(session: Session, *, channel: str, now: datetime, limit: int = 200) -> list[Owed]:
    rows = session.scalars(
        select(Delivery)
        .where(Delivery.channel == channel, Delivery.status == "pending", Delivery.due_at <= now, _unclaimed(Delivery, now))
        .order_by(Delivery.due_at, Delivery.id)
        .limit(limit)
    )
    return [Owed(r.id, r.route, r.topic, r.story_id, r.attempts, r.held) for r in rows]


def mark_sent(session: Session, ids: list[int], *, now: datetime, digest_day: str | None = None, table=Delivery) -> None:
    """Deliveries (or, with table, another outbox's rows: spikes) sent: settled, their claims released."""
    session.execute(
        update(table)
        .where(table.id.in_(ids))
        .values(status="sent", sent_at=now, last_error=None, digest_day=digest_day, claimed_until=None, claimed_by=None)
    )


def mark_failed(session: Session, ids: list[int], *, error: str, retry_at: datetime | None, table=Delivery) -> None:
    """A failed attempt: retried at retry_at, or given up (status failed) when retry_at is None."""
    values = {"attempts": table.attempts + 1, "last_error": error, "claimed_until": None, "claimed_by": None}
    values |= {"due_at": retry_at} if retry_at else {"status": "failed"}
    session.execute(update(table).where(table.id.in_(ids)).values(**values))


def digest_deliveries(session: Session, *, topic: str, day: str, until: datetime) -> list[Owed]:
    """The stories a day's digest carries: those it already carried, else all owed ones relevant before the day ended."""
    carried = select(Delivery).where(Delivery.channel == DIGEST, Delivery.topic == topic, Delivery.digest_day == day)
    owed = (
        select(Delivery)
        .join(StoryTopic, (StoryTopic.story_id == Delivery.story_id) & (StoryTopic.topic == Delivery.topic))
        .where(
            Delivery.channel == DIGEST,
            Delivery.topic == topic,
            Delivery.status == "pending",
            StoryTopic.relevant_since < until,
        )
    )
    rows = {r.id: r for r in session.scalars(carried)}
    if not rows:
        rows = {r.id: r for r in session.scalars(owed)}
    return [Owed(r.id, r.route, r.topic, r.story_id, r.attempts, r.held) for r in sorted(rows.values(), key=lambda r: r.id)]


def plan_digest(session: Session, *, topic: str, day: str, due_at: datetime, now: datetime) -> DigestState:
    """The day's digest, created pending when it does not exist yet (a second call is a no-op)."""
    run = session.scalar(select(DigestRun).where(DigestRun.topic == topic, DigestRun.day == day))
    if run is None:
        run = DigestRun(topic=topic, day=day, status="pending", attempts=0, due_at=due_at, stories=0, created_at=now)
        session.add(run)
        session.flush()
    return DigestState.of(run)


def reopen_digest(session: Session, run_id: int, *, now: datetime) -> None:
    """Make a digest already sent (or skipped, or failed) due again now: `monitor digest --force`."""
    session.execute(update(DigestRun).where(DigestRun.id == run_id).values(status="pending", due_at=now))


def due_digests(session: Session, *, now: datetime) -> list[DueDigest]:
    rows = session.scalars(
        select(DigestRun)
        .where(DigestRun.status == "pending", DigestRun.due_at <= now, _unclaimed(DigestRun, now))
        .order_by(DigestRun.day, DigestRun.id)
    )
    return [DueDigest(r.id, r.topic, r.day, r.attempts) for r in rows]


def finish_digest(
    session: Session, run_id: int, *, status: str, stories: int, message_id: str | None, delivery_ids: list[int], now: datetime
) -> None:
    """Mark a digest sent (or skipped: nothing new) with the stories it carried, in one transaction."""
    run = session.get_one(DigestRun, run_id)
    run.status, run.stories, run.message_id, run.sent_at, run.last_error = status, stories, message_id, now, None
    run.claimed_until = run.claimed_by = None
    if delivery_ids:
        mark_sent(session, delivery_ids, now=now, digest_day=run.day)


def fail_digest(session: Session, run_id: int, *, error: str, retry_at: datetime | None) -> None:
    run = session.get_one(DigestRun, run_id)
    run.attempts += 1
    run.last_error = error
    run.claimed_until = run.claimed_by = None
    if retry_at:
        run.due_at = retry_at
    else:
        run.status = "failed"


def outbox_counts(session: Session) -> dict[tuple[str, str], int]:
    """Deliveries by (channel, status), for the status overview."""
    query = select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status)
    return {(channel, status): count for channel, status, count in session.execute(query)}


def outbox_problems(session: Session, *, limit: int = 20) -> list[OutboxRow]:
    """Deliveries and digests that failed or are waiting after an error, newest trouble first."""
    rows = [
        OutboxRow(d.channel, d.route, f"story {d.story_id}", d.status, d.attempts, d.due_at, d.last_error)
        for d in session.scalars(
            select(Delivery)
            .where((Delivery.status == "failed") | ((Delivery.status == "pending") & Delivery.last_error.is_not(None)))
            .order_by(Delivery.due_at.desc())
            .limit(limit)
        )
    ]
    rows += [
        OutboxRow(DIGEST, r.topic, f"digest {r.day}", r.status, r.attempts, r.due_at, r.last_error)
        for r in session.scalars(
            select(DigestRun)
            .where((DigestRun.status == "failed") | ((DigestRun.status == "pending") & DigestRun.last_error.is_not(None)))
            .order_by(DigestRun.day.desc())
            .limit(limit)
        )
    ]
    return rows


def recent_digests(session: Session, *, limit: int = 5) -> list[DigestState]:
    query = select(DigestRun).order_by(DigestRun.day.desc(), DigestRun.id.desc()).limit(limit)
    return [DigestState.of(run) for run in session.scalars(query)]
