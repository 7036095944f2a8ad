"""Coverage spikes: a day far busier than its baseline is raised once, posted once to Slack and opens the next digest;
quiet days and small counts raise nothing."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from monitor.domain import DigestSpec, SlackRoute
from monitor.spike_watch import detect_spikes
from monitor.scheduler import build_scheduler
from monitor.spikes import SpikeRule, day_window, find_spikes, upper_tail, watched_days
from monitor.store import coverage
from monitor.store.models import Article, Spike, SpikeDelivery, Story, StoryTopic

from .conftest import NOW, Clock
from .test_outbox import TOPIC, Hook, Inbox, free_port, mail_channel, make_sender, relevant_story

LONDON = "Europe/London"
RULE = SpikeRule()


def add_story(session, when: datetime, *, vendors=(), countries=(), relevant: bool = True, first_seen: datetime | None = None) -> int:
    """A story of the topic dated `when`, with its tags, as placement leaves it (only what the counts read)."""
    story = Story(
        title=f"story at {when.isoformat()}", url=f"https://news.example/{when.timestamp()}-{'-'.join(vendors)}",
        first_seen_at=first_seen or when, last_updated_at=when, published_at=when, article_count=1,
        vendors=list(vendors), countries=list(countries), actions=["ban"],
    )  # fmt: skip
    session.add(story)
    session.flush()
    session.add(StoryTopic(story_id=story.id, topic=TOPIC, score=0.9 if relevant else 0.1, relevant=relevant, relevant_since=when))
    session.flush()
    return story.id


def two_quiet_weeks(sessions, now: datetime = NOW) -> None:
    """14 days before `now`: a Dahua story (US) every day and a Hikvision story (GB) every other day; off-topic noise too."""
    with sessions.begin() as session:
        for days in range(1, 15):
            when = now - timedelta(days=days)
            add_story(session, when, vendors=["Dahua"], countries=["US"])
            if days % 2:
                add_story(session, when + timedelta(hours=1), vendors=["Hikvision"], countries=["GB"])
            add_story(session, when + timedelta(hours=2), vendors=["Hikvision"], countries=["GB"], relevant=False)


def busy_hikvision_day(sessions, now: datetime = NOW, stories: int = 9) -> None:
    with sessions.begin() as session:
        for n in range(stories):
            add_story(session, now - timedelta(minutes=10 * (n + 1)), vendors=["Hikvision"], countries=["GB"])
        add_story(session, now - timedelta(hours=3), vendors=["Dahua"], countries=["US"])


def spike_rows(sessions) -> list[Spike]:
    with sessions() as session:
        return list(session.scalars(select(Spike).order_by(Spike.id)))


# The statistic, alone.


def test_a_day_far_above_its_baseline_is_a_spike():
    [spike] = find_spikes({("vendor", "Hikvision"): 9}, {("vendor", "Hikvision"): 17}, days=14, rule=RULE)
    assert (spike.dimension, spike.value, spike.stories) == ("vendor", "Hikvision", 9)
    assert spike.baseline == pytest.approx(17 / 14) and spike.p_value < 1e-4


@pytest.mark.parametrize(
    ("today", "baseline_total", "why"),
    [
        (3, 0, "a vendor never seen before, three stories: below the minimum"),
        (4, 0, "four stories of a new name: below the minimum"),
        (5, 0, "five stories of a name never seen: at the floored rate, chance is about 1 in 6,000"),
        (5, 14, "five against one a day: a busy day, not a wave"),
        (30, 280, "thirty against twenty a day: busier, yet under twice the rate"),
        (7, 42, "seven against three a day"),
    ],
)
def test_small_and_ordinary_counts_do_not_alarm(today, baseline_total, why):
    assert find_spikes({("vendor", "Uniview"): today}, {("vendor", "Uniview"): baseline_total}, days=14, rule=RULE) == [], why


def test_a_new_monitor_raises_nothing_before_it_has_watched_half_the_baseline():
    today, baseline = {("topic", TOPIC): 40}, {("topic", TOPIC): 3}
    assert find_spikes(today, baseline, days=6, rule=RULE) == []
    assert find_spikes(today, baseline, days=7, rule=RULE) != []


def test_ordinary_days_almost_never_alarm():
    """Days drawn at their own baseline rate (0.05 to 30 stories a day, 20,000 of them): false alarms stay at the p-value's rate (1 in 10,000)."""
    rng = np.random.default_rng(15)
    rates = rng.choice([0.05, 0.2, 0.5, 1, 2, 5, 10, 30], size=20_000)
    alarms = 0
    for number, rate in enumerate(rates):
        key = ("vendor", f"v{number}")
        today, baseline = {key: int(rng.poisson(rate))}, {key: int(rng.poisson(rate * 14))}
        alarms += len(find_spikes(today, baseline, days=14, rule=RULE))
    assert alarms <= 4


def test_upper_tail_is_the_poisson_tail():
    assert upper_tail(0, 1.2) == pytest.approx(1.0)
    assert upper_tail(1, 1.2) == pytest.approx(1 - np.exp(-1.2))
    assert upper_tail(9, 1.2) == pytest.approx(4.86e-6, rel=0.01)


def test_the_day_follows_the_desks_clock_across_a_dst_change():
    spring = datetime(2026, 3, 29, 12, 0, tzinfo=timezone.utc)  # British clocks go forward at 01:00 UTC that day
    window = day_window(spring, LONDON, 14)
    assert window.day == date(2026, 3, 29)
    assert window.start == datetime(2026, 3, 29, 0, 0, tzinfo=timezone.utc)
    assert window.end - window.start == timedelta(hours=23)
    assert window.baseline_start == datetime(2026, 3, 15, 0, 0, tzinfo=timezone.utc)
    late = day_window(datetime(2026, 7, 1, 23, 30, tzinfo=timezone.utc), LONDON, 14)  # 00:30 on 2 July in London
    assert late.day == date(2026, 7, 2) and late.start == datetime(2026, 7, 1, 23, 0, tzinfo=timezone.utc)
    assert watched_days(window, spring - timedelta(days=3), LONDON) == 3
    assert watched_days(window, spring - timedelta(days=300), LONDON) == 14
    assert watched_days(window, None, LONDON) == 0


# Counting, detection and delivery, on both stores.


def test_counts_per_topic_vendor_and_country(sessions):
    two_quiet_weeks(sessions)
    busy_hikvision_day(sessions)
    window = day_window(NOW, "UTC", 14)
    with sessions() as session:
        today = coverage.coverage_counts(session, topic=TOPIC, start=window.start, end=window.end)
        baseline = coverage.coverage_counts(session, topic=TOPIC, start=window.baseline_start, end=window.start)
        assert watched_days(window, coverage.first_story_seen(session), "UTC") == 14
    assert today == {("topic", TOPIC): 10, ("vendor", "Hikvision"): 9, ("vendor", "Dahua"): 1, ("country", "GB"): 9, ("country", "US"): 1}
    assert baseline == {("topic", TOPIC): 21, ("vendor", "Hikvision"): 7, ("vendor", "Dahua"): 14, ("country", "GB"): 7, ("country", "US"): 14}


def test_a_spike_is_raised_once_and_posted_once(sessions, site):
    hook = Hook(site)
    clock = Clock(NOW)
    sender = make_sender(sessions, clock, [(SlackRoute(), hook.url)], digest=DigestSpec(timezone=LONDON), archive_url="https://monitor.example")
    sender.spike_rule = RULE
    two_quiet_weeks(sessions)
    assert detect_spikes(sender) == []  # a quiet day so far

    busy_hikvision_day(sessions)
    found = detect_spikes(sender)
    assert {(s.dimension, s.value) for s in found} == {("topic", TOPIC), ("vendor", "Hikvision"), ("country", "GB")}
    assert sender.deliver_due().sent == 3
    clock.now += timedelta(minutes=5)
    assert detect_spikes(sender) == []  # the next look, the same day: nothing new
    assert sender.deliver_due().sent == 0

    texts = [message["text"] for message in hook.delivered]
    assert len(texts) == 3
    assert "Coverage spike: Hikvision: 9 stories today against 0.5 a day" in texts
    assert "Coverage spike: United Kingdom: 9 stories today against 0.5 a day" in texts
    hikvision = next(m for m in hook.delivered if "Hikvision" in m["text"])
    assert "vendor=Hikvision" in str(hikvision["blocks"]) and "since=2026-11-22" in str(hikvision["blocks"])

    with sessions.begin() as session:  # the wave grows the same day: the count follows, no second message
        for n in range(3):
            add_story(session, clock.now - timedelta(minutes=n + 1), vendors=["Hikvision"], countries=["GB"])
    assert detect_spikes(sender) == [] and sender.deliver_due().sent == 0
    assert {row.value: row.stories for row in spike_rows(sessions)}["Hikvision"] == 12
    assert len(hook.delivered) == 3

    clock.now = NOW + timedelta(days=1)  # a quiet day after the wave
    with sessions.begin() as session:
        add_story(session, clock.now - timedelta(hours=1), vendors=["Hikvision"], countries=["GB"])
        add_story(session, clock.now - timedelta(hours=2), vendors=["Dahua"], countries=["US"])
    assert detect_spikes(sender) == [] and len(spike_rows(sessions)) == 3


def test_a_new_monitor_and_a_few_stories_of_a_new_vendor_raise_nothing(sessions, site):
    hook = Hook(site)
    sender = make_sender(sessions, Clock(NOW), [(SlackRoute(), hook.url)])
    sender.spike_rule = RULE
    with sessions.begin() as session:  # the first poll finds two weeks of back issues: published before, all seen today
        for days in range(14):
            add_story(session, NOW - timedelta(days=days, hours=1), vendors=["Dahua"], first_seen=NOW - timedelta(hours=1))
        for n in range(12):
            add_story(session, NOW - timedelta(minutes=n + 1), vendors=["Hikvision"], first_seen=NOW - timedelta(hours=1))
    assert detect_spikes(sender) == []

    later = Clock(NOW + timedelta(days=14))
    sender = make_sender(sessions, later, [(SlackRoute(), hook.url)])
    sender.spike_rule = RULE
    two_quiet_weeks(sessions, later.now)
    with sessions.begin() as session:
        for n in range(4):
            add_story(session, later.now - timedelta(minutes=n + 1), vendors=["Uniview"], countries=["GB"])
    assert detect_spikes(sender) == [] and sender.deliver_due().sent == 0 and hook.delivered == []


def test_the_next_digest_opens_with_the_spike(sessions, site):
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock = Clock(NOW)
        sender = make_sender(sessions, clock, [], mail=mail_channel(port), digest=DigestSpec(timezone=LONDON))
        sender.spike_rule = RULE
        two_quiet_weeks(sessions)
        busy_hikvision_day(sessions)
        relevant_story(sessions, sender, 1, when=NOW - timedelta(minutes=5))  # a tenth Hikvision story, owed to the digest
        assert {(s.dimension, s.value) for s in detect_spikes(sender)} == {("topic", TOPIC), ("vendor", "Hikvision"), ("country", "GB")}
        clock.now = NOW + timedelta(hours=19)  # 07:00 the next morning in London
        sender.plan_digests(date(2026, 11, 23))
        assert sender.deliver_due().sent == 1
        text = inbox.messages[0].get_body(("plain",)).get_content()
        html = inbox.messages[0].get_body(("html",)).get_content()
        lines = text.splitlines()
        assert lines[2] == "COVERAGE SPIKES"
        assert " * Hikvision: 10 stories on Sun 22 Nov against 0.5 a day" in lines
        assert text.index("COVERAGE SPIKES") < text.index("https://news1.example/story-1")
        assert "Coverage spikes" in html and html.index("Hikvision: 10 stories on Sun 22 Nov") < html.index("news1.example")

        clock.now += timedelta(days=1)  # the next digest does not repeat them
        sender.plan_digests(date(2026, 11, 24))
        assert sender.deliver_due().sent == 1
        assert "COVERAGE SPIKES" not in inbox.messages[1].get_body(("plain",)).get_content()
    finally:
        controller.stop()
    with sessions() as session:
        assert {(d.channel, d.status, d.digest_day) for d in session.scalars(select(SpikeDelivery))} == {("digest", "sent", "2026-11-23")}


def test_the_service_looks_for_spikes_on_its_own_schedule(sessions, site):
    clock = Clock(NOW)
    sender = make_sender(sessions, clock, [(SlackRoute(), Hook(site).url)])
    sender.spike_rule = SpikeRule(interval=120)
    scheduler = build_scheduler(SimpleNamespace(clock=clock), [], workers=1, sender=sender)  # no feeds: only the clock is read
    job = scheduler.get_job("spikes")
    assert job is not None and job.trigger.interval == timedelta(seconds=120)


# The coverage chart of the archive's search, on both stores.

DAYS = 10


@pytest.fixture
def charted(sessions):
    """Ten days of stories before NOW: Hikvision in GB every day (a ban), Dahua in US every other day (a removal);
    two stories on the last day; one off-topic story; articles with text, so that words find them."""
    with sessions.begin() as session:
        for days in range(DAYS):
            when = NOW - timedelta(days=days, hours=2)
            tagged = [(["Hikvision"], ["GB"], ["ban"])] + ([(["Dahua"], ["US"], ["removal"])] if days % 2 == 0 else [])
            for n, (vendors, countries, actions) in enumerate(tagged):
                story_id = add_story(session, when + timedelta(minutes=n), vendors=vendors, countries=countries)
                story = session.get(Story, story_id)
                story.actions = actions
                session.add(
                    Article(
                        url=f"{story.url}/a", original_url=story.url, title=f"{vendors[0]} cameras {actions[0]} day {days}",
                        site_name="Wire", text=f"Officials announced a {actions[0]} of {vendors[0]} cameras.", text_source="page",
                        content_hash=f"{story_id}", fetched_at=when, published_at=when, story_id=story_id,
                    )
                )  # fmt: skip
        add_story(session, NOW - timedelta(hours=1), vendors=["Hikvision"], countries=["GB"], relevant=False)
    return sessions


@pytest.fixture
def archive_client(charted, config, tmp_path, database_url):
    from fastapi.testclient import TestClient

    from monitor.embed import SentenceTransformerEmbedder
    from monitor.web.app import create_app

    from .conftest import archive_settings

    app = create_app(sessions=charted, embedder=SentenceTransformerEmbedder(), config=config, settings=archive_settings(tmp_path, database_url))
    with TestClient(app) as client:  # the model loads on first use: these searches never use it
        yield client


def coverage_of(client, **params) -> dict:
    response = client.get("/api/coverage", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_chart_counts_every_story_a_search_finds_per_day(archive_client):
    chart = coverage_of(archive_client)
    assert chart["unit"] == "day" and len(chart["bins"]) == DAYS
    assert chart["bins"][0] == (NOW - timedelta(days=DAYS - 1)).date().isoformat() and chart["until"] == NOW.date().isoformat()
    assert chart["total"] == [2 if (DAYS - 1 - i) % 2 == 0 else 1 for i in range(DAYS)]
    assert [(s["value"], s["stories"]) for s in chart["series"]] == [("Hikvision", 10), ("Dahua", 5)] and chart["others"] == 0

    by_country = coverage_of(archive_client, split="country", vendor="Dahua")
    assert sum(by_country["total"]) == 5 == archive_client.get("/api/search", params={"vendor": "Dahua"}).json()["total"]
    assert [s["value"] for s in by_country["series"]] == ["US"]

    words = coverage_of(archive_client, q="removal", mode="words", split="action")
    assert sum(words["total"]) == archive_client.get("/api/search", params={"q": "removal", "mode": "words"}).json()["total"] == 5
    assert [s["value"] for s in words["series"]] == ["removal"]

    week = coverage_of(archive_client, since=(NOW - timedelta(days=2)).date().isoformat(), until=NOW.date().isoformat())
    assert week["bins"] == [(NOW - timedelta(days=d)).date().isoformat() for d in (2, 1, 0)] and week["total"] == [2, 1, 2]
    assert coverage_of(archive_client, relevant="false")["total"][-1] == 3  # the off-topic story too
    assert archive_client.get("/api/coverage", params={"split": "source"}).status_code == 422


def test_the_search_page_draws_the_chart_inline(archive_client):
    page = archive_client.get("/", params={"split": "country"})
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    figure = page.text[page.text.index('<figure class="coverage"') : page.text.index("</figure>")]
    assert figure.count('<rect class="bar"') == DAYS
    assert figure.count('class="series s') == 2 and 'data-value="GB"' in figure and 'data-value="US"' in figure
    assert "style=" not in figure and "http" not in figure  # nothing inline for the CSP to refuse, nothing fetched
    assert '<option value="country" selected>' in figure and "United Kingdom" in figure

    filtered = archive_client.get("/", params={"vendor": "Dahua", "split": "vendor"}).text  # Dahua: every other day, over 9 days
    assert filtered.count('<rect class="bar"') == DAYS - 1 and 'data-value="Hikvision"' not in filtered

    empty = archive_client.get("/", params={"q": "nothing-matches-this", "mode": "words"}).text
    assert '<figure class="coverage"' not in empty


def test_long_spans_are_charted_by_week_and_by_month():
    from monitor.store.coverage import DailyCounts
    from monitor.web.chart import coverage_series, layout

    first = date(2026, 1, 1)
    counts = DailyCounts(total={first + timedelta(days=d): 1 for d in range(0, 300, 3)}, by_value={"Hikvision": {first: 1}})
    weekly = coverage_series(counts, split="vendor", since=None, until=None)
    assert weekly["unit"] == "week" and weekly["bins"][0] == "2025-12-29" and sum(weekly["total"]) == 100
    monthly = coverage_series(counts, split="vendor", since=date(2023, 1, 1), until=None)
    assert monthly["unit"] == "month" and monthly["bins"][0] == "2023-01-01" and monthly["bins"][-1] == "2026-10-01"
    drawn = layout(monthly)
    assert len(drawn.bars) == len(monthly["bins"]) and drawn.top == 20 and drawn.lines[0].dots == []  # 11 stories in the busiest month
    assert layout(coverage_series(DailyCounts(), split="vendor", since=None, until=None)) is None
