"""Adaptive polling: the interval follows how often a feed publishes, within its bounds, never sooner than the
publisher's hints or the host's politeness allow; the scheduler, the distributed leases and `monitor status` follow it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from monitor.cadence import choose_interval, host_floor, publication_rate
from monitor.specs import span
from monitor.cli import app
from monitor.config import ConfigError, Settings, load_config
from monitor.demo.server import LocalSite, Reply, Request
from monitor.domain import PollHint
from monitor.specs import FeedSpec
from monitor.feeds import parse_feed
from monitor.fetch import Fetcher, build_client, cache_hint
from monitor.hostpool import HostPool
from monitor.deps import Deps
from monitor.pipeline import poll_feed
from monitor.scheduler import build_scheduler, poll_and_follow
from monitor.store import leases
from monitor.store import polling
from monitor.store.models import Feed

from .conftest import NOW, Clock

HOUR, DAY = 3600.0, 86400.0
BOUNDS = (300.0, DAY)  # the settings' defaults: 5 min to 24 h
WATCHED = NOW - timedelta(days=30)
RSS = {"Content-Type": "application/rss+xml"}
SY = 'xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"'


def every(gap: timedelta, *, count: int, now: datetime = NOW) -> list[datetime]:
    return [now - gap * i for i in range(count)]


def interval(times, **changes):
    arguments = {"now": NOW, "watched_since": WATCHED, "start": 1800, "bounds": BOUNDS, "polls_per_item": 4} | changes
    return choose_interval(times, **arguments)


# The rule, without a clock: item times, hints, bounds and `now` in, an interval and its reason out.


def test_a_busy_feed_is_polled_often_and_a_quiet_one_seldom_within_the_bounds():
    busy = interval(every(timedelta(hours=2), count=84))  # 12 a day for a week
    assert busy.seconds == 1800 and busy.reason == "12 items/day → 30 min"
    quiet = interval([NOW - timedelta(days=1), NOW - timedelta(days=4), NOW - timedelta(days=6)])
    assert quiet.seconds == 64800 and quiet.reason == "0.3 items/day → 18 h"
    silent = interval([])
    assert silent.seconds == DAY and silent.reason == "quiet: 0 items in 7 days → 24 h"
    flood = interval(every(timedelta(minutes=10), count=1008), bounds=(900, DAY))
    assert flood.seconds == 900 and flood.reason == "144 items/day → 2 min, bounds 15 min–24 h"
    rare = interval([NOW - timedelta(days=2), NOW - timedelta(days=5)], bounds=(300, 6 * HOUR))
    assert rare.seconds == 6 * HOUR and "bounds 5 min–6 h" in rare.reason


def test_one_burst_does_not_swing_the_interval():
    steady = every(timedelta(hours=6), count=28)  # 4 a day
    burst = [NOW - timedelta(days=3, minutes=m) for m in range(60)]  # 60 items in one hour three days ago
    assert interval(steady).seconds == interval(steady + burst).seconds == 5400


def test_the_configured_interval_holds_until_two_days_are_seen():
    new = interval(every(timedelta(minutes=30), count=40), watched_since=NOW - timedelta(hours=20))
    assert new.seconds == 1800 and new.reason == "configured 30 min until 2 days are seen"
    dated = interval(every(timedelta(minutes=30), count=144), watched_since=NOW - timedelta(hours=1))
    assert dated.reason == "48 items/day → 8 min"  # a new feed whose items reach back three days
    assert publication_rate([], now=NOW, watched_since=NOW - timedelta(days=1, hours=23)) is None
    assert interval([], watched_since=NOW, bounds=(7200, DAY)).reason == "configured 30 min until 2 days are seen, bounds 2 h–24 h"
    assert interval([], adaptive=False, start=7200).reason == "configured 2 h, adaptive polling off"


def test_hints_are_floors_up_to_the_maximum():
    busy = every(timedelta(hours=2), count=84)
    ttl = interval(busy, hints=[PollHint("ttl", 3 * HOUR), PollHint("Cache-Control max-age", 600)])
    assert ttl.seconds == 3 * HOUR and ttl.reason == "ttl 3 h (rather than 12 items/day → 30 min)"
    assert interval(busy, hints=[PollHint("Cache-Control max-age", 600)]).seconds == 1800  # a shorter hint changes nothing
    weekly = interval(busy, hints=[PollHint("sy:updatePeriod", 7 * DAY)])
    assert weekly.seconds == DAY and weekly.reason.startswith("sy:updatePeriod 7 d, capped at 24 h")


def test_the_host_politeness_floor_is_above_every_bound():
    busy = every(timedelta(hours=2), count=84)
    polite = interval(busy, politeness=host_floor("news.example.org", 12, 300.0))
    assert polite.seconds == 3600
    assert polite.reason == "host politeness: 12 feeds on news.example.org, 300 s apart (rather than 12 items/day → 30 min)"
    assert interval([], politeness=host_floor("a.example", 400, 300.0)).seconds == 120_000  # past the 24 h maximum
    assert host_floor("a.example", 3, 0.0) is None


def test_durations_read_as_people_say_them():
    assert [span(s) for s in (45, 300, 2400, 3600, 6720, 90000, 183600)] == ["45 s", "5 min", "40 min", "1 h", "1 h 52 min", "25 h", "2 d 3 h"]


# The hints as the feed and its server give them.


def feed_document(channel_extra: str = "", namespaces: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0" {namespaces}><channel><title>t</title>{channel_extra}'
        "<item><title>a</title><link>http://example.org/a</link></item></channel></rss>"
    ).encode()


def test_ttl_and_sy_update_period_are_read_from_the_feed():
    hints = parse_feed(feed_document("<ttl>60</ttl>"), url="http://example.org/").hints
    assert hints == (PollHint("ttl", 3600.0),)
    sy = "<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>"
    assert parse_feed(feed_document(sy, SY), url="http://example.org/").hints == (PollHint("sy:updatePeriod", 43200.0),)
    hourly = parse_feed(feed_document("<sy:updatePeriod>hourly</sy:updatePeriod>", SY), url="http://example.org/").hints
    assert hourly == (PollHint("sy:updatePeriod", 3600.0),)
    nonsense = "<ttl>soon</ttl><sy:updatePeriod>fortnightly</sy:updatePeriod>"
    assert parse_feed(feed_document(nonsense, SY), url="http://example.org/").hints == ()


def test_cache_control_and_expires_are_read_from_the_headers():
    date = format_datetime(NOW, usegmt=True)
    assert cache_hint({"cache-control": "public, max-age=900"}, NOW) == PollHint("Cache-Control max-age", 900.0)
    assert cache_hint({"cache-control": "max-age=0"}, NOW) is None
    assert cache_hint({"cache-control": "no-cache, max-age=900"}, NOW) is None
    expires = format_datetime(NOW + timedelta(minutes=45), usegmt=True)
    assert cache_hint({"expires": expires, "date": date}, NOW + timedelta(days=3)) == PollHint("Expires", 2700.0)  # from Date
    assert cache_hint({"expires": expires}, NOW + timedelta(minutes=15)) == PollHint("Expires", 1800.0)  # from now
    assert cache_hint({"expires": expires, "cache-control": "max-age=60"}, NOW) == PollHint("Cache-Control max-age", 60.0)
    assert cache_hint({"expires": "0", "date": date}, NOW) is None
    assert cache_hint({"expires": format_datetime(NOW - timedelta(hours=1), usegmt=True), "date": date}, NOW) is None


# The bounds in feeds.yaml and the settings.


def test_feed_bounds_are_validated_with_their_line(tmp_path):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n"
        "  - name: A\n    url: https://a.example/rss\n    min_interval: 10m\n    max_interval: 2h\n"
        "  - name: B\n    url: https://b.example/rss\n    min_interval: 3h\n    max_interval: 1h\n"
        "topics:\n  - {name: t, description: d}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}:8: feeds.1.min_interval: min_interval 3 h is longer than max_interval 1 h"
    path.write_text(
        "feeds:\n  - name: A\n    url: https://a.example/rss\n    interval: 5m\n    min_interval: 10m\n"
        "  - {name: B, url: 'https://b.example/rss', max_interval: 1s}\n"
        "topics:\n  - {name: t, description: d}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).splitlines() == [
        f"{path}:4: feeds.0.interval: interval 5 min is shorter than min_interval 10 min",
        f"{path}:6: feeds.1.max_interval: an interval must be between 1 minute and 30 days",
    ]
    spec = FeedSpec(name="A", url="https://a.example/rss", min_interval="2h")  # the default interval is not checked
    assert (spec.interval, spec.min_interval, spec.max_interval) == (1800, 7200, None)


def test_global_bounds_are_validated():
    with pytest.raises(ValidationError, match="MONITOR_POLL_MIN_INTERVAL is longer"):
        Settings(poll_min_interval=7200, poll_max_interval=3600)
    with pytest.raises(ValidationError):
        Settings(poll_min_interval=10)


# The whole poll against a local site, on both stores, with the injected clock.


class HashEmbedder:
    """Unit vectors from each text's hash: articles are stored without loading a model (these tests are about time)."""

    dimension = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big")).normal(size=self.dimension) for t in texts]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def rss(site: LocalSite, name: str, times: list[datetime], channel_extra: str = "") -> bytes:
    items = "".join(
        f"<item><title>{name} item {i}</title><link>{site.url(f'/{name}/{i}.html')}</link>"
        f"<description>Report number {i} from {name}.</description><pubDate>{format_datetime(t, usegmt=True)}</pubDate></item>"
        for i, t in enumerate(times)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>{channel_extra}{items}</channel></rss>'.encode()


def conditional(body: bytes, headers: dict[str, str] | None = None):
    """A feed route that answers 304 to a request naming its ETag."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def answer(request: Request) -> Reply:
        extra = {"ETag": etag, **(headers or {})}
        if request.headers.get("if-none-match") == etag:
            return Reply(304, b"", extra)
        return Reply(200, body, {**RSS, **extra})

    return answer


@contextmanager
def polling_deps(sessions, settings, clock: Clock, *, host_delay: float = 0.0) -> Iterator[Deps]:
    """The pipeline's dependencies; the fetcher's waits between requests to one host are recorded, not slept, and
    its pages are read through a pool that does not space them either (the politeness floor reads the fetcher's delay)."""
    settings = settings.model_copy(update={"host_delay": host_delay})
    with build_client(settings) as client:
        fetcher = Fetcher(client, host_concurrency=4, host_delay=host_delay, sleep=lambda _seconds: None)
        with HostPool(Fetcher(client, host_concurrency=4, host_delay=0.0), 2) as pages:
            yield Deps(settings=settings, sessions=sessions, fetcher=fetcher, embedder=HashEmbedder(), scorers=[], clock=clock, page_pool=pages)


def add_feeds(sessions, specs: list[FeedSpec], *, since: datetime = WATCHED) -> dict[str, int]:
    with sessions.begin() as session:
        polling.sync_feeds(session, specs, now=since)
    with sessions() as session:
        return {f.name: f.id for f in polling.feeds_overview(session)}


def feed_row(sessions, feed_id: int) -> Feed:
    with sessions() as session:
        return session.get_one(Feed, feed_id)


def test_the_interval_shortens_for_a_busy_feed_and_lengthens_for_a_quiet_one(sessions, settings):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/busy.xml"] = conditional(rss(site, "busy", every(timedelta(hours=2), count=84)))
        site.routes["/quiet.xml"] = Reply(200, rss(site, "quiet", [NOW - timedelta(days=d) for d in (1, 4, 6)]), RSS)
        site.routes["/capped.xml"] = Reply(200, rss(site, "capped", [NOW - timedelta(days=d) for d in (1, 4, 6)]), RSS)
        ids = add_feeds(
            sessions,
            [
                FeedSpec(name="Busy", url=site.url("/busy.xml"), interval="2h"),
                FeedSpec(name="Quiet", url=site.url("/quiet.xml"), interval="30m"),
                FeedSpec(name="Capped", url=site.url("/capped.xml"), interval="30m", max_interval="6h"),
            ],
        )
        for feed_id in ids.values():
            assert poll_feed(feed_id, deps).ok
        busy, quiet, capped = (feed_row(sessions, ids[name]) for name in ("Busy", "Quiet", "Capped"))
        assert (busy.poll_interval, busy.poll_reason) == (1800, "12 items/day → 30 min")
        assert busy.next_due_at == NOW + timedelta(minutes=30)
        assert (quiet.poll_interval, quiet.poll_reason) == (64800, "0.3 items/day → 18 h")
        assert (capped.poll_interval, capped.poll_reason) == (21600, "0.3 items/day → 18 h, bounds 5 min–6 h")

        clock.now = NOW + timedelta(days=3)  # three days without a new item: the busy feed answers 304
        assert poll_feed(ids["Busy"], deps).not_modified
        later = feed_row(sessions, ids["Busy"])
        assert (later.poll_interval, later.poll_reason) == (3600, "6.0 items/day → 1 h")  # half the rate: twice the interval
        assert later.next_due_at == clock.now + timedelta(hours=1)


def test_the_publishers_hints_are_honoured_through_a_304(sessions, settings):
    clock = Clock()
    busy = every(timedelta(hours=2), count=84)
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/ttl.xml"] = conditional(rss(site, "ttl", busy, "<ttl>180</ttl>"))
        site.routes["/cached.xml"] = conditional(rss(site, "cached", busy), {"Cache-Control": "public, max-age=5400"})
        ids = add_feeds(sessions, [FeedSpec(name="TTL", url=site.url("/ttl.xml")), FeedSpec(name="Cached", url=site.url("/cached.xml"))])
        for feed_id in ids.values():
            poll_feed(feed_id, deps)
        ttl, cached = feed_row(sessions, ids["TTL"]), feed_row(sessions, ids["Cached"])
        assert (ttl.poll_interval, ttl.poll_reason) == (10800, "ttl 3 h (rather than 12 items/day → 30 min)")
        assert ttl.poll_hints == [["ttl", 10800.0]]
        assert (cached.poll_interval, cached.poll_reason) == (5400, "Cache-Control max-age 1 h 30 min (rather than 12 items/day → 30 min)")

        clock.now = NOW + timedelta(hours=3)
        assert poll_feed(ids["TTL"], deps).not_modified  # the document is not read again: its ttl is remembered
        assert feed_row(sessions, ids["TTL"]).poll_reason.startswith("ttl 3 h")


def test_a_host_is_never_polled_faster_than_its_politeness_allows(sessions, settings):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock, host_delay=900.0) as deps:
        specs = []
        for n in range(4):
            site.routes[f"/{n}.xml"] = Reply(200, rss(site, f"f{n}", every(timedelta(hours=2), count=84)), RSS)
            specs.append(FeedSpec(name=f"Feed {n}", url=site.url(f"/{n}.xml"), min_interval="5m"))
        ids = add_feeds(sessions, specs)
        poll_feed(ids["Feed 0"], deps)
    row = feed_row(sessions, ids["Feed 0"])
    host = site.base_url.removeprefix("http://")
    assert row.poll_interval == 3600  # four feeds, 15 min apart, rather than the 30 min its 12 items a day ask
    assert row.poll_reason == f"host politeness: 4 feeds on {host}, 900 s apart (rather than 12 items/day → 30 min)"


def test_with_adaptive_polling_off_a_feed_keeps_its_interval_yet_honours_its_hints(sessions, settings, monkeypatch):
    monkeypatch.setenv("MONITOR_POLL_ADAPTIVE", "false")
    assert Settings().poll_adaptive is False
    clock = Clock()
    fixed = settings.model_copy(update={"poll_adaptive": False})
    with LocalSite() as site, polling_deps(sessions, fixed, clock) as deps:
        site.routes["/busy.xml"] = Reply(200, rss(site, "busy", every(timedelta(hours=2), count=84)), RSS)
        site.routes["/ttl.xml"] = Reply(200, rss(site, "ttl", every(timedelta(hours=2), count=84), "<ttl>240</ttl>"), RSS)
        ids = add_feeds(sessions, [FeedSpec(name="Busy", url=site.url("/busy.xml"), interval="2h"), FeedSpec(name="TTL", url=site.url("/ttl.xml"))])
        for feed_id in ids.values():
            poll_feed(feed_id, deps)
    busy, ttl = feed_row(sessions, ids["Busy"]), feed_row(sessions, ids["TTL"])
    assert (busy.poll_interval, busy.poll_reason) == (7200, "configured 2 h, adaptive polling off")
    assert (ttl.poll_interval, ttl.poll_reason) == (14400, "ttl 4 h (rather than configured 30 min, adaptive polling off)")


def test_failures_back_off_from_the_adaptive_interval(sessions, settings):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/busy.xml"] = Reply(200, rss(site, "busy", every(timedelta(hours=2), count=84)), RSS)
        feed_id = add_feeds(sessions, [FeedSpec(name="Busy", url=site.url("/busy.xml"), interval="2h")])["Busy"]
        poll_feed(feed_id, deps)
        site.routes["/busy.xml"] = Reply(500, b"down", {"Content-Type": "text/plain"})
        for failures, wait in ((1, 1800), (2, 3600), (3, 7200)):
            clock.now = feed_row(sessions, feed_id).next_due_at
            assert not poll_feed(feed_id, deps).ok
            row = feed_row(sessions, feed_id)
            assert (row.error_count, row.next_due_at) == (failures, clock.now + timedelta(seconds=wait))
        assert row.poll_interval == 1800  # a failure does not change the interval itself


def test_a_changed_bound_in_feeds_yaml_takes_effect_at_once(sessions, settings):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/quiet.xml"] = Reply(200, rss(site, "quiet", [NOW - timedelta(days=d) for d in (1, 4, 6)]), RSS)
        spec = FeedSpec(name="Quiet", url=site.url("/quiet.xml"))
        feed_id = add_feeds(sessions, [spec])["Quiet"]
        poll_feed(feed_id, deps)
        assert feed_row(sessions, feed_id).next_due_at == NOW + timedelta(hours=18)
        add_feeds(sessions, [spec.model_copy(update={"max_interval": 3600})], since=NOW + timedelta(minutes=5))
        row = feed_row(sessions, feed_id)
        assert (row.next_due_at, row.poll_interval, row.max_interval_seconds) == (NOW + timedelta(minutes=5), None, 3600)
        clock.now = row.next_due_at
        poll_feed(feed_id, deps)
        assert feed_row(sessions, feed_id).poll_interval == 3600


def test_the_schedulers_follow_the_feeds_row(sessions, settings):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/busy.xml"] = Reply(200, rss(site, "busy", every(timedelta(hours=2), count=84)), RSS)
        feed_id = add_feeds(sessions, [FeedSpec(name="Busy", url=site.url("/busy.xml"), interval="2h")], since=NOW)["Busy"]
        with sessions() as session:
            feeds = [f for f in polling.feeds_overview(session) if f.active]
        scheduler = build_scheduler(deps, feeds, workers=1)
        scheduler.start(paused=True)
        try:
            poll_and_follow(scheduler, feed_id, deps)  # the in-process job: its next run is the row's due time
            next_run = scheduler.get_job(f"feed-{feed_id}").next_run_time
        finally:
            scheduler.shutdown(wait=False)
    due = NOW + timedelta(minutes=30)
    assert due <= next_run <= due + timedelta(minutes=3)  # up to a tenth of the interval of jitter
    with sessions.begin() as session:  # distributed mode: the scheduler leases the feed only once it is due
        assert leases.lease_due_feeds(session, now=due - timedelta(seconds=1), seconds=600, token="early") == []
        assert leases.lease_due_feeds(session, now=due, seconds=600, token="due") == [feed_id]


def test_status_shows_each_feeds_interval_and_why(sessions, settings, database_url, tmp_path):
    clock = Clock()
    with LocalSite() as site, polling_deps(sessions, settings, clock) as deps:
        site.routes["/busy.xml"] = Reply(200, rss(site, "busy", every(timedelta(hours=2), count=84)), RSS)
        site.routes["/ttl.xml"] = Reply(200, rss(site, "ttl", every(timedelta(hours=2), count=84), "<ttl>60</ttl>"), RSS)
        specs = [
            FeedSpec(name="Busy", url=site.url("/busy.xml"), interval="2h"),
            FeedSpec(name="Hinted", url=site.url("/ttl.xml")),
            FeedSpec(name="Waiting", url=site.url("/never.xml"), interval="45m"),
        ]
        ids = add_feeds(sessions, specs)
        poll_feed(ids["Busy"], deps)
        poll_feed(ids["Hinted"], deps)
    config = tmp_path / "feeds.yaml"
    config.write_text("topics:\n  - {name: t, description: d}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["status", "--database", database_url, "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line.replace("┃", "│") for line in result.output.splitlines() if line.replace("┃", "│").count("│") > 5]
    rows = {cells[0]: cells for cells in ([cell.strip() for cell in line.split("│")[1:-1]] for line in lines)}
    header = rows["feed"]
    assert header[header.index("interval") + 1] == "why"
    shown = {name: tuple(rows[name][header.index(column)] for column in ("interval", "why")) for name in ("Busy", "Hinted", "Waiting")}
    assert shown == {
        "Busy": ("30 min", "12 items/day → 30 min"),
        "Hinted": ("1 h", "ttl 1 h (rather than 12 items/day → 30 min)"),
        "Waiting": ("45 min", "configured; chosen at the first poll"),
    }
