"""WebSub push against a local hub: subscription, a verified push that alerts, forged pushes refused and kept nowhere,
lease renewal, and polling taking over when push goes quiet. The archive's app runs on a real server for the hub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from monitor.classify import TopicScorer
from monitor.config import Settings
from monitor.specs import FeedSpec, SlackRoute
from monitor.demo.server import LocalSite, Reply
from monitor.demo.websub_hub import Hub, serving
from monitor.demo.site import HTML, RSS, SiteArticle, load_demo_articles, render_page, render_rss
from monitor.domain import ACTIVE, ParsedFeed, Subscription
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher, build_client
from monitor.delivery import Sender
from monitor.deps import Deps
from monitor.pipeline import poll_feed
from monitor.push import Upkeep, drain_pushes, upkeep
from monitor.scheduler import build_scheduler, poll_if_due
from monitor.store import polling
from monitor.store import websub as store
from monitor.store.models import Article, Feed, Push
from monitor.web.app import create_app
from monitor.web.websub import signature_ok
from monitor.websub import HubLinks, discover

from .conftest import NOW, Clock
from .test_outbox import Hook, make_sender

INTERVAL = 3600
LEASE = 86400  # the longest lease the local hub grants (less than asked)
TOKEN = "archive-token"


def feed_of(articles: list[SiteArticle], base_url: str) -> bytes:
    return render_rss("world", [{"article": a, "link": f"{base_url}/news/{a.slug}.html"} for a in articles], base_url=base_url)


@dataclass
class World:
    """A feed on a local site that names a local hub, the archive serving the callback, and the pipeline's parts."""

    clock: Clock
    sessions: sessionmaker
    settings: Settings
    deps: Deps
    push: Upkeep
    hub: Hub
    site: LocalSite
    hook: Hook
    sender: Sender
    feed_id: int
    feed_url: str
    archive_url: str
    quiet: SiteArticle  # in the feed from the start, off the topic
    news: SiteArticle  # published later, on the topic

    def subscribe(self) -> Subscription:
        """Poll the feed (finding its hub), ask the hub, and wait for its verification."""
        assert poll_feed(self.feed_id, self.deps).ok
        assert upkeep(self.push).get("subscribe") == 1
        [verification] = self.hub.wait_verifications(1)
        assert verification.confirmed and verification.mode == "subscribe" and verification.topic == self.feed_url
        return self.subscription()

    def subscription(self) -> Subscription:
        with self.sessions() as session:
            return store.subscriptions(session)[self.feed_id]

    def feed(self) -> Feed:
        with self.sessions() as session:
            return session.get_one(Feed, self.feed_id)

    def count(self, model) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model))

    def feed_fetches(self) -> int:
        return sum(1 for request in self.site.requests if request.path == "/feed.xml")


@pytest.fixture
def world(sessions, settings, embedder, config) -> Iterator[World]:
    clock = Clock()
    articles = load_demo_articles(NOW)
    quiet = next(a for a in articles if not a.on_topic)
    news = next(a for a in articles if a.on_topic)
    archive_settings = settings.model_copy(update={"api_token": TOKEN})  # hubs cannot send it: the callback needs none
    app = create_app(sessions=sessions, embedder=embedder, config=config, settings=archive_settings, clock=clock)
    with Hub(max_lease=LEASE) as hub, LocalSite() as site, serving(app) as archive_url, build_client(settings) as client:
        # the feed keeps its configured interval (adaptive polling would stretch a one-item feed to a day): push's pacing
        # of polls is what these tests watch
        settings = settings.model_copy(update={"public_url": archive_url, "poll_adaptive": False})
        feed_url = site.url("/feed.xml")
        for article in articles:
            site.routes[f"/news/{article.slug}.html"] = Reply(200, render_page(article, url=site.url(f"/news/{article.slug}.html"), related=[]), HTML)
        site.routes["/feed.xml"] = Reply(200, feed_of([quiet], site.base_url), {**RSS, "Link": f'<{hub.url}>; rel="hub", <{feed_url}>; rel="self"'})
        hook = Hook(site)
        sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)])
        with sessions.begin() as session:
            polling.sync_feeds(session, [FeedSpec(name="Wire", url=feed_url, interval=INTERVAL)], now=clock())
            [feed_id] = polling.active_feed_ids(session)
        fetcher = Fetcher.from_settings(client, settings)
        deps = Deps(
            settings=settings,
            sessions=sessions,
            fetcher=fetcher,
            embedder=embedder,
            scorers=[TopicScorer(topic, embedder) for topic in config.topics],
            clock=clock,
            on_relevant_story=sender.owe_story,
        )
        yield World(
            clock, sessions, settings, deps, Upkeep(settings, sessions, fetcher, clock), hub, site, hook, sender, feed_id, feed_url, archive_url, quiet, news
        )


def test_a_feed_naming_a_hub_is_subscribed_and_a_verified_push_alerts_within_one_pass(world):
    sub = world.subscribe()
    feed = world.feed()
    assert (feed.hub_url, feed.topic_url) == (world.hub.url, world.feed_url)  # from the feed's Link header
    [asked] = world.hub.requests
    assert asked["hub.callback"] == f"{world.archive_url}/websub/{sub.id}"
    assert asked["hub.lease_seconds"] == str(world.settings.websub_lease) and asked["hub.secret"] == sub.secret
    assert sub.state == ACTIVE and sub.verified_at == NOW and sub.lease_expires_at == NOW + timedelta(seconds=LEASE)

    world.clock.now = NOW + timedelta(minutes=5)
    [answer] = world.hub.publish(world.feed_url, feed_of([world.news, world.quiet], world.site.base_url))
    assert answer.status_code == 202
    assert world.count(Push) == 1 and world.subscription().last_push_at == world.clock.now

    scheduler = build_scheduler(world.deps, [], workers=2, push=world.push)  # the service's jobs, no feed to poll
    scheduler.start()
    try:
        waited = 0.0
        while world.count(Push) and waited < 60:  # read within seconds: the job looks every PUSH_DRAIN_INTERVAL
            time.sleep(0.2)
            waited += 0.2
    finally:
        scheduler.shutdown(wait=True)
    assert world.count(Push) == 0 and world.count(Article) == 2  # the article already polled is not read again
    report = world.sender.deliver_due()
    assert report.sent == 1 and world.news.title in str(world.hook.delivered[0])
    assert world.feed().last_polled_at == NOW  # a push leaves the feed's polling state alone


def test_a_push_with_a_bad_or_missing_signature_is_refused_and_kept_nowhere(world):
    sub = world.subscribe()
    body = feed_of([world.news, world.quiet], world.site.base_url)
    for forged in ({"secret": "not-the-secret"}, {"signed": False}, {"method": "md5"}):
        [answer] = world.hub.publish(world.feed_url, body, **forged)
        assert answer.status_code == 403, forged
    assert world.count(Push) == 0 and world.subscription().last_push_at is None
    assert drain_pushes(world.deps) == [] and world.count(Article) == 1

    callback = f"{world.archive_url}/websub/{sub.id}"
    assert httpx.post(f"{world.archive_url}/websub/unknown", content=body).status_code == 404
    elsewhere = {"hub.mode": "subscribe", "hub.topic": "https://elsewhere.example/feed", "hub.challenge": "x", "hub.lease_seconds": "60"}
    assert httpx.get(callback, params=elsewhere).status_code == 404  # an intent for another topic is not ours
    too_big = httpx.post(callback, content=b"x" * (world.settings.max_feed_bytes + 1), headers={"Content-Type": "application/rss+xml"})
    assert too_big.status_code == 413 and world.count(Push) == 0
    assert httpx.get(f"{world.archive_url}/api/search").status_code == 401  # the rest of the archive keeps its token

    for method in ("sha1", "sha384", "sha512"):
        [answer] = world.hub.publish(world.feed_url, body, method=method)
        assert answer.status_code == 202, method
    assert world.count(Push) == 3


def test_the_lease_is_renewed_before_it_expires(world):
    first = world.subscribe()
    world.clock.now = NOW + timedelta(seconds=LEASE * 0.7)
    upkeep(world.push)
    assert len(world.hub.requests) == 1  # not yet

    world.clock.now = NOW + timedelta(seconds=LEASE * 0.85)
    assert upkeep(world.push).get("subscribe") == 1
    renewal = world.hub.wait_verifications(2)[1]
    assert renewal.confirmed and renewal.callback == world.hub.requests[0]["hub.callback"]
    renewed = world.subscription()
    assert (renewed.id, renewed.secret, renewed.state) == (first.id, first.secret, ACTIVE)
    assert renewed.lease_expires_at == world.clock.now + timedelta(seconds=LEASE)
    upkeep(world.push)
    assert len(world.hub.requests) == 2  # renewed once


def test_polls_rest_while_push_is_healthy_and_take_over_when_it_goes_quiet(world):
    world.subscribe()
    upkeep(world.push)
    safety = timedelta(seconds=world.settings.push_safety_poll)
    assert world.feed().next_due_at == NOW + safety  # push healthy: polled only as a safety net

    world.clock.now = NOW + timedelta(minutes=50)
    world.hub.publish(world.feed_url, feed_of([world.quiet], world.site.base_url))
    world.clock.now = NOW + timedelta(minutes=70)  # the verification is 70 minutes old, the push 20
    upkeep(world.push)
    assert world.feed().next_due_at == NOW + safety
    fetches = world.feed_fetches()
    assert poll_if_due(world.feed_id, world.deps) is None and world.feed_fetches() == fetches

    world.clock.now = NOW + timedelta(minutes=50 + 61)  # nothing heard for longer than the feed's interval
    upkeep(world.push)
    assert world.feed().next_due_at == world.clock.now
    assert poll_if_due(world.feed_id, world.deps).ok and world.feed_fetches() == fetches + 1
    upkeep(world.push)  # still quiet: the feed keeps the interval its poll set
    assert world.feed().next_due_at == world.clock.now + timedelta(seconds=INTERVAL)


def test_a_feed_that_stops_naming_a_hub_is_unsubscribed(world):
    world.subscribe()
    world.site.routes["/feed.xml"] = Reply(200, feed_of([world.news, world.quiet], world.site.base_url), RSS)  # no Link header
    world.clock.now = NOW + timedelta(minutes=10)
    assert poll_feed(world.feed_id, world.deps).ok and world.feed().hub_url is None
    assert upkeep(world.push).get("unsubscribe") == 1
    ended = world.hub.wait_verifications(2)[1]
    assert ended.mode == "unsubscribe" and ended.confirmed
    with world.sessions() as session:
        assert store.subscriptions(session) == {}
    assert world.hub.publish(world.feed_url, b"<rss/>") == []  # the hub has nobody left to push to


def test_without_a_public_url_nothing_is_subscribed(world):
    assert poll_feed(world.feed_id, world.deps).ok
    no_push = Upkeep(world.settings.model_copy(update={"public_url": ""}), world.sessions, world.deps.fetcher, world.clock)
    assert upkeep(no_push) == {}
    assert world.hub.requests == [] and world.feed().hub_url == world.hub.url


def test_pushed_feeds_are_leased_to_one_worker(sessions):
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name="A", url="https://a.example/rss"), FeedSpec(name="B", url="https://b.example/rss")], now=NOW)
        a = next(f.id for f in polling.feeds_overview(session) if f.name == "A")
        session.add(Push(feed_id=a, body=b"<rss/>", content_type="application/rss+xml", received_at=NOW, next_try_at=NOW, attempts=0))
    with sessions.begin() as session:
        assert store.lease_pushed_feeds(session, now=NOW, seconds=60, token="one") == [a]
    with sessions.begin() as session:
        assert store.lease_pushed_feeds(session, now=NOW, seconds=60, token="two") == []


def test_the_hub_is_found_in_the_link_header_first_then_in_the_feed():
    rss = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title>'
        b'<atom:link rel="hub" href="/hub"/><atom:link rel="self" href="https://news.example/rss.xml"/>'
        b"<item><title>a</title><link>https://news.example/1</link></item></channel></rss>"
    )
    parsed = parse_feed(rss, url="https://news.example/feed", content_type="application/rss+xml")
    assert discover({}, parsed, "https://news.example/feed") == HubLinks("https://news.example/hub", "https://news.example/rss.xml")
    header = {"hub": "https://hub.example/", "self": "https://news.example/topic"}
    assert discover(header, parsed, "https://news.example/feed") == HubLinks("https://hub.example/", "https://news.example/topic")
    assert discover({"hub": "https://hub.example/"}, ParsedFeed("t", []), "https://news.example/feed").topic == "https://news.example/feed"
    assert discover({}, ParsedFeed("t", [], hub="javascript:alert(1)"), "https://news.example/feed") is None
    assert discover({}, ParsedFeed("t", []), "https://news.example/feed") is None


def test_signatures_of_each_method_are_checked():
    import hashlib
    import hmac

    body = b"<rss/>"
    for method in ("sha1", "sha256", "sha384", "sha512"):
        good = hmac.new(b"s3cret", body, getattr(hashlib, method)).hexdigest()
        assert signature_ok("s3cret", f"{method}={good}", body)
        assert not signature_ok("other", f"{method}={good}", body)
        assert not signature_ok("s3cret", f"{method}={good}", body + b" ")
    assert not signature_ok("s3cret", None, body) and not signature_ok("s3cret", "sha256=", body)
    assert not signature_ok("s3cret", f"md5={hmac.new(b's3cret', body, hashlib.md5).hexdigest()}", body)
