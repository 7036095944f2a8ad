"""APScheduler jobs: thin wrappers that poll a feed when its row says it is due, and a tally of what the polls did."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, EVENT_SCHEDULER_START
from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.delivery import Sender, digest_day
from monitor.deps import Deps
from monitor.domain import FeedOutcome
from monitor.spike_watch import detect_spikes
from monitor.pipeline import poll_feed
from monitor.push import Upkeep, drain_pushes, upkeep

from monitor.store import polling
log = logging.getLogger(__name__)

MAX_JITTER = 300.0
DISPATCH_INTERVAL = 5.0  # seconds between two looks for due feeds in distributed mode
SUMMARY_EVERY = 3600.0
PUSH_DRAIN_INTERVAL = 2.0  # seconds between two looks for pushed bodies: a push is read within seconds
PUSH_UPKEEP_INTERVAL = 60.0  # seconds between two rounds of subscriptions, renewals and poll pacing


def most_failed(outcomes: list[FeedOutcome]) -> str | None:
    """The one line that matters when most feeds fail: the fault is then rarely the feeds'."""
    failed = [o for o in outcomes if not o.ok]
    if not failed or len(failed) * 2 <= len(outcomes):
        return None
    return f"{len(failed)} of {len(outcomes)} feeds failed - check the network"


class PollTally:
    """What the service's polls did: a summary line once every feed has been polled (or hourly), and totals for the closing line."""

    def __init__(self, feeds: int):
        self.feeds = feeds
        self.polls = 0
        self.stored = 0
        self._round: dict[str, FeedOutcome] = {}
        self._lock = threading.Lock()

    def record(self, outcome: FeedOutcome) -> None:
        with self._lock:
            self.polls += 1
            self.stored += outcome.new_articles
            self._round[outcome.feed] = outcome
            complete = len(self._round) >= self.feeds
        if complete:
            self.summarise()

    def summarise(self) -> None:
        """Log the feeds polled since the last summary, each by its latest poll; nothing when none was."""
        with self._lock:
            outcomes, self._round = list(self._round.values()), {}
        if not outcomes:
            return
        alarm = most_failed(outcomes)
        if alarm:
            first = next(o for o in outcomes if not o.ok)
            log.warning("%s (%s: %s)", alarm, first.feed, first.error)
            return
        failed = [o.feed for o in outcomes if not o.ok]
        log.info(
            "%d feeds polled: %d ok, %d failed%s; %d new articles, %d relevant",
            len(outcomes),
            len(outcomes) - len(failed),
            len(failed),
            f" ({', '.join(failed)}; see `monitor status`)" if failed else "",
            sum(o.new_articles for o in outcomes),
            sum(o.relevant for o in outcomes),
        )


def poll_if_due(feed_id: int, deps: Deps, tally: PollTally | None = None) -> FeedOutcome | None:
    """Poll a feed unless its row says to wait (backoff after failures, or a server's Retry-After)."""
    now = deps.clock()
    with deps.sessions() as session:
        due = polling.feed_next_due(session, feed_id)
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
    if tally is not None:
        tally.record(outcome)
    return outcome


def poll_and_follow(scheduler: BackgroundScheduler, feed_id: int, deps: Deps, tally: PollTally | None = None) -> None:
    """A feed's job: poll it when due, then run next when its row says (the interval chosen by the poll, or a backoff)."""
    poll_if_due(feed_id, deps, tally)
    follow_row(scheduler, feed_id, deps)


def follow_row(scheduler: BackgroundScheduler, feed_id: int, deps: Deps) -> None:
    """Move the feed's job to the due time in its row, with a little jitter so feeds polled together drift apart."""
    with deps.sessions() as session:
        state = polling.feed_state(session, feed_id)
        due = polling.feed_next_due(session, feed_id)
    if due is None:
        return
    jitter = random.uniform(0, min(state.current_interval * 0.1, MAX_JITTER))
    try:
        scheduler.modify_job(f"feed-{feed_id}", next_run_time=max(due, deps.clock()) + timedelta(seconds=jitter))
    except JobLookupError:
        log.debug("feed %s: its job is gone (the scheduler is stopping)", feed_id)


def deliver(sender: Sender) -> None:
    """Send what the outbox holds that is due; the job must survive anything a channel does."""
    try:
        sender.deliver_due()
    except Exception:
        log.exception("delivery from the outbox crashed; it is tried again at the next interval")


class DeliveryLoop:
    """The sender's one thread: it looks at the outbox each time it is woken, by the interval's tick or, seconds after
    a commit that owed an alert, by the pipeline (or, in distributed mode, by a worker's message).

    One thread sends, so each webhook's pace and the grouping of bursts hold; a wake during a look brings one more look.
    """

    def __init__(self, sender: Sender, wake: threading.Event | None = None) -> None:
        self.sender = sender
        self.woken = wake or threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="deliver", daemon=True)

    def wake(self) -> None:
        self.woken.set()

    def start(self, _event=None) -> None:
        self._thread.start()

    def stop(self, _event=None) -> None:
        """Finish the look in hand, then end."""
        self._stopping = True
        self.woken.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.woken.wait()
            self.woken.clear()  # before the look: a commit during it wakes the loop once more
            if self._stopping:
                return
            deliver(self.sender)


def look_for_spikes(sender: Sender, loop: DeliveryLoop) -> None:
    """The coverage spike job: look for today's spikes (each is raised once); the sender's loop sends what they owe."""
    try:
        detect_spikes(sender)
    except Exception:
        log.exception("looking for coverage spikes crashed; it is tried again at the next interval")
    loop.wake()


def read_pushes(deps: Deps) -> None:
    """Read what hubs pushed; the job must survive anything one body does."""
    try:
        drain_pushes(deps)
    except Exception:
        log.exception("reading pushed bodies crashed; tried again in %.0fs", PUSH_DRAIN_INTERVAL)


def keep_push_up(push: Upkeep) -> None:
    """Subscribe, renew and pace polls; the job must survive a hub or a store that is down for a while."""
    try:
        upkeep(push)
    except Exception:
        log.exception("the push upkeep crashed; tried again in %.0fs", PUSH_UPKEEP_INTERVAL)


def plan_digest(sender: Sender, loop: DeliveryLoop) -> None:
    """The daily digest job: plan today's digests (once per day, whatever restarts happen); the sender's loop sends them."""
    try:
        sender.plan_digests(digest_day(sender.clock(), sender.outputs.digest))
    except Exception:
        log.exception("planning the digest crashed")
    loop.wake()


def build_scheduler(
    deps: Deps,
    feeds: list[polling.FeedStatus],
    *,
    workers: int,
    sender: Sender | None = None,
    delivery_interval: float = 15.0,
    tally: PollTally | None = None,
    push: Upkeep | None = None,
    wake: threading.Event | None = None,
) -> BackgroundScheduler:
    """One job per feed, run when its row says it is due (each poll sets the next); a feed never runs twice at once;
    missed runs coalesce. The trigger's own interval (the feed's current one) is only the fallback.

    With a sender: its delivery loop, woken every few seconds and whenever `wake` is set (by the pipeline, after a
    commit that owed an alert), a job that looks for coverage spikes, and the digest at its time of day.
    With a tally: every poll is counted, and an hourly job logs the summary of the feeds polled since the last one.
    With push (MONITOR_PUBLIC_URL set): the WebSub upkeep every minute, and pushed bodies read every few seconds.
    """
    scheduler = BackgroundScheduler(
        executors={"default": JobExecutor(workers)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    now = deps.clock()
    for feed in feeds:
        interval = feed.poll_interval or feed.interval_seconds
        jitter = min(interval * 0.1, MAX_JITTER)
        first = max(now, feed.next_due_at or now) + timedelta(seconds=random.uniform(0, min(jitter, 30.0)))
        scheduler.add_job(
            poll_and_follow,
            IntervalTrigger(seconds=interval, jitter=jitter or None, timezone="UTC"),
            args=(scheduler, feed.id, deps, tally),
            id=f"feed-{feed.id}",
            name=f"poll {feed.name}",
            next_run_time=first,
        )
    if tally is not None:
        scheduler.add_job(tally.summarise, IntervalTrigger(seconds=SUMMARY_EVERY, timezone="UTC"), id="summary", name="poll summary")
    if sender is not None:
        _add_sender_jobs(scheduler, DeliveryLoop(sender, wake), delivery_interval=delivery_interval, now=now)
    if push is not None:
        _add_push_upkeep(scheduler, push, now=now)
        scheduler.add_job(
            read_pushes, IntervalTrigger(seconds=PUSH_DRAIN_INTERVAL, timezone="UTC"), args=(deps,), id="pushes", name="read pushed bodies"
        )
    return scheduler


def _add_push_upkeep(scheduler: BackgroundScheduler, push: Upkeep, *, now: datetime) -> None:
    scheduler.add_job(
        keep_push_up, IntervalTrigger(seconds=PUSH_UPKEEP_INTERVAL, timezone="UTC"), args=(push,), id="push", name="WebSub upkeep", next_run_time=now
    )


def _add_sender_jobs(scheduler: BackgroundScheduler, loop: DeliveryLoop, *, delivery_interval: float, now: datetime) -> None:
    """The delivery loop runs while the scheduler does; the interval's tick wakes it (the first at once: what a restart left)."""
    scheduler.add_listener(loop.start, EVENT_SCHEDULER_START)
    scheduler.add_listener(loop.stop, EVENT_SCHEDULER_SHUTDOWN)
    scheduler.add_job(
        loop.wake, IntervalTrigger(seconds=delivery_interval, timezone="UTC"), id="deliver", name="wake the sender", next_run_time=now
    )
    sender = loop.sender
    if sender.spike_rule is not None:
        scheduler.add_job(
            look_for_spikes, IntervalTrigger(seconds=sender.spike_rule.interval, timezone="UTC"), args=(sender, loop), id="spikes", name="coverage spikes"
        )
    if sender.mail is not None:
        spec = sender.outputs.digest
        scheduler.add_job(
            plan_digest,
            CronTrigger(hour=spec.time.hour, minute=spec.time.minute, timezone=spec.timezone),
            args=(sender, loop),
            id="digest",
            name=f"digest at {spec.time:%H:%M} {spec.timezone}",
        )


def dispatch(enqueue: Callable[[], int]) -> None:
    """Enqueue the polls that are due; the job must survive a broker or database that is down for a while."""
    try:
        enqueue()
    except Exception:
        log.exception("enqueueing the due polls failed; tried again in %.0fs", DISPATCH_INTERVAL)


def build_dispatcher(
    enqueue: Callable[[], int],
    *,
    now: datetime,
    sender: Sender | None = None,
    delivery_interval: float = 15.0,
    push: Upkeep | None = None,
    wake: threading.Event | None = None,
) -> BackgroundScheduler:
    """Distributed mode's scheduler: every few seconds the due feeds (and those with pushed bodies) are leased and
    their work enqueued for the workers; it loads no model and polls nothing itself. With a sender: the delivery loop and the digest, as in one
    process (the workers' messages set `wake`). With push: the WebSub upkeep (it needs HTTP, not the model)."""
    scheduler = BackgroundScheduler(
        executors={"default": JobExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    scheduler.add_job(
        dispatch, IntervalTrigger(seconds=DISPATCH_INTERVAL, timezone="UTC"), args=(enqueue,), id="dispatch", name="enqueue due polls", next_run_time=now
    )
    if sender is not None:
        _add_sender_jobs(scheduler, DeliveryLoop(sender, wake), delivery_interval=delivery_interval, now=now)
    if push is not None:
        _add_push_upkeep(scheduler, push, now=now)
    return scheduler


def serve_forever(scheduler: BackgroundScheduler, stop: threading.Event, tally: PollTally | None = None) -> None:
    """Run until stop is set (by SIGINT/SIGTERM), then let the polls in hand finish."""
    scheduler.start()
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))
    stop.wait()
    log.info("stopping: finishing the polls in hand")
    scheduler.shutdown(wait=True)
    if tally is not None:
        log.info("stopped after %d polls; %d articles stored", tally.polls, tally.stored)
