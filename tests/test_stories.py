"""One story, once: copies, near-duplicates and rewrites fold into stories; look-alike events stay apart."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, select

from monitor.dedup import Deduper, Incoming, content_hash, signature
from monitor.demo.server import LocalSite, Reply
from monitor.domain import FeedSpec
from monitor.passes import run_pass
from monitor.placement import load_deduper
from monitor.store import repository as repo
from monitor.store.views import export_rows
from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.story_eval import evaluate_stories, read_story_items

from .conftest import NOW, ROOT, Clock
from .test_pipeline import HTML, RSS, pipeline, rss

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
STORY_ITEMS = {json.loads(line)["id"]: json.loads(line) for line in (ROOT / "eval" / "stories.jsonl").read_text(encoding="utf-8").splitlines()}


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def incoming(key, text, vector, when=T0, **tags) -> Incoming:
    return Incoming(key, content_hash(text), signature(text), vector, when, **{k: frozenset(v) for k, v in tags.items()})


def test_short_texts_never_merge_on_emptiness():
    deduper = Deduper()
    first = incoming(1, "Hikvision", unit(1))
    deduper.remember(first, deduper.place(first), story=1)
    second = incoming(2, "Hikvision", unit(2))
    placement = deduper.place(second)
    assert second.signature is None and placement.duplicate_of is None and placement.story is None


def test_same_text_and_truncated_copy_are_copies_of_the_original():
    text = STORY_ITEMS["s01-a"]["text"]
    deduper = Deduper()
    original = incoming(1, text, unit(1))
    deduper.remember(original, deduper.place(original), story=10)
    exact = deduper.place(incoming(2, text.upper().replace("\n", " "), unit(2)))
    assert (exact.duplicate_of, exact.copy_kind, exact.story) == (1, "text", 10)
    truncated = " ".join(text.split("\n\n")[:2]) + " Continue reading..."
    near = deduper.place(incoming(3, "Home | World\n" + truncated, unit(3), when=T0 + timedelta(hours=3)))
    assert (near.duplicate_of, near.copy_kind, near.story) == (1, "near", 10)


def test_look_alike_events_in_two_countries_stay_apart():
    deduper = Deduper()
    vector = unit(5)
    uk = incoming(1, "x", vector, countries={"GB"}, vendors={"Hikvision"}, actions={"removal"})
    deduper.remember(uk, deduper.place(uk), story=1)
    au = incoming(2, "y", vector, countries={"AU"}, vendors={"Hikvision"}, actions={"removal"})
    assert deduper.place(au).story is None
    later = incoming(3, "z", vector, when=T0 + timedelta(days=10), countries={"GB"})
    assert deduper.place(later).story is None  # a follow-up weeks later is a new story


def at_cosine(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    other = unit(seed)
    other -= (other @ vector) * vector
    return cosine * vector + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)


def test_reports_of_one_event_fold_though_the_first_names_no_vendor():
    deduper = Deduper()
    vector = unit(7)
    first = incoming(1, "a", vector, countries={"NL"}, actions={"removal"})
    deduper.remember(first, deduper.place(first), story=1)
    named = incoming(2, "b", at_cosine(vector, 0.7, 8), when=T0 + timedelta(days=1), countries={"NL"}, vendors={"Hikvision"}, actions={"removal"})
    assert deduper.place(named).story == 1
    later = incoming(3, "c", at_cosine(vector, 0.75, 9), when=T0 + timedelta(days=5), actions={"removal"})
    assert deduper.place(later).story == 1  # a follow-up within the week, its tags agreeing
    unrelated = incoming(4, "d", at_cosine(vector, 0.75, 10), when=T0 + timedelta(days=5), actions={"investigation"})
    assert deduper.place(unrelated).story is None


def test_two_events_in_one_country_stay_apart():
    deduper = Deduper()
    vector = unit(11)
    drones = incoming(1, "a", vector, countries={"NL"}, vendors={"DJI"}, actions={"ban"})
    deduper.remember(drones, deduper.place(drones), story=1)
    cameras = incoming(2, "b", at_cosine(vector, 0.85, 12), when=T0 + timedelta(days=2), countries={"NL"}, vendors={"Hikvision"}, actions={"ban"})
    assert deduper.place(cameras).story is None


def test_story_folding_on_the_labelled_groups(embedder, config):
    from monitor.tags import Tagger

    report = evaluate_stories(read_story_items(ROOT / "eval" / "stories.jsonl"), embedder, Tagger(config.topics[0]))
    same, copy = report["same_story"], report["copy"]
    assert same["monitor"]["precision"] >= 0.95 and same["monitor"]["recall"] >= 0.9, report
    assert copy["monitor"]["f1"] > max(copy["url_only"]["f1"], copy["exact_hash"]["f1"]) + 0.5, report


def wire_site(site: LocalSite, published: datetime = NOW - timedelta(hours=26)) -> dict[str, str]:
    """One UK story in four feeds (two wire copies with tracking links, a rewrite, a truncated copy) and an Australian look-alike."""
    original, rewrite, australia = STORY_ITEMS["s01-a"], STORY_ITEMS["s01-b"], STORY_ITEMS["s04-a"]
    truncated = "\n\n".join(original["text"].split("\n\n")[:2]) + "\n\nContinue reading..."

    def page(title: str, text: str, furniture: str) -> bytes:
        body = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
        return f"<html><body><nav>{furniture}</nav><article><h1>{title}</h1>{body}</article><footer>Advertisement</footer></body></html>".encode()

    pages = {
        "/wire/uk.html": page(original["title"], original["text"], "Meridian | World"),
        "/herald/uk.html": page(original["title"], original["text"], "Evening Herald | News | Sport"),
        "/ledger/uk.html": page(rewrite["title"], rewrite["text"], "The Daily Ledger"),
        "/asia/uk.html": page("UK moves against Chinese surveillance cameras", truncated, "Asia Business Daily"),
        "/wire/au.html": page(australia["title"], australia["text"], "Meridian | World"),
    }
    site.routes.update({path: Reply(200, body, HTML) for path, body in pages.items()})
    feeds = {
        "wire": [(original["title"], site.url("/wire/uk.html?utm_source=wire"), "s"), (australia["title"], site.url("/wire/au.html"), "s")],
        "herald": [("Britain halts Chinese cameras", site.url("/herald/uk.html?utm_medium=rss&utm_campaign=x"), "s")],
        "ledger": [(rewrite["title"], site.url("/ledger/uk.html"), "s")],
        "asia": [("UK moves against Chinese cameras", site.url("/asia/uk.html"), "s")],
    }
    for name, items in feeds.items():
        site.routes[f"/{name}.xml"] = Reply(200, rss(items, published), RSS)
    return {name: site.url(f"/{name}.xml") for name in feeds}


def sync(sessions, feeds, now: datetime = NOW):
    with sessions.begin() as session:
        repo.sync_feeds(session, [FeedSpec(name=n, url=u, interval=3600) for n, u in feeds.items()], now=now)
        return repo.active_feed_ids(session)


def test_one_story_four_sources_and_a_separate_look_alike(sessions, settings, embedder, config):
    alerts = []
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        deps.on_relevant_story = lambda session, story_id, topic: alerts.append((story_id, topic))
        feed_ids = sync(sessions, wire_site(site))
        for feed_id in feed_ids:  # one feed at a time, as arrivals spread over a morning
            run_pass([feed_id], deps)
    with sessions() as session:
        stories = {s.id: s for s in session.scalars(select(Story))}
        articles = list(session.scalars(select(Article)))
        relevant = list(session.scalars(select(StoryTopic).where(StoryTopic.relevant)))
    assert len(articles) == 5 and len(stories) == 2
    uk = [a for a in articles if "/uk.html" in a.url]
    assert len({a.story_id for a in uk}) == 1
    uk_story = stories[uk[0].story_id]
    assert uk_story.article_count == 4 and "GB" in uk_story.countries
    copies = {a.url.split("/")[-2]: (a.copy_kind, a.duplicate_of_id) for a in uk}
    wire_id = next(a.id for a in uk if "/wire/" in a.url)
    assert copies["herald"] == ("text", wire_id) and copies["asia"] == ("near", wire_id) and copies["ledger"] == (None, None)
    assert len(relevant) == 2 and sorted(alerts) == sorted((r.story_id, r.topic) for r in relevant)  # one alert per story

    rows = {r["url"].split("/")[-2]: r for r in _export(sessions, config)}
    assert rows["herald"]["duplicate_of"] == rows["wire"]["url"] and rows["herald"]["text"] == rows["wire"]["text"]


def _export(sessions, config):
    with sessions() as session:
        return [r for r in export_rows(session, topic=config.topics[0].name) if "/uk.html" in r["url"]]


@pytest.mark.parametrize("now", [datetime(2019, 5, 16, 8, tzinfo=timezone.utc), datetime(2035, 2, 3, 17, tzinfo=timezone.utc)])
def test_indexes_survive_a_restart(sessions, settings, embedder, config, now):
    """Restarted on a clock far from the day the suite runs: the reloaded windows count from that clock alone."""
    clock = Clock(now)
    with LocalSite() as site, pipeline(sessions, settings, embedder, config, clock) as deps:
        feeds = wire_site(site, now - timedelta(hours=26))
        wire_only = sync(sessions, {"wire": feeds["wire"]}, now)
        run_pass(wire_only, deps)
    clock.now = now + timedelta(hours=5)
    with LocalSite() as site, pipeline(sessions, settings, embedder, config, clock) as restarted:
        load_deduper(restarted.deduper, sessions, topic=config.topics[0].name, now=clock())
        feeds = wire_site(site, now - timedelta(hours=26))
        run_pass(sync(sessions, feeds, clock()), restarted)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Story)) == 2
        herald = session.scalar(select(Article).where(Article.url.like("%/herald/%")))
        assert herald.copy_kind == "text" and herald.duplicate_of_id is not None


def test_a_crash_while_storing_leaves_nothing_half_done(sessions, settings, embedder, config):
    def crash(session, story_id, topic):
        raise RuntimeError("power cut")

    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        deps.on_relevant_story = crash
        feed_ids = sync(sessions, wire_site(site))
        outcomes = run_pass(feed_ids, deps)
        assert all(not o.ok for o in outcomes if o.feed in ("wire", "ledger"))
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Story)) == session.scalar(
                select(func.count(func.distinct(Article.story_id)))
            )
            assert session.scalar(select(func.count()).select_from(Article).where(Article.story_id.is_(None))) == 0
        deps.on_relevant_story = None
        with sessions.begin() as session:
            for feed in session.scalars(select(Feed)):
                feed.next_due_at = None
        run_pass(feed_ids, deps)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 5
        assert session.scalar(select(func.count()).select_from(Story)) == 2


def test_an_edited_article_updates_itself_in_its_story(sessions, settings, embedder, config):
    original = STORY_ITEMS["s01-a"]
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        def feed(title):
            return Reply(200, rss([(title, site.url("/uk.html"), "s")]), RSS)

        site.routes["/uk.html"] = Reply(200, f"<html><body><article><h1>t</h1><p>{original['text']}</p></article></body></html>".encode(), HTML)
        site.routes["/f.xml"] = feed(original["title"])
        feed_ids = sync(sessions, {"f": site.url("/f.xml")})
        run_pass(feed_ids, deps)
        edited = original["text"] + " Updated: the Cabinet Office published the list of affected sites on Friday."
        site.routes["/uk.html"] = Reply(200, f"<html><body><article><h1>t</h1><p>{edited}</p></article></body></html>".encode(), HTML)
        site.routes["/f.xml"] = feed(original["title"] + " (updated)")
        run_pass(feed_ids, deps)
    with sessions() as session:
        articles = list(session.scalars(select(Article)))
        stories = list(session.scalars(select(Story)))
    assert len(articles) == 1 and len(stories) == 1
    assert articles[0].title.endswith("(updated)") and "list of affected sites" in articles[0].text
    assert stories[0].title.endswith("(updated)") and articles[0].story_id == stories[0].id
