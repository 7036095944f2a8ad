"""Distributed mode on Celery: the scheduler leases due feeds and enqueues their polls; workers run them.

The task is a thin wrapper around pipeline.poll_feed that takes a feed id and the lease token its
enqueuer was given. It is idempotent: a redelivered task whose poll already happened finds its token
stale and does nothing, and a poll that is run again stores nothing twice (URLs are unique, an unchanged
feed is not parsed again). Late acknowledgement brings back the task of a worker killed mid-poll.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from monitor.config import Settings
from monitor.deps import Deps
from monitor.domain import POLL_QUEUE
from monitor.metrics import broker_queue_depth
from monitor.pipeline import poll_feed, record_crash
from monitor.push import drain_pushes
from monitor.store import leases, websub

log = logging.getLogger(__name__)

POLL = "monitor.poll"
PUSHES = "monitor.pushes"  # read a feed's pushed bodies
WAKE_QUEUE = "monitor.wake-sender"  # a worker's note to the scheduler's sender: an alert was owed and has committed
WAKE_TTL = 60.0  # seconds a note waits for a sender (RabbitMQ); the sender's interval catches up with older ones anyway
RECONNECT = 5.0  # seconds before listening again after the broker went away


def make_celery(settings: Settings) -> Celery:
    """The Celery app over MONITOR_BROKER_URL (redis://… or amqp://…), set for polls that must not be lost."""
    app = Celery("monitor", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=POLL_QUEUE,
        task_acks_late=True,  # acknowledged after the poll, so a killed worker's poll comes back
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one poll at a time, never a backlog others could run
        task_ignore_result=True,
        # Redis redelivers an unacknowledged message after this long (an hour by default): one poll's lease.
        broker_transport_options={"visibility_timeout": settings.poll_lease},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def worker_name() -> str:
    return f"monitor-{os.getpid()}@{socket.gethostname()}"


def run_leased(feed_id: int, token: str, deps: Deps, work: Callable[[], object]) -> None:
    """Do a feed's work if the lease token is still its own: the lease becomes this run's, then is released."""
    run = f"{token}/{worker_name()}"[:100]
    with deps.sessions.begin() as session:
        taken = leases.take_lease(session, feed_id, token=token, run=run, now=deps.clock(), seconds=deps.settings.poll_lease)
    if not taken:
        log.info("feed %s: lease %s is no longer current (done already, or handed on): skipped", feed_id, token)
        return
    try:
        work()
    finally:
        with deps.sessions.begin() as session:
            leases.release_lease(session, feed_id, run=run)


def run_leased_poll(feed_id: int, token: str, deps: Deps) -> None:
    """Poll a feed under its lease."""

    def poll() -> None:
        try:
            outcome = poll_feed(feed_id, deps)
        except Exception as exc:  # recorded in the feed's row with its backoff, as in one process; the task is done
            outcome = record_crash(feed_id, deps, exc)
        log.info("feed %s: %s, %d new, %d relevant", outcome.feed, "ok" if outcome.ok else outcome.error, outcome.new_articles, outcome.relevant)

    run_leased(feed_id, token, deps, poll)


def register_poll(app: Celery, deps: Deps) -> None:
    """The worker's tasks, bound to the dependencies its process built once (model, indexes, HTTP client)."""

    @app.task(name=POLL)
    def poll(feed_id: int, token: str) -> None:
        run_leased_poll(feed_id, token, deps)

    @app.task(name=PUSHES)
    def pushes(feed_id: int, token: str) -> None:
        run_leased(feed_id, token, deps, lambda: drain_pushes(deps, feed_id=feed_id))


def _lease_and_enqueue(
    app: Celery, sessions: sessionmaker[Session], task: str, lease: Callable[[Session, str], list[int]], *, what: str
) -> int:
    """Lease feeds with a fresh token and enqueue the task for each, with the token: how many were enqueued."""
    token = uuid.uuid4().hex
    with sessions.begin() as session:
        feed_ids = lease(session, token)
    for feed_id in feed_ids:
        app.send_task(task, args=(feed_id, token), queue=POLL_QUEUE)
    if feed_ids:
        log.info("enqueued %d %s", len(feed_ids), what)
    return len(feed_ids)


def enqueue_due(app: Celery, sessions: sessionmaker[Session], *, now: datetime, lease_seconds: float) -> int:
    """Lease every due feed that no poll holds (an expired lease counts as free) and enqueue its poll."""
    lease = lambda session, token: leases.lease_due_feeds(session, now=now, seconds=lease_seconds, token=token)
    return _lease_and_enqueue(app, sessions, POLL, lease, what="polls")


def enqueue_pushed(app: Celery, sessions: sessionmaker[Session], *, now: datetime, lease_seconds: float) -> int:
    """Lease every feed with pushed bodies to read (and no poll or read in hand) and enqueue their reading."""
    lease = lambda session, token: websub.lease_pushed_feeds(session, now=now, seconds=lease_seconds, token=token)
    return _lease_and_enqueue(app, sessions, PUSHES, lease, what="readings of pushed bodies")


@dataclass(frozen=True)
class QueueState:
    """What `monitor status` shows of distributed mode."""

    waiting: int | None  # polls in the queue; None when the broker does not answer
    workers: dict[str, int]  # each worker that answered a ping, with its polls in hand


def queue_state(app: Celery, *, timeout: float = 2.0) -> QueueState:
    try:
        waiting = broker_queue_depth(app.conf.broker_url, POLL_QUEUE, timeout=timeout)
    except OperationalError as exc:
        log.warning("the broker does not answer: %s", exc)
        return QueueState(None, {})
    inspect = app.control.inspect(timeout=timeout)
    alive = inspect.ping() or {}
    active = inspect.active() or {}
    return QueueState(waiting, {name: len(active.get(name, [])) for name in sorted(alive)})


def _wake_queue() -> Queue:
    exchange = Exchange(WAKE_QUEUE, type="direct", durable=False)
    return Queue(WAKE_QUEUE, exchange, routing_key=WAKE_QUEUE, durable=False, message_ttl=WAKE_TTL)


def sender_waker(app: Celery) -> Callable[[], None]:
    """What a worker calls after a commit that owed an alert: a message that wakes the scheduler's sender at once.

    The outbox stays the record: a message lost (broker down) only leaves the alert for the sender's next interval.
    """
    queue = _wake_queue()

    def wake() -> None:
        try:
            with app.producer_or_acquire() as producer:
                producer.publish(
                    {"wake": True}, exchange=queue.exchange, routing_key=WAKE_QUEUE, declare=[queue], serializer="json",
                    retry=True, retry_policy={"max_retries": 1},
                )  # fmt: skip
        except Exception as exc:
            log.warning("could not wake the sender through the broker (%s); the alert goes at its next interval", exc)

    return wake


def listen_for_wakes(app: Celery, wake: Callable[[], None], stop: threading.Event, *, timeout: float = 1.0) -> None:
    """The scheduler's thread until stop: each worker's message wakes the sender; a broker that goes away is retried."""
    queue = _wake_queue()

    def woken(_body, message) -> None:
        message.ack()
        wake()

    while not stop.is_set():
        try:
            with app.connection_for_read() as connection, connection.Consumer(queue, callbacks=[woken], accept=["json"]):
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=timeout)
                    except TimeoutError:
                        continue
        except Exception as exc:  # alerts still go at the sender's interval meanwhile
            log.warning("listening for the workers' wake-ups failed (%s); listening again in %.0fs", exc, RECONNECT)
            stop.wait(RECONNECT)
