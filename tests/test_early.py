"""Nothing waits on the way from a feed to Slack: each article is stored as it is read, and its alert is sent as soon
as its transaction commits, not at the sender's next interval."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from sqlalchemy import select

from monitor.config import Settings
from monitor.demo.server import Reply, Request
from monitor.demo.site import load_demo_articles, site_routes
from monitor.domain import FeedOutcome
from monitor.specs import QuietHours, SlackRoute
from monitor.passes import run_pass
from monitor.pipeline import poll_feed
from monitor.scheduler import build_scheduler
from monitor.store import outbox
from monitor.store.models import Article, Delivery, Feed
from monitor.tasks import listen_for_wakes, make_celery, sender_waker

from .conftest import NOW, Clock
from .test_distributed import redis_db  # noqa: F401  a Redis database of its own
from .test_outbox import Hook, make_sender, relevant_story
from .test_pipeline import pipeline, sync

WAIT = 300.0  # seconds any one step may take on a loaded machine; never reached when all goes well
ON_TOPIC = [  # three stories (three countries); the feed lists them newest first, so Canada's comes last
    "uk-mps-call-for-ban-on-chinese-surveillance-cameras",
    "australian-defence-force-grounds-dji-drones",
    "canada-orders-removal-of-hikvision-dahua-cameras",
]


class WatchedHook(Hook):
    """A local Slack webhook that a test can wait on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = threading.Condition()

    def __call__(self, request: Request) -> Reply:
        reply = super().__call__(request)
        with self.arrived:
            self.arrived.notify_all()
        return reply

    def wait_for(self, *urls: str) -> bool:
        """Until every URL is linked by a post (an alert, or a burst's grouped message)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: all(f"<{url}|" in self.posted() for url in urls), timeout=WAIT)

    def posted(self) -> str:
        return " ".join(json.dumps(payload["blocks"]) for payload in self.delivered)


@contextmanager
def wire_site(site, gate: threading.Event):
    """One feed of the three on-topic articles; the page of the last one waits for the gate."""
    articles = [replace(a, feeds=["wire"]) for a in load_demo_articles(NOW) if a.slug in ON_TOPIC]
    routes = site_routes(articles, site.base_url)
    held = routes[f"/news/{ON_TOPIC[-1]}.html"]

    def last_page(_request: Request) -> Reply:
        gate.wait(timeout=WAIT)
        return held

    routes[f"/news/{ON_TOPIC[-1]}.html"] = last_page
    site.routes.update(routes)
    try:
        yield {a.slug: a.title for a in articles}
    finally:
        gate.set()


def stored_titles(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Article.title)))


def in_thread(target, *args) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(target(*args)), daemon=True)
    thread.start()
    return thread, result


class FailsOn:
    """An embedder that crashes on one article's text, as a bug or an exhausted machine would."""

    def __init__(self, embedder, marker: str) -> None:
        self.embedder, self.marker = embedder, marker

    def embed(self, texts: list[str]):
        if any(self.marker in text for text in texts):
            raise RuntimeError("the embedder crashed")
        return self.embedder.embed(texts)


@pytest.mark.parametrize("entry", ["poll_feed", "run_pass"])
def test_an_article_is_stored_while_its_feeds_last_page_is_still_being_read(entry, sessions, settings, embedder, config, site):
    settings = settings.model_copy(update={"read_timeout": WAIT})  # the held page must not time out into a summary
    gate, committed = threading.Event(), threading.Event()
    outcomes: list[FeedOutcome] = []
    with wire_site(site, gate) as titles, pipeline(sessions, settings, embedder, config, Clock()) as deps:
        feed_id = sync(sessions, {"wire": site.url("/feeds/wire.xml")})["wire"]
        deps = replace(deps, on_relevant_story=lambda *_: None, wake_sender=committed.set, on_outcome=outcomes.append)
        thread, _ = in_thread(poll_feed if entry == "poll_feed" else run_pass, feed_id if entry == "poll_feed" else [feed_id], deps)
        assert committed.wait(WAIT), "nothing was stored while the feed's last page was held"
        stored = stored_titles(sessions)
        assert stored and titles[ON_TOPIC[-1]] not in stored and not gate.is_set()
        with sessions() as session:
            assert session.get(Feed, feed_id).content_hash is None  # the feed's state waits for its last article
        gate.set()
        thread.join(WAIT)
    assert sorted(stored_titles(sessions)) == sorted(titles.values())
    assert [(o.ok, o.new_articles, o.relevant) for o in outcomes] == [(True, 3, 3)]  # one poll, counted once in full
    with sessions() as session:
        assert session.get(Feed, feed_id).content_hash is not None


def test_a_crash_mid_feed_keeps_what_was_stored_and_the_next_poll_stores_the_rest_once(sessions, settings, embedder, config, site):
    settings = settings.model_copy(update={"read_timeout": WAIT})
    gate, committed = threading.Event(), threading.Event()
    outcomes: list[FeedOutcome] = []
    with wire_site(site, gate) as titles, pipeline(sessions, settings, embedder, config, Clock()) as deps:
        feed_id = sync(sessions, {"wire": site.url("/feeds/wire.xml")})["wire"]
        last = titles[ON_TOPIC[-1]]
        crashing = replace(deps, embedder=FailsOn(embedder, last), wake_sender=committed.set, on_relevant_story=lambda *_: None, on_outcome=outcomes.append)
        thread, result = in_thread(poll_feed, feed_id, crashing)
        assert committed.wait(WAIT)
        gate.set()  # the last page now arrives, and embedding it crashes
        thread.join(WAIT)
        [crashed] = result
        assert not crashed.ok and "the embedder crashed" in crashed.error
        assert (crashed.new_articles, crashed.relevant) == (2, 2)  # what the poll stored before the crash is counted
        assert sorted(stored_titles(sessions)) == sorted(t for t in titles.values() if t != last)
        with sessions() as session:
            feed = session.get(Feed, feed_id)
            assert feed.error_count == 1 and feed.content_hash is None and feed.etag is None  # nothing skipped next time

        again = poll_feed(feed_id, replace(deps, on_outcome=outcomes.append))
    assert again.ok and again.new_articles == 1
    assert sorted(stored_titles(sessions)) == sorted(titles.values())  # each stored once
    assert [o.new_articles for o in outcomes] == [2, 1]
    with sessions() as session:
        assert session.get(Feed, feed_id).content_hash is not None


def test_an_alert_leaves_seconds_after_its_commit_while_the_delivery_interval_is_an_hour(sessions, settings, embedder, config, site):
    clock = Clock()  # 12:00 UTC: the night route's quiet hours hold its alerts, the desk's go at once
    desk, night = WatchedHook(site, "/desk"), WatchedHook(site, "/night")
    quiet = QuietHours(start=time(11, 0), end=time(13, 0), timezone="UTC")
    sender = make_sender(sessions, clock, [(SlackRoute(webhook="DESK"), desk.url), (SlackRoute(webhook="NIGHT", quiet_hours=quiet), night.url)])
    earlier = relevant_story(sessions, sender, 1)  # left in the outbox before a restart: the first look sends it
    wake = threading.Event()
    started = datetime.now(timezone.utc)  # the scheduler's timer runs on the real clock: its first tick now, the next in an hour
    scheduler = build_scheduler(SimpleNamespace(clock=lambda: started), [], workers=1, sender=sender, delivery_interval=3600, wake=wake)
    ticks: list[str] = []
    scheduler.add_listener(lambda event: ticks.append(event.job_id), EVENT_JOB_EXECUTED)
    gate = threading.Event()
    gate.set()
    with wire_site(site, gate) as titles, pipeline(sessions, settings, embedder, config, clock) as deps:
        feed_id = sync(sessions, {"wire": site.url("/feeds/wire.xml")})["wire"]
        scheduler.start()
        try:
            assert desk.wait_for("https://news1.example/story-1")  # the first look is over: the next is an hour away
            outcome = poll_feed(feed_id, replace(deps, on_relevant_story=sender.owe_story, wake_sender=wake.set))
            assert outcome.relevant == 3
            assert desk.wait_for(*(site.url(f"/news/{slug}.html") for slug in ON_TOPIC)), "the alerts waited for the interval"
            assert ticks == ["deliver"]  # only the first tick, at start: the alerts went when their commit woke the sender
            assert scheduler.get_job("deliver").next_run_time >= started + timedelta(hours=1)
        finally:
            scheduler.shutdown()
    assert len(titles) == 3 and night.delivered == []  # the night route was woken too, yet holds them in its quiet hours
    with sessions() as session:
        held = session.scalars(select(Delivery).where(Delivery.route == "NIGHT", Delivery.story_id != earlier)).all()
        desk_rows = session.scalars(select(Delivery).where(Delivery.route == "DESK", Delivery.channel == outbox.SLACK)).all()
    assert len(held) == 3 and all(d.status == "pending" and d.held and d.due_at == NOW.replace(hour=13) for d in held)
    assert len(desk_rows) == 4 and {d.status for d in desk_rows} == {"sent"}


def test_a_workers_commit_wakes_the_schedulers_sender_through_the_broker(redis_db):  # noqa: F811
    app = make_celery(Settings(broker_url=redis_db))
    woken, stop = threading.Event(), threading.Event()
    listener = threading.Thread(target=listen_for_wakes, args=(app, woken.set, stop), daemon=True)
    listener.start()
    try:
        sender_waker(app)()  # what a worker calls after a commit that owed an alert
        assert woken.wait(WAIT)
    finally:
        stop.set()
        listener.join(WAIT)
    assert not listener.is_alive()
