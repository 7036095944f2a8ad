"""The time-to-alert bench's two modes beyond fixed intervals (issue 15), through the product's own paths:

- adaptive polling learns each feed's rate from the items it has stored, so a run first lives through a warm-up of
  simulated days of publishing (filler items, polled as the product would poll them, not measured);
- WebSub push: the outlets with a hub name it in their feed's Link header, the archive's app is served on loopback, a
  poll finds the hub and the upkeep subscribes there; each item is then pushed by the local hub, signed, to the app's
  /websub/<id> callback, kept, and read by the pipeline when the scheduler's job for pushed bodies next looks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.config import Config
from monitor.demo.server import LocalSite, Reply, Request
from monitor.demo.site import SiteArticle
from monitor.demo.websub_hub import Hub, serving
from monitor.deps import Deps
from monitor.pipeline import poll_feed
from monitor.push import Upkeep, drain_pushes, upkeep
from monitor.scheduler import PUSH_DRAIN_INTERVAL
from monitor.web.app import create_app

# the adaptive rule trusts a feed's rate after two whole days of its items; three hours more let every feed (the slowest
# is polled every 2 hours until then) take up the interval the rule gives it before the measured hours begin
WARM_UP_DAYS = 2.125
PLAYERS = ("Ansel", "Birte", "Cosmo", "Dagny", "Elio", "Fenna", "Gideon", "Hedda", "Ivo", "Jorun", "Kasimir", "Liv")


def warm_up(rates: list[float], *, start: datetime, days: float, rng: random.Random) -> list[list[SiteArticle]]:
    """Each outlet's items over the days before `start`, at the times of a Poisson process of its rate.

    They are results of a chess club's games: off every topic and naming no vendor or country, so they make no alert
    and no story that an item of the measured hours could join (news made of the demo site's sentences did: a fifth
    of the measured items went into stories begun in the warm-up, and their alerts went uncounted). The labelled
    items stay for the measured hours."""
    outlets = []
    for per_hour in rates:
        moment, articles = start - timedelta(days=days), []
        while True:
            moment += timedelta(hours=rng.expovariate(per_hour))
            if moment >= start:
                break
            white, black = rng.sample(PLAYERS, 2)
            moves, board = rng.randint(18, 90), rng.randint(1, 12)
            result = rng.choice((f"{white} won", f"{black} won", "a draw"))
            text = f"Round {len(articles) + 1} at the chess club: {white} and {black} played on board {board}; {result} after {moves} moves."
            paragraphs = [text, f"The club meets again tomorrow evening. {white} has {rng.randint(0, 9)} points, {black} {rng.randint(0, 9)}."]
            articles.append(SiteArticle(f"chess-{len(articles):04d}", ["news"], f"Chess club, round {len(articles) + 1}", "Club", moment, text, paragraphs))
        outlets.append(articles)
    return outlets


@dataclass(frozen=True)
class PushRun:
    """What the push path needs of one bench run."""

    deps: Deps  # the pipeline's; its clock is the bench's simulated one, with a settable `now`
    config: Config
    sites: list[LocalSite]  # each outlet's site, its feed at /feed.xml
    feed_ids: list[int]  # each outlet's feed row
    hubbed: list[int]  # the outlets that name a hub
    seed: int


def advertised(feed: Callable[[Request], Reply], hub: str, topic: str) -> Callable[[Request], Reply]:
    """The feed's route, its answers naming the hub and the topic in a Link header, as a publisher with a hub does."""

    def route(request: Request) -> Reply:
        reply = feed(request)
        return Reply(reply.status, reply.body, {**reply.headers, "Link": f'<{hub}>; rel="hub", <{topic}>; rel="self"'})

    return route


@contextmanager
def push_path(run: PushRun) -> Iterator[Callable[[int, bytes], None]]:
    """The archive's app on loopback and a local hub, each hubbed feed subscribed through the product's upkeep; yields
    the function that pushes an outlet's feed document through the hub and has the pipeline read it, once the clock
    has moved on by the wait for the scheduler's job that reads pushed bodies (it looks every PUSH_DRAIN_INTERVAL)."""
    deps, clock, rng = run.deps, run.deps.clock, random.Random(run.seed)
    app = create_app(sessions=deps.sessions, embedder=deps.embedder, config=run.config, settings=deps.settings, clock=clock)
    with Hub(max_lease=deps.settings.websub_lease) as hub, serving(app) as archive_url:
        deps = replace(deps, settings=deps.settings.model_copy(update={"public_url": archive_url}))
        topics = {}
        for index in run.hubbed:
            site = run.sites[index]
            topics[index] = site.url("/feed.xml")
            site.routes["/feed.xml"] = advertised(site.routes["/feed.xml"], hub.url, topics[index])
            if not poll_feed(run.feed_ids[index], deps).ok:  # the poll that finds the hub
                raise RuntimeError(f"the first poll of {topics[index]} failed")
        asked = upkeep(Upkeep(deps.settings, deps.sessions, deps.fetcher, clock)).get("subscribe", 0)
        if asked != len(topics) or not all(v.confirmed for v in hub.wait_verifications(len(topics))):
            raise RuntimeError("the feeds with a hub were not all subscribed")

        def push(index: int, body: bytes) -> None:
            answers = hub.publish(topics[index], body)
            if [answer.status_code for answer in answers] != [202]:
                raise RuntimeError(f"the callback did not take the push of {topics[index]}: {answers}")
            clock.now += timedelta(seconds=rng.uniform(0, PUSH_DRAIN_INTERVAL))
            drain_pushes(deps, feed_id=run.feed_ids[index])

        yield push
