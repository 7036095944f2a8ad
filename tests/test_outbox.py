"""The outbox: every relevant story reaches Slack and the digest once, through faults, restarts and quiet hours."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from time import sleep
from datetime import datetime, time, timedelta, timezone
from email import policy
from email.parser import BytesParser
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from typer.testing import CliRunner

from monitor.cli import app

from monitor.delivery import MailChannel, Sender, SlackChannel
from monitor.demo.server import LocalSite, Reply, Request
from monitor.domain import DigestSpec, Outputs, QuietHours, SlackRoute
from monitor.notify.email import Mailer
from monitor.notify.slack import SlackWebhook
from monitor.scheduler import build_scheduler
from monitor.store import outbox
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, ArticleTopic, Delivery, DigestRun, Story, StoryTopic

from .conftest import ROOT, TOPIC_YAML, Clock

TOPIC = "china-surveillance-bans"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)


def add_story(session, n: int, *, score: float = 0.9, when: datetime = T0, outlets: int = 1) -> int:
    """A relevant story with its articles, as the pipeline leaves it."""
    story = Story(
        title=f"Country {n} orders Hikvision cameras removed",
        url=f"https://news{n}.example/story-{n}",
        first_seen_at=when,
        last_updated_at=when,
        published_at=when,
        article_count=outlets,
        vendors=["Hikvision"],
        countries=["AU"],
        actions=["removal"],
    )
    session.add(story)
    session.flush()
    session.add(StoryTopic(story_id=story.id, topic=TOPIC, score=score, relevant=True, relevant_since=when))
    for k in range(outlets):
        article = Article(
            url=f"https://outlet{k}.example/{n}" if k else story.url,
            original_url=story.url,
            title=story.title,
            site_name=f"Outlet {k}",
            text=f"The government of country {n} ordered Hikvision cameras removed from its buildings. More text follows.",
            text_source="page",
            content_hash=f"{n}-{k}",
            fetched_at=when,
            published_at=when + timedelta(minutes=k),
            story_id=story.id,
        )
        session.add(article)
        session.flush()
        session.add(
            ArticleTopic(
                article_id=article.id, topic=TOPIC, score=score, relevant=True, vendors=["Hikvision"], countries=["AU"],
                actions=["removal"], why={"action": "ordered Hikvision cameras removed"}, scored_at=when,
            )
        )
    session.flush()
    return story.id


def relevant_story(sessions, sender: Sender, n: int, **kwargs) -> int:
    """Store a story and owe it in one transaction, as the pipeline's hook does."""
    with sessions.begin() as session:
        story_id = add_story(session, n, **kwargs)
        sender.owe_story(session, story_id, TOPIC)
    return story_id


class Hook:
    """A local Slack webhook whose answers the test scripts: a list of replies, then 200 ok."""

    def __init__(self, site: LocalSite, path: str = "/hook", replies: list[Reply] | None = None) -> None:
        self.site, self.path, self.replies = site, path, list(replies or [])
        self.delivered: list[dict] = []
        self.lock = threading.Lock()
        site.routes[path] = self

    def __call__(self, request: Request) -> Reply:
        with self.lock:
            reply = self.replies.pop(0) if self.replies else Reply(200, b"ok", {"Content-Type": "text/plain"})
            if reply.status == 200:
                self.delivered.append(json.loads(request.body))
            return reply

    @property
    def url(self) -> str:
        return self.site.url(self.path)


def webhook(url: str) -> SlackWebhook:
    return SlackWebhook(url, timeout=5, max_wait=5, attempts=2, sleep=lambda seconds: None)


def make_sender(sessions, clock, routes: list[tuple[SlackRoute, str]], mail: MailChannel | None = None, **outputs) -> Sender:
    return Sender(
        outputs=Outputs(slack=[route for route, _ in routes], **outputs),
        topics=[TOPIC],
        sessions=sessions,
        slack=[SlackChannel(route, webhook(url)) for route, url in routes],
        mail=mail,
        clock=clock,
    )


def linked_urls(payload: dict) -> str:
    return json.dumps(payload["blocks"])


def deliveries(sessions, channel: str = outbox.SLACK) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.channel == channel).order_by(Delivery.id)))


def test_each_relevant_story_alerts_once_with_blocks(sessions, site):
    hook = Hook(site)
    clock = Clock(T0)
    sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)])
    first = relevant_story(sessions, sender, 1, outlets=3)
    relevant_story(sessions, sender, 2)
    with sessions.begin() as session:
        sender.owe_story(session, first, TOPIC)  # owed again (a rescore, say): still one alert

    report = sender.deliver_due()
    assert report.sent == 2 and report.failed == 0
    assert len(hook.delivered) == 2
    payload = hook.delivered[0]
    assert payload["text"] and isinstance(payload["blocks"], list)
    assert all("type" in block for block in payload["blocks"])
    assert "https://news1.example/story-1" in linked_urls(payload)
    assert "Outlet 1" in linked_urls(payload)  # "also in" the other sources

    assert sender.deliver_due().sent == 0  # a second look sends nothing
    assert len(hook.delivered) == 2
    assert {d.status for d in deliveries(sessions)} == {"sent"}


def test_min_score_and_topic_filter_the_routes(sessions, site):
    hook = Hook(site)
    sender = make_sender(sessions, Clock(T0), [(SlackRoute(min_score=0.8), hook.url)])
    relevant_story(sessions, sender, 1, score=0.7)
    relevant_story(sessions, sender, 2, score=0.95)
    sender.deliver_due()
    assert len(hook.delivered) == 1 and "story-2" in linked_urls(hook.delivered[0])
    assert len(deliveries(sessions, outbox.DIGEST)) == 2  # the digest carries both


def test_webhook_failing_then_back_retries_with_backoff_and_delivers_once(sessions, site):
    down = Reply(500, b"internal_error", {"Content-Type": "text/plain"})
    hook = Hook(site, replies=[down, down, down])
    clock = Clock(T0)
    sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)])
    relevant_story(sessions, sender, 1)

    report = sender.deliver_due()  # two tries in place, both 500
    assert report.failed == 1 and hook.delivered == []
    [row] = deliveries(sessions)
    assert row.status == "pending" and row.attempts == 1 and "500" in row.last_error
    assert row.due_at > T0  # backs off

    assert sender.deliver_due().sent == 0  # not due yet: no request is made
    clock.now = row.due_at + timedelta(seconds=1)
    assert sender.deliver_due().sent == 1  # one more 500, then 200 in place
    assert len(hook.delivered) == 1
    [row] = deliveries(sessions)
    assert row.status == "sent" and row.last_error is None


def test_rate_limit_waits_for_retry_after(sessions, site):
    hook = Hook(site, replies=[Reply(429, b"rate_limited", {"Retry-After": "1", "Content-Type": "text/plain"})])
    waits: list[float] = []
    sender = make_sender(sessions, Clock(T0), [(SlackRoute(), hook.url)])
    sender.slack[0].webhook = SlackWebhook(hook.url, timeout=5, max_wait=5, attempts=2, sleep=waits.append)
    relevant_story(sessions, sender, 1)
    assert sender.deliver_due().sent == 1
    assert len(hook.delivered) == 1
    assert waits and waits[0] >= 1


def test_a_long_rate_limit_is_retried_from_the_outbox_no_sooner_than_slack_asked(sessions, site):
    hook = Hook(site, replies=[Reply(429, b"rate_limited", {"Retry-After": "600", "Content-Type": "text/plain"})])
    clock = Clock(T0)
    sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)])  # waits up to 5 s in place
    relevant_story(sessions, sender, 1)
    assert sender.deliver_due().failed == 1
    [row] = deliveries(sessions)
    assert row.status == "pending" and row.due_at >= T0 + timedelta(seconds=600)  # not the 30 s first backoff
    clock.now = row.due_at
    assert sender.deliver_due().sent == 1 and len(hook.delivered) == 1


def test_a_bad_webhook_is_reported_and_does_not_block_the_others(sessions, site):
    gone = Hook(site, "/gone", replies=[Reply(404, b"no_service", {"Content-Type": "text/plain"})] * 5)
    good = Hook(site, "/good")
    routes = [(SlackRoute(webhook="GONE_HOOK"), gone.url), (SlackRoute(webhook="GOOD_HOOK"), good.url)]
    sender = make_sender(sessions, Clock(T0), routes)
    relevant_story(sessions, sender, 1)
    report = sender.deliver_due()
    assert report.sent == 1 and report.failed == 1
    assert len(good.delivered) == 1
    by_route = {d.route: d for d in deliveries(sessions)}
    assert by_route["GONE_HOOK"].status == "failed" and "no_service" in by_route["GONE_HOOK"].last_error
    assert len([r for r in gone.site.requests if r.path == "/gone"]) == 1  # a permanent error is not retried
    with sessions() as session:
        problems = outbox.outbox_problems(session)
    assert [p.route for p in problems] == ["GONE_HOOK"]


def test_a_burst_goes_as_one_message_and_single_alerts_are_paced(sessions, site):
    hook = Hook(site)
    clock = Clock(T0)
    waits: list[float] = []

    def now() -> float:  # a monotonic clock that only the waits move: every post is due at once
        return 50.0 + sum(waits)

    sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)])
    sender.slack[0].webhook = SlackWebhook(hook.url, timeout=5, sleep=waits.append, clock=now)
    sender.titles = {TOPIC: "Bans on Chinese surveillance technology"}
    for n in range(5):
        relevant_story(sessions, sender, n)
    assert sender.deliver_due().sent == 5
    assert len(hook.delivered) == 1 and waits == []  # more than burst (3) at once: one grouped message
    heading = hook.delivered[0]["blocks"][0]["text"]["text"]
    assert heading == "5 new stories · Bans on Chinese surveillance technology"
    assert all(f"story-{n}" in linked_urls(hook.delivered[0]) for n in range(5))

    for n in range(5, 8):
        relevant_story(sessions, sender, n)
    assert sender.deliver_due().sent == 3
    assert len(hook.delivered) == 4 and waits == [1.0, 1.0, 1.0]  # three alerts, each a second after the one before
    assert hook.delivered[1]["text"].startswith("Bans on Chinese surveillance technology: Country 5")


def test_quiet_hours_hold_alerts_then_send_them_as_one_message(sessions, site):
    hook = Hook(site)
    clock = Clock(datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc))
    quiet = QuietHours(start=time(22, 0), end=time(7, 0), timezone="UTC")
    sender = make_sender(sessions, clock, [(SlackRoute(quiet_hours=quiet), hook.url)])
    for n in range(3):
        relevant_story(sessions, sender, n, when=clock.now)
    assert sender.deliver_due().sent == 0 and hook.delivered == []

    clock.now = datetime(2026, 11, 23, 7, 0, 30, tzinfo=timezone.utc)
    assert sender.deliver_due().sent == 3
    assert len(hook.delivered) == 1  # one message for the night
    body = linked_urls(hook.delivered[0])
    assert all(f"story-{n}" in body for n in range(3))


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(BytesParser(policy=policy.default).parsebytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_port():
    return free_port()


def mail_channel(port: int) -> MailChannel:
    return MailChannel(Mailer("127.0.0.1", port, tls="none", timeout=5), "monitor@example.org", ["reader@example.org"])


def test_digest_survives_smtp_down_then_up_and_never_repeats(sessions, smtp_port):
    clock = Clock(T0)
    sender = make_sender(sessions, clock, [], mail=mail_channel(smtp_port))
    for n in range(3):
        relevant_story(sessions, sender, n, outlets=2)
    day = T0.date()

    sender.plan_digests(day)
    sender.plan_digests(day)  # planned twice (a restart at digest time): one digest
    report = sender.deliver_due()  # nothing listens on the port yet
    assert report.failed == 1
    with sessions() as session:
        [run] = session.scalars(select(DigestRun)).all()
        assert run.status == "pending" and run.attempts == 1 and f"127.0.0.1:{smtp_port}" in run.last_error

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        clock.now = run.due_at + timedelta(seconds=1)
        assert sender.deliver_due().sent == 1
        sender.plan_digests(day)
        clock.now += timedelta(hours=1)
        assert sender.deliver_due().sent == 0  # the day's digest went out: not again

        [message] = inbox.messages
        assert "3" in message["Subject"]
        plain = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for n in range(3):
            assert f"https://news{n}.example/story-{n}" in plain and f"https://news{n}.example/story-{n}" in html
            assert f"https://outlet1.example/{n}" in html

        # The next day's digest carries only what is new since.
        clock.now = T0 + timedelta(days=1)
        relevant_story(sessions, sender, 9, when=clock.now)
        sender.plan_digests(clock.now.date())
        assert sender.deliver_due().sent == 1
        second = inbox.messages[1].get_body(("html",)).get_content()
        assert "story-9" in second and "story-0" not in second
    finally:
        controller.stop()
    assert {d.status for d in deliveries(sessions, outbox.DIGEST)} == {"sent"}


def test_an_empty_day_sends_a_short_email_or_nothing(sessions, smtp_port):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        clock = Clock(T0)
        sender = make_sender(sessions, clock, [], mail=mail_channel(smtp_port))
        sender.plan_digests(T0.date())
        sender.deliver_due()
        assert len(inbox.messages) == 1 and "nothing new" in inbox.messages[0].get_body(("plain",)).get_content().lower()

        skipping = make_sender(sessions, clock, [], mail=mail_channel(smtp_port), digest=DigestSpec(when_empty="skip"))
        skipping.plan_digests((T0 + timedelta(days=1)).date())
        clock.now = T0 + timedelta(days=1)
        report = skipping.deliver_due()
        assert len(inbox.messages) == 1 and "nothing new" in report.digests[0]
    finally:
        controller.stop()


def test_killed_between_send_and_mark_repeats_only_the_one_in_flight(tmp_path, site, model_cache):
    """A real `monitor run --once` process is killed by the webhook while it sends the second alert."""
    database = tmp_path / "monitor.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    sessions = session_factory(engine)
    hook = Hook(site)
    owing = make_sender(sessions, Clock(datetime.now(timezone.utc)), [(SlackRoute(), hook.url)])
    story_ids = [relevant_story(sessions, owing, n, when=datetime.now(timezone.utc)) for n in range(3)]  # no burst: one alert each
    engine.dispose()

    victim: list[int] = []
    original = hook.__call__

    def kill_on_second(request: Request) -> Reply:
        reply = original(request)
        if len(hook.delivered) == 2 and victim:
            os.kill(victim[0], signal.SIGKILL)  # the alert is out; the process dies before marking it
        return reply

    site.routes["/hook"] = kill_on_second
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds: []\ntopics:\n" + TOPIC_YAML.replace("../shared/", f"{ROOT.parent / 'shared'}/").replace("eval/", f"{ROOT / 'eval'}/"),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "MONITOR_CONFIG": str(config),
        "MONITOR_DATABASE_URL": f"sqlite:///{database}",
        "MONITOR_MODEL_CACHE": str(model_cache),
        "MONITOR_SLACK_WEBHOOK_URL": hook.url,
        "MONITOR_DELIVERY_CLAIM": "1",  # the dead sender's claim on the alert in flight lapses after a second
    }
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "--once"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim.append(process.pid)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, stderr
    assert len(hook.delivered) == 2

    site.routes["/hook"] = original
    sleep(1)
    again = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    delivered = [linked_urls(payload) for payload in hook.delivered]
    counts = [sum(f"/story-{n}" in body for body in delivered) for n in range(len(story_ids))]
    assert sorted(counts) == [1, 1, 2]  # every story arrived; only the one in flight twice
    assert counts[1] == 2


def test_digest_command_dry_run_send_and_status(tmp_path, smtp_port):
    database = f"sqlite:///{tmp_path / 'monitor.db'}"
    engine = make_engine(database)
    upgrade(engine)
    sessions = session_factory(engine)
    owing = make_sender(sessions, Clock(T0), [])
    for n in range(2):
        relevant_story(sessions, owing, n, outlets=2)
    engine.dispose()
    env = {"MONITOR_CONFIG": str(ROOT / "feeds.yaml"), "MONITOR_DATABASE_URL": database, "MONITOR_SMTP_HOST": "", "MONITOR_DIGEST_TO": ""}

    def monitor(*args, **extra):
        return CliRunner().invoke(app, list(args), env={**env, **extra}, catch_exceptions=False)

    shown = monitor("digest", "--date", "2026-11-22", "--dry-run")
    assert shown.exit_code == 0, shown.output
    message = BytesParser(policy=policy.default).parsebytes(shown.stdout.encode())
    assert "2" in message["Subject"] and message.get_body(("plain",)) and message.get_body(("html",))
    written = monitor("digest", "--date", "2026-11-22", "--dry-run", "-o", str(tmp_path / "d.eml"))
    assert written.exit_code == 0 and (tmp_path / "d.eml").stat().st_size > 1000

    refused = monitor("digest", "--date", "2026-11-22")
    assert refused.exit_code == 2 and "MONITOR_SMTP_HOST" in refused.output

    smtp = {"MONITOR_SMTP_HOST": "127.0.0.1", "MONITOR_SMTP_PORT": str(smtp_port), "MONITOR_SMTP_TLS": "none", "MONITOR_DIGEST_TO": "desk@example.org"}
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        sent = monitor("digest", "--date", "2026-11-22", **smtp)
        assert sent.exit_code == 0, sent.output
        assert len(inbox.messages) == 1 and inbox.messages[0]["To"] == "desk@example.org"
        again = monitor("digest", "--date", "2026-11-22", **smtp)
        assert again.exit_code == 1 and "already sent" in again.output and len(inbox.messages) == 1
        forced = monitor("digest", "--date", "2026-11-22", "--force", **smtp)
        assert forced.exit_code == 0 and len(inbox.messages) == 2
        assert inbox.messages[1].get_body(("plain",)).get_content() == inbox.messages[0].get_body(("plain",)).get_content()
    finally:
        controller.stop()
    status = monitor("status")
    assert "digest china-surveillance-bans 2026-11-22: sent, 2 stories" in status.output
    assert "digest sent: 2" in status.output


def test_the_service_schedules_the_digest_at_its_time_and_catches_up_after_downtime(sessions, smtp_port):
    spec = DigestSpec(time=time(7, 30), timezone="Europe/Berlin")
    clock = Clock(datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc))  # 10:00 in Berlin: the digest time has passed
    sender = make_sender(sessions, clock, [], mail=mail_channel(smtp_port), digest=spec)
    scheduler = build_scheduler(SimpleNamespace(clock=clock), [], workers=1, sender=sender)  # no feeds: only the clock is read
    trigger = scheduler.get_job("digest").trigger
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc))
    assert fire.isoformat() == "2026-11-22T07:30:00+01:00"
    assert scheduler.get_job("deliver") is not None

    sender.plan_if_missed()
    sender.plan_if_missed()
    with sessions() as session:
        assert [(r.day, r.status) for r in session.scalars(select(DigestRun))] == [("2026-11-22", "pending")]


def test_the_demo_sends_one_alert_per_relevant_story(tmp_path, site, model_cache):
    """`monitor demo` (the real pipeline over the sample site) with a webhook configured: one alert per relevant story."""

    hook = Hook(site)
    env = {
        **os.environ,
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "MONITOR_MODEL_CACHE": str(model_cache),
        "MONITOR_SLACK_WEBHOOK_URL": hook.url,
    }
    command = [sys.executable, "-m", "monitor.cli"]
    demo = subprocess.run([*command, "demo", "--database", env["MONITOR_DATABASE_URL"]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    exported = subprocess.run([*command, "export", "--relevant-only"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    relevant = {row["story_id"]: row["url"] for row in map(json.loads, exported.stdout.splitlines())}
    assert len(relevant) >= 5
    assert len(hook.delivered) == 1  # a burst of alerts goes as one message
    assert hook.delivered[0]["blocks"][0]["text"]["text"].startswith(f"{len(relevant)} new stories · Bans on Chinese surveillance technology")
    for story_id, url in relevant.items():
        assert url in linked_urls(hook.delivered[0]), url
    assert f"deliveries: {len(relevant)} sent" in demo.stdout

    again = subprocess.run([*command, "demo", "--database", env["MONITOR_DATABASE_URL"]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(hook.delivered) == 1  # nothing alerts twice
