"""Time to alert: outlets publishing at random times on a live local site, the real pipeline and sender, and the time
from each story's first appearance in its feed to its Slack post (a local webhook), p50 and p95 per polling mode.

Hours are simulated. Each outlet publishes as a Poisson process at its own rate; the clock that the pipeline, the
sender and the site read is moved from one poll to the next, so the hours between polls cost nothing, while each
poll's own work (fetch the feed and pages politely, extract, embed, score, place, store, wake the sender, post to
Slack at its pace) runs for real and is counted in real seconds. A feed is polled when its row says it is due (plus
the scheduler's jitter), as the scheduler does, so a mode changes only how feeds are configured and fed:

- `fixed`: each feed at its interval from feeds.yaml;
- `adaptive`: each feed at the interval the adaptive rule (monitor/cadence.py) gives it from the items it has stored,
  after a warm-up of two simulated days (and three hours) of publishing before the measured hours (polled, not measured);
- `push`: outlets with a WebSub hub push each new item when published, through a local hub, the archive's callback
  over HTTP (signature checked, body kept) and the pipeline's reading of pushed bodies; their feeds are still polled
  at their intervals (the fall-back). See bench/latency_modes.py.

`python -m bench.latency [HOURS [MODE ...]]` runs it alone (every mode, or those named).
"""

from __future__ import annotations

import heapq
import random
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from bench.latency_modes import WARM_UP_DAYS, PushRun, push_path, warm_up
from monitor.classify import Labelled, TopicScorer, read_labelled
from monitor.config import LOOPBACK_NETWORKS, Config, Settings, load_config
from monitor.dedup import Deduper, canonical_url
from monitor.demo.server import LocalSite, Reply, Request
from monitor.demo.site import HTML, RSS, SiteArticle, render_page, render_rss
from monitor.delivery import Sender, SlackChannel
from monitor.deps import Deps
from monitor.specs import FeedSpec, Outputs, SlackRoute
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.hostpool import HostPool
from monitor.notify.slack import SlackWebhook
from monitor.pipeline import poll_feed
from monitor.scheduler import MAX_JITTER, DeliveryLoop
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, ArticleTopic, Delivery, Story, StoryTopic

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)  # a Monday morning; nothing depends on the day the bench runs
HOURS = 8.0
SEED = 15
RELEVANT_SHARE = 0.75  # of the items published: the bench measures alerts, so most are on the topic
FEED_ITEMS = 30  # the newest items a feed lists
LINK = re.compile(r"<(https?://[^|>]+)\|")


@dataclass(frozen=True)
class Outlet:
    name: str
    per_hour: float  # mean items published an hour
    interval: float  # the feed's interval in feeds.yaml, seconds
    hub: bool = False  # advertises a WebSub hub: the push mode's outlets


OUTLETS = (
    Outlet("Wire", 6.0, 900, hub=True),
    Outlet("Daily", 3.0, 1800),
    Outlet("Tech Policy", 1.5, 1800, hub=True),
    Outlet("Security Trade", 0.75, 3600),
    Outlet("Regional", 0.5, 7200),
)


@dataclass(frozen=True)
class Mode:
    """How one run configures its feeds, whether hubs push, and how many days it lives through before it measures."""

    name: str
    feed: Callable[[Outlet, str], FeedSpec]  # the outlet's feed as feeds.yaml would give it, at this URL
    push: Callable[[PushRun], AbstractContextManager[Callable[[int, bytes], None]]] | None = None  # opens the push path
    settings: dict = field(default_factory=dict)  # MONITOR_* settings the mode changes
    warm_up_days: float = 0.0


def fixed_feed(outlet: Outlet, url: str) -> FeedSpec:
    return FeedSpec(name=outlet.name, url=url, interval=outlet.interval)


# Adaptive polling (issue 15, item 2): the feeds are given as for `fixed` (their configured interval is where the rule
# starts, its bounds MONITOR_POLL_MIN/MAX_INTERVAL) and the setting turns the rule on; the rule sets each row's next
# due time, which the bench follows. It trusts a feed's rate only after two whole days: hence the warm-up.
ADAPTIVE: Callable[[Outlet, str], FeedSpec] = fixed_feed
ADAPTIVE_SETTINGS: dict = {"poll_adaptive": True}
# WebSub (issue 15, item 3): the push path, opened once a run's pipeline is built. The bench pushes each item of an
# outlet with a hub at the moment it is published; the outlets' feeds go on being polled at their intervals.
PUSH = push_path


def modes() -> list[Mode]:
    return [
        Mode("fixed", fixed_feed, settings={"poll_adaptive": False}),
        Mode("adaptive", ADAPTIVE, settings=ADAPTIVE_SETTINGS, warm_up_days=WARM_UP_DAYS),
        Mode("push", fixed_feed, push=PUSH, settings={"poll_adaptive": False}),
    ]


class SimClock:
    """The simulated time that the pipeline, the sender and the site read; the bench moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Published:
    outlet: int
    article: SiteArticle
    on_topic: bool  # as labelled


def schedule(outlets: tuple[Outlet, ...], hours: float, rng: random.Random) -> list[Published]:
    """Each outlet's items at the times of a Poisson process of its rate, drawn from the labelled items."""
    items = read_labelled(ROOT / "eval" / "topic_labelled.jsonl")
    relevant = [item for item in items if item.relevant]
    other = [item for item in items if not item.relevant]
    rng.shuffle(relevant)
    rng.shuffle(other)
    published = []
    for index, outlet in enumerate(outlets):
        moment = START
        while True:
            moment += timedelta(hours=rng.expovariate(outlet.per_hour))
            if moment >= START + timedelta(hours=hours):
                break
            pool = relevant if (rng.random() < RELEVANT_SHARE and relevant) or not other else other
            item = pool.pop()
            published.append(Published(index, site_article(item, f"item-{len(published):04d}", moment), item.relevant))
    return published


def site_article(item: Labelled, slug: str, moment: datetime) -> SiteArticle:
    """A labelled item as an outlet's article, published at that moment."""
    paragraphs = [p for p in item.document.text.split("\n\n") if p.strip()] or [item.document.title]
    return SiteArticle(
        slug=slug, feeds=["news"], title=item.document.title, author="Staff", published=moment, summary=paragraphs[0], paragraphs=paragraphs
    )


def outlet_routes(outlet: Outlet, articles: list[SiteArticle], base_url: str, clock: SimClock) -> dict:
    """An outlet's pages, and its feed listing what it has published by the simulated time."""

    def feed(_request: Request) -> Reply:
        return Reply(200, feed_document(outlet, articles, base_url, clock.now), RSS)

    routes: dict = {"/robots.txt": Reply(200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"}), "/feed.xml": feed}
    for article in articles:
        url = f"{base_url}/news/{article.slug}.html"
        routes[f"/news/{article.slug}.html"] = Reply(200, render_page(article, url=url, related=[], site_name=outlet.name), HTML)
    return routes


def feed_document(outlet: Outlet, articles: list[SiteArticle], base_url: str, now: datetime) -> bytes:
    shown = sorted((a for a in articles if a.published <= now), key=lambda a: a.published, reverse=True)[:FEED_ITEMS]
    items = [{"article": a, "link": f"{base_url}/news/{a.slug}.html"} for a in shown]
    return render_rss("news", items, base_url=base_url, site_name=outlet.name)


class Webhook:
    """The local Slack webhook: each post with the real moment it arrived."""

    def __init__(self, site: LocalSite) -> None:
        self.posts: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        site.routes["/hook"] = self
        self.url = site.url("/hook")

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            self.posts.append((time.monotonic(), request.body.decode("utf-8", "replace")))
        return Reply(200, b"ok", {"Content-Type": "text/plain"})


@dataclass
class Run:
    """What one mode measured over the hours from START: seconds from each alerted story's first appearance to its post,
    real seconds of work, and the interval each feed was left at with why (its row's poll_interval and poll_reason)."""

    latencies: list[tuple[float, int, int]]  # (seconds to alert, the outlet, its feed's interval in force when it was found)
    polls: int
    pushes: int
    work: list[float]
    relevant: tuple[int, int] = (0, 0)  # articles found relevant, and the stories they made
    intervals: list[tuple[int, str]] = field(default_factory=list)  # each outlet's, at the end


def run_mode(mode: Mode, outlets: tuple[Outlet, ...], published: list[Published], *, hours: float, embedder, config: Config, seed: int) -> Run:
    rng = random.Random(seed)
    begin, end = START - timedelta(days=mode.warm_up_days), START + timedelta(hours=hours)
    clock = SimClock(begin)
    by_outlet = [[p.article for p in published if p.outlet == index] for index in range(len(outlets))]
    if mode.warm_up_days:
        earlier = warm_up([o.per_hour for o in outlets], start=START, days=mode.warm_up_days, rng=random.Random(seed + 1))
        by_outlet = [before + measured for before, measured in zip(earlier, by_outlet)]
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        engine = make_engine(f"sqlite:///{tmp}/latency.db")
        stack.callback(engine.dispose)
        upgrade(engine)
        sessions = session_factory(engine)
        sites = [stack.enter_context(LocalSite(host=f"127.0.0.{30 + index}")) for index in range(len(outlets))]
        hook = Webhook(stack.enter_context(LocalSite()))
        appeared = {}  # canonical URL -> (simulated moment it appeared, the outlet), of the items measured
        for index, (outlet, site) in enumerate(zip(outlets, sites)):
            site.routes.update(outlet_routes(outlet, by_outlet[index], site.base_url, clock))
            for article in by_outlet[index]:
                if article.published >= START:
                    appeared[canonical_url(f"{site.base_url}/news/{article.slug}.html")] = (article.published, index)
        with sessions.begin() as session:
            polling.sync_feeds(session, [mode.feed(o, s.url("/feed.xml")) for o, s in zip(outlets, sites)], now=begin)
        with sessions() as session:
            feed_ids = {feed.name: feed.id for feed in polling.feeds_overview(session)}
        settings = Settings(allowed_networks=list(LOOPBACK_NETWORKS), database_url=f"sqlite:///{tmp}/latency.db", **mode.settings)
        route = SlackRoute()
        sender = Sender(
            outputs=Outputs(slack=[route]), topics=[t.name for t in config.topics], sessions=sessions,
            slack=[SlackChannel(route, SlackWebhook(hook.url, timeout=10, max_wait=10, name=route.name))], mail=None, clock=clock,
        )  # fmt: skip
        loop = DeliveryLoop(sender)
        loop.start()
        stack.callback(loop.stop)
        client = stack.enter_context(build_client(settings))
        fetcher = Fetcher.from_settings(client, settings)
        pages = stack.enter_context(HostPool(fetcher, settings.fetch_workers))
        deps = Deps(
            settings=settings, sessions=sessions, fetcher=fetcher, embedder=embedder, scorers=topics_scorers(config.topics, embedder),
            clock=clock, page_pool=pages, deduper=Deduper(), on_relevant_story=sender.owe_story, wake_sender=loop.wake,
        )  # fmt: skip
        ids = [feed_ids[o.name] for o in outlets]
        hubbed = [index for index, outlet in enumerate(outlets) if outlet.hub]
        push = stack.enter_context(mode.push(PushRun(deps, config, sites, ids, hubbed, seed))) if mode.push else None
        events: list[tuple[datetime, int, str, int]] = []
        for index, outlet in enumerate(outlets):
            heapq.heappush(events, (begin + timedelta(seconds=rng.uniform(0, outlet.interval)), len(events), "poll", index))
            if push and outlet.hub:
                for article in by_outlet[index]:
                    heapq.heappush(events, (article.published, len(events), "push", index))
        run, alerted = Run([], 0, 0, []), set()
        in_force = [o.interval for o in outlets]  # each feed's interval since its last poll, as that poll chose it
        while events and events[0][0] < end:
            moment, _, kind, index = heapq.heappop(events)
            clock.now, measured = max(moment, clock.now), moment >= START  # a push may have moved the clock past `moment`
            outlet, feed_id, gap = outlets[index], ids[index], in_force[index]
            started, seen = time.monotonic(), len(hook.posts)
            if kind == "push":
                push(index, feed_document(outlet, by_outlet[index], sites[index].base_url, moment))  # moves the clock on
                run.pushes += measured
            else:
                poll_feed(feed_id, deps)
                run.polls += measured
                with sessions() as session:
                    every = in_force[index] = polling.feed_state(session, feed_id).current_interval
                    due = polling.feed_next_due(session, feed_id) or moment + timedelta(seconds=every)
                jitter = min(every * 0.1, MAX_JITTER)  # as the scheduler's: of the interval in force
                heapq.heappush(events, (max(due, moment) + timedelta(seconds=rng.uniform(0, jitter)), len(events), "poll", index))
            settle(sessions, clock)
            if measured:
                run.work.append(time.monotonic() - started)
            with sessions() as session:
                stories = set(session.scalars(select(Story.url)))  # a post's headline links; "also in" links other sources
            for arrived, body in hook.posts[seen:]:
                for url in LINK.findall(body):
                    key = canonical_url(url)
                    if key in appeared and key in stories and key not in alerted:
                        alerted.add(key)
                        first, where = appeared[key]
                        run.latencies.append(((clock.now - first).total_seconds() + arrived - started, where, gap))
        with sessions() as session:
            articles = session.scalar(
                select(func.count()).select_from(ArticleTopic).join(Article).where(ArticleTopic.relevant, Article.published_at >= START)
            )
            stories = session.scalar(select(func.count()).select_from(StoryTopic).join(Story).where(StoryTopic.relevant, Story.first_seen_at >= START))
            rows = {feed.id: feed for feed in polling.feeds_overview(session)}
        run.relevant = (articles or 0, stories or 0)
        run.intervals = [(rows[i].poll_interval or rows[i].interval_seconds, rows[i].poll_reason or "") for i in ids]
    return run


def topics_scorers(topics, embedder) -> list[TopicScorer]:
    """The shipped topic models, trained once into data/models as `make run` does (a minute the first time)."""
    return [
        TopicScorer(topic, embedder, training=[item for path in topic.training for item in read_labelled(path)], cache_dir=ROOT / "data" / "models")
        for topic in topics
    ]


def settle(sessions, clock: SimClock, *, timeout: float = 120.0) -> None:
    """Until the sender has posted every alert that is due (it was woken by the commits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            pending = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "pending", Delivery.due_at <= clock.now, Delivery.channel == "slack")
            )
        if not pending:
            return
        time.sleep(0.02)
    raise TimeoutError("the sender did not post the alerts that are due")


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[94]


def main(hours: float = HOURS, names: tuple[str, ...] = ()) -> dict:
    """The figures of every mode (or of those named)."""
    config = load_config(ROOT / "feeds.yaml")
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    rng = random.Random(SEED)
    published = schedule(OUTLETS, hours, rng)
    on_topic = sum(p.on_topic for p in published)
    results: dict = {"hours": hours, "outlets": len(OUTLETS), "published": len(published), "on_topic": on_topic, "modes": {}}
    for mode in modes():
        if names and mode.name not in names:
            continue
        run = run_mode(mode, OUTLETS, published, hours=hours, embedder=embedder, config=config, seed=SEED)
        by_outlet = []
        for index, (interval, reason) in enumerate(run.intervals):
            these = [(latency, gap) for latency, where, gap in run.latencies if where == index]
            by_outlet.append(
                {"alerts": len(these), "p50_p95_s": quantiles([x for x, _ in these]), "within": within(these), "interval_s": interval, "reason": reason}
            )
        results["modes"][mode.name] = {
            "alerts": len(run.latencies),
            "p50_p95_s": quantiles([latency for latency, _, _ in run.latencies]),
            "within": within([(latency, gap) for latency, _, gap in run.latencies]),
            "by_outlet": by_outlet,
            "warm_up_days": mode.warm_up_days,
            "polls": run.polls,
            "pushes": run.pushes,
            "work_p50_s": statistics.median(run.work) if run.work else 0.0,
            "relevant_articles_stories": run.relevant,
        }
    return results


def within(latencies: list[tuple[float, int]]) -> int:
    """How many alerts came within half the interval in force plus 30 s (issue 15's target for the median)."""
    return sum(latency <= gap / 2 + 30 for latency, gap in latencies)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def report(result: dict) -> None:
    rates = ", ".join(f"{o.name} {o.per_hour:g}/h every {_minutes(o.interval)}" + (" (hub)" if o.hub else "") for o in OUTLETS)
    print(
        f"time to alert: {result['outlets']} outlets publishing at random (Poisson: {rates}), {result['hours']:g} simulated hours, "
        f"{result['published']} items ({result['on_topic']} labelled on the topic); from a story's first appearance in its feed to its Slack post"
    )
    for name, mode in result["modes"].items():
        p50, p95 = mode["p50_p95_s"]
        warm = f"after {mode['warm_up_days']:g} days of warm-up; " if mode["warm_up_days"] else ""
        print(
            f"  {name:9} {mode['alerts']} alerts: p50 {_minutes(p50)}, p95 {_minutes(p95)}, {mode['within']} within half the interval + 30 s "
            f"({warm}{mode['polls']} polls, {mode['pushes']} pushes; real work per poll or push, posts included: p50 {mode['work_p50_s']:.1f} s; "
            "{} articles found relevant in {} stories)".format(*mode["relevant_articles_stories"])
        )
        for outlet, line in zip(OUTLETS, mode["by_outlet"]):
            q50, q95 = line["p50_p95_s"]
            alerts = f"p50 {_minutes(q50)}, p95 {_minutes(q95)}, {line['within']} within half + 30 s" if line["alerts"] else "none"
            print(
                f"    {outlet.name:15} {outlet.per_hour:4g}/h {line['alerts']:3} alerts: {alerts}; left polled every {_minutes(line['interval_s'])} "
                f"({line['reason'] or 'not polled'}), half that + 30 s: {_minutes(line['interval_s'] / 2 + 30)}"
            )


if __name__ == "__main__":
    import sys

    report(main(*map(float, sys.argv[1:2]), names=tuple(sys.argv[2:])))
