"""Many processes on one store: feed leases, claimed deliveries, and Celery workers that place stories as one process would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import redis
from sqlalchemy import func, select

from monitor.config import LOOPBACK_NETWORKS
from monitor.demo.server import LocalSite, Reply, Request
from monitor.demo.site import load_demo_articles, site_routes
from monitor.specs import FeedSpec, SlackRoute
from monitor.store import leases, outbox
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Delivery, Feed, StoryTopic

from .conftest import REQUIRE_POSTGRES, ROOT, TOPIC_YAML, Clock, new_database
from .test_outbox import TOPIC, Hook, make_sender, relevant_story

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
REDIS = "redis://127.0.0.1:6379"
OUTLETS = 3  # besides the sample site: each republishes every article its own way
WAIT = 600.0  # seconds the processes get for each step; never reached when all goes well


# --- leases and claims, on both stores ---------------------------------------------------------


def add_feeds(sessions, count: int, *, now: datetime) -> list[int]:
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name=f"feed {n}", url=f"https://feed{n}.example/rss") for n in range(count)], now=now)
        return polling.active_feed_ids(session)


def test_a_due_feed_is_leased_once_until_its_lease_expires(sessions):
    feed_ids = add_feeds(sessions, 3, now=T0)
    with sessions.begin() as session:
        assert leases.lease_due_feeds(session, now=T0, seconds=60, token="first") == feed_ids
    with sessions.begin() as session:
        assert leases.lease_due_feeds(session, now=T0 + timedelta(seconds=30), seconds=60, token="second") == []
        assert leases.leased_feeds(session, now=T0 + timedelta(seconds=30)) == 3
    with sessions.begin() as session:  # the worker of the first poll died: its lease expires and the feeds go out again
        assert leases.lease_due_feeds(session, now=T0 + timedelta(seconds=61), seconds=60, token="third") == feed_ids


def test_a_lease_token_starts_one_poll_and_a_stale_one_none(sessions):
    feed_id, other = add_feeds(sessions, 2, now=T0)
    with sessions.begin() as session:
        leases.lease_due_feeds(session, now=T0, seconds=60, token="token")
    with sessions.begin() as session:
        assert not leases.take_lease(session, feed_id, token="stranger", run="run-x", now=T0, seconds=60)
        assert leases.take_lease(session, feed_id, token="token", run="run-1", now=T0, seconds=60)
        assert not leases.take_lease(session, feed_id, token="token", run="run-2", now=T0, seconds=60)  # redelivered
        assert leases.take_lease(session, other, token="token", run="run-3", now=T0, seconds=60)
    with sessions.begin() as session:
        leases.release_lease(session, feed_id, run="run-2")  # not its lease: nothing happens
        assert session.get(Feed, feed_id).leased_by == "run-1"
        leases.release_lease(session, feed_id, run="run-1")
    with sessions() as session:
        assert session.get(Feed, feed_id).lease_until is None
        assert leases.leased_feeds(session, now=T0) == 1


def test_a_delivery_is_claimed_by_one_sender_until_sent_or_expired(sessions):
    sender = make_sender(sessions, Clock(T0), [(SlackRoute(), "http://127.0.0.1:9/hook")])
    story_ids = [relevant_story(sessions, sender, n) for n in range(2)]
    with sessions() as session:
        ids = [d.id for d in session.scalars(select(Delivery).where(Delivery.channel == outbox.SLACK).order_by(Delivery.id))]
    assert len(ids) == len(story_ids)
    with sessions.begin() as session:
        assert outbox.claim_deliveries(session, ids, owner="a", now=T0, seconds=60) == ids
    with sessions.begin() as session:
        assert outbox.claim_deliveries(session, ids, owner="b", now=T0 + timedelta(seconds=59), seconds=60) == []
        assert outbox.due_deliveries(session, channel=outbox.SLACK, now=T0 + timedelta(seconds=59)) == []
        outbox.mark_sent(session, ids[:1], now=T0)
    with sessions.begin() as session:  # sender a died holding the second: after its claim, b may send it; the sent one never
        assert outbox.claim_deliveries(session, ids, owner="b", now=T0 + timedelta(seconds=61), seconds=60) == ids[1:]


def test_a_digest_is_claimed_by_one_sender(sessions):
    with sessions.begin() as session:
        run = outbox.plan_digest(session, topic=TOPIC, day="2026-11-22", due_at=T0, now=T0)
    with sessions.begin() as session:
        assert outbox.claim_digest(session, run.id, owner="a", now=T0, seconds=60)
        assert not outbox.claim_digest(session, run.id, owner="b", now=T0, seconds=60)
        assert outbox.due_digests(session, now=T0) == []


def test_senders_at_once_post_each_alert_once(sessions, site):
    """Four senders look at one outbox at the same moment (threads here; processes share it the same way)."""
    slow = Hook(site)

    def slowly(request: Request) -> Reply:
        time.sleep(0.05)  # senders overlap while each post is in flight
        return slow(request)

    site.routes["/hook"] = slowly
    clock = Clock(T0)
    owing = make_sender(sessions, clock, [(SlackRoute(), slow.url)])
    for n in range(12):
        relevant_story(sessions, owing, n)
    senders = [make_sender(sessions, clock, [(SlackRoute(), slow.url)]) for _ in range(4)]
    start = threading.Barrier(len(senders))

    def send(sender) -> None:
        start.wait()
        sender.deliver_due()

    threads = [threading.Thread(target=send, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posted = [json.dumps(payload["blocks"]) for payload in slow.delivered]
    assert 1 <= len(posted) <= 12  # a sender that finds a burst due posts it as one message
    assert all(sum(f"/story-{n}|" in body for body in posted) == 1 for n in range(12))


# --- real processes ----------------------------------------------------------------------------


def newsroom(now: datetime) -> list:
    """The sample site's 30 articles and, per outlet, a copy of each: verbatim, with a sign-off, or cut short
    under another headline; dated in the last hours before `now`. 120 articles in 16 feeds."""
    base = load_demo_articles()
    articles = []
    for index, article in enumerate(base):
        published = now - timedelta(hours=2, minutes=7 * index)
        articles.append(replace(article, published=published))
        for outlet in range(1, OUTLETS + 1):
            paragraphs, title = list(article.paragraphs), article.title
            if outlet == 2:
                paragraphs.append(f"Reporting by the Outlet {outlet} desk; editing by the night staff.")
            if outlet == 3 and len(paragraphs) > 2:
                paragraphs, title = paragraphs[:-1], f"Update: {title}"
            articles.append(
                replace(
                    article,
                    slug=f"{article.slug}-outlet-{outlet}",
                    feeds=[f"outlet{outlet}-{feed}" for feed in article.feeds],
                    title=title,
                    paragraphs=paragraphs,
                    published=published + timedelta(minutes=outlet),
                )
            )
    return articles


@pytest.fixture
def news_site():
    articles = newsroom(datetime.now(timezone.utc))
    with LocalSite() as site:
        site.routes.update(site_routes(articles, site.base_url))
        feeds = sorted({feed for article in articles for feed in article.feeds})
        yield site, [site.url(f"/feeds/{feed}.xml") for feed in feeds], articles


def monitor_env(tmp_path, model_cache, database_url: str, feed_urls: list[str], hook_url: str, **extra) -> dict:
    config = tmp_path / "feeds.yaml"
    if not config.exists():
        config.write_text(
            "feeds:\n"
            + "".join(f"  - {{name: feed {n}, url: '{url}', interval: 1h}}\n" for n, url in enumerate(feed_urls))
            + "topics:\n"
            + TOPIC_YAML.replace("../shared/", f"{ROOT.parent / 'shared'}/").replace("eval/", f"{ROOT / 'eval'}/"),
            encoding="utf-8",
        )
    return {
        **os.environ,
        "MONITOR_CONFIG": str(config),
        "MONITOR_DATABASE_URL": database_url,
        "MONITOR_MODEL_CACHE": str(model_cache),
        "MONITOR_HOST_DELAY": "0",
        "MONITOR_HOST_CONCURRENCY": "8",
        "MONITOR_SLACK_WEBHOOK_URL": hook_url,
        "MONITOR_DELIVERY_INTERVAL": "1",
        "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),  # the local site is on loopback, which the fetcher refuses otherwise
        **extra,
    }


def start(env: dict, *args: str, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def stories_of(database_url: str) -> tuple[set[frozenset[str]], int, set[int]]:
    """The partition of article URLs into stories, the number of articles, and the relevant stories' ids."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(select(Article.url, Article.story_id)).all()
            relevant = set(session.scalars(select(StoryTopic.story_id).where(StoryTopic.topic == TOPIC, StoryTopic.relevant)))
    finally:
        engine.dispose()
    groups: dict[int, set[str]] = {}
    for url, story_id in rows:
        groups.setdefault(story_id, set()).add(url)
    return {frozenset(urls) for urls in groups.values()}, len(rows), relevant


def alerts_per_story(database_url: str, hook: Hook) -> dict[frozenset[str], int]:
    """How many Slack posts link each relevant story, by the story's URLs."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            relevant = set(session.scalars(select(StoryTopic.story_id).where(StoryTopic.topic == TOPIC, StoryTopic.relevant)))
            rows = session.execute(select(Article.url, Article.story_id).where(Article.story_id.in_(relevant))).all()
    finally:
        engine.dispose()
    urls: dict[int, set[str]] = {}
    for url, story_id in rows:
        urls.setdefault(story_id, set()).add(url)
    posts = [json.dumps(payload["blocks"]) for payload in hook.delivered]  # one story's alert, or a burst of them in one
    return {frozenset(group): sum(any(f"<{url}|" in post for url in group) for post in posts) for group in urls.values()}


def single_process_reference(tmp_path, model_cache, feed_urls, site) -> tuple[set[frozenset[str]], int]:
    hook = Hook(site, "/reference-hook")
    database = f"sqlite:///{tmp_path / 'reference.db'}"
    env = monitor_env(tmp_path, model_cache, database, feed_urls, hook.url)
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--once"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    partition, count, relevant = stories_of(database)
    assert len(relevant) > 3 and sorted(alerts_per_story(database, hook).values()) == [1] * len(relevant)
    return partition, count


def wait_until(condition, processes: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a process ended early ({process.args}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def count_rows(sessions, query) -> int:
    with sessions() as session:
        return session.scalar(query) or 0


@pytest.fixture
def redis_db():
    """A Redis database no other test is using (this machine's Redis has 16), emptied afterwards."""
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except redis.ConnectionError:
        if REQUIRE_POSTGRES:  # CI: .ci/run starts Redis, so every test must run
            pytest.fail("Redis on 127.0.0.1:6379 is required here (CI) but does not answer")
        pytest.skip("no Redis server on 127.0.0.1:6379")
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        if client.setnx("monitor-test-lock", os.getpid()):
            if client.dbsize() == 1:
                break
            client.delete("monitor-test-lock")
    else:
        pytest.skip("every Redis database is in use")
    try:
        yield f"{REDIS}/{number}"
    finally:
        client.flushdb()


def test_a_scheduler_and_three_workers_one_killed_store_the_stories_of_one_process(tmp_path, model_cache, news_site, redis_db):
    site, feed_urls, articles = news_site
    reference, expected_count = single_process_reference(tmp_path, model_cache, feed_urls, site)
    assert expected_count == len(articles)  # one article is listed by two feeds: one URL, stored once

    gate = threading.Event()  # article pages wait until the victim has been killed in the middle of a poll
    site.routes.update({path: _gated(route, gate) for path, route in site.routes.items() if path.startswith("/news/")})
    hook = Hook(site)
    with new_database("postgres", tmp_path) as database:
        engine = make_engine(database)
        upgrade(engine)
        sessions = session_factory(engine)
        env = monitor_env(
            tmp_path, model_cache, database, feed_urls, hook.url,
            MONITOR_BROKER_URL=redis_db, MONITOR_POLL_LEASE="45", MONITOR_READ_TIMEOUT="180",
            MONITOR_DELIVERY_INTERVAL="3600",  # the alerts go when the workers' commits wake the sender, not at its interval
        )
        log = (tmp_path / "processes.log").open("w")
        processes = [start(env, "run", log=log)] + [start(env, "worker", "--concurrency", "2", log=log) for _ in range(3)]
        try:
            victim = processes[1]

            def victim_polling() -> bool:
                with sessions() as session:
                    return any(f"monitor-{victim.pid}@" in (holder or "") for holder in session.scalars(select(Feed.leased_by)))

            wait_until(victim_polling, processes, "the first worker to take a poll")
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            processes.remove(victim)
            gate.set()
            processes.append(start(env, "worker", "--concurrency", "2", log=log))

            def finished() -> bool:
                with sessions() as session:
                    stored = session.scalar(select(func.count()).select_from(Article))
                    unpolled = session.scalar(select(func.count()).select_from(Feed).where(Feed.last_success_at.is_(None)))
                    pending = session.scalar(
                        select(func.count()).select_from(Delivery).where(Delivery.channel == outbox.SLACK, Delivery.status == "pending")
                    )
                return stored == expected_count and not unpolled and not pending

            wait_until(finished, processes, "every article stored and every alert sent")
            status = subprocess.run([sys.executable, "-m", "monitor.cli", "status"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
        finally:
            gate.set()
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()
            engine.dispose()
        assert status.returncode == 0, status.stderr
        assert "queue monitor.polls: 0 polls waiting; feeds leased to polls: 0" in status.stdout, status.stdout
        assert re.search(r"workers: [1-3]: monitor-\d+@", status.stdout), status.stdout  # those that answered within the ping's wait

        partition, count, relevant = stories_of(database)
        assert count == expected_count
        assert partition == reference
        assert sorted(alerts_per_story(database, hook).values()) == [1] * len(relevant)


def _gated(route, gate: threading.Event):
    def answer(request: Request) -> Reply:
        gate.wait(timeout=WAIT)
        return route(request) if callable(route) else route

    return answer


def test_two_run_once_processes_on_one_postgresql_database_store_and_alert_as_one(tmp_path, model_cache, news_site, postgres_url):
    site, feed_urls, _ = news_site
    reference, expected_count = single_process_reference(tmp_path, model_cache, feed_urls, site)
    hook = Hook(site)
    engine = make_engine(postgres_url)
    upgrade(engine)  # before both start, as a deployment's migration step does
    engine.dispose()
    env = monitor_env(tmp_path, model_cache, postgres_url, feed_urls, hook.url)
    log = (tmp_path / "processes.log").open("w")
    processes = [start(env, "run", "--once", log=log) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=1500) == 0, (tmp_path / "processes.log").read_text()[-3000:]
    log.close()
    partition, count, relevant = stories_of(postgres_url)
    assert count == expected_count
    assert partition == reference
    assert sorted(alerts_per_story(postgres_url, hook).values()) == [1] * len(relevant)
