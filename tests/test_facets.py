"""The values the search's filters list (migration 0016): kept as articles are placed, filled from an archive
stored before the table existed, and listed with a count of 0 where a search finds no story that has them."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone

from alembic import command
from sqlalchemy import inspect, insert
from sqlalchemy.orm import Session

from monitor.domain import Candidate, TopicVerdict
from monitor.store import repository as repo
from monitor.store.db import alembic_config, make_engine, session_factory
from monitor.store.facets import facet_counts, filter_options, record_values
from monitor.store.filters import SearchQuery
from monitor.store.models import Article, Feed, Story, StoryTopic

TOPIC = "china-surveillance-bans"
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def add_feeds(session: Session) -> None:
    session.execute(insert(Feed), [{"id": i, "name": f"Feed {i}", "url": f"http://127.0.0.1/{i}.xml", "interval_seconds": 1800, "created_at": NOW} for i in (1, 2)])


def placed(session: Session, url: str, *, feed_id: int | None, site_name: str | None, story_id: int | None = None, **tags) -> int:
    """An article stored and placed as the pipeline does (a new story, or story_id's); its story's id."""
    verdict = TopicVerdict(topic=TOPIC, score=0.9, relevant=True, **tags)
    candidate = Candidate(feed_id=feed_id, url=url, original_url=url, title=f"Title of {url}", text="Text.", text_source="page", published=NOW, site_name=site_name)
    item = repo.StoredArticle(candidate, hashlib.sha256(url.encode()).hexdigest(), None, [verdict])
    article_id = repo.add_articles(session, [item], now=NOW)[url]
    story, _ = repo.place_article(session, article_id, story_id=story_id, duplicate_of_id=None, copy_kind=None, tags=verdict, verdicts=[verdict], now=NOW)
    record_values(session, [article_id])
    return story


def test_the_lists_grow_as_articles_are_placed_and_keep_what_no_search_finds(sessions):
    with sessions.begin() as session:
        add_feeds(session)
        story = placed(session, "https://herald.example/1", feed_id=1, site_name="The Herald", vendors=["Hikvision"], countries=["GB"], actions=["ban"])
    with sessions() as session:
        assert filter_options(session) == {"vendors": ["Hikvision"], "countries": ["GB"], "actions": ["ban"], "sources": ["The Herald"]}
    with sessions.begin() as session:  # a second article of the story: its tags join the story's; no site name, so its feed names it
        placed(session, "https://two.example/1", feed_id=2, site_name="", story_id=story, vendors=["Dahua"], countries=["GB"], actions=["removal"])
        placed(session, "https://herald.example/2", feed_id=1, site_name="the herald", vendors=["ZTE"], countries=["US"], actions=["ban"])
        record_values(session, [])
    with sessions() as session:
        options = filter_options(session)
        assert options == {
            "vendors": ["Dahua", "Hikvision", "ZTE"], "countries": ["GB", "US"], "actions": ["ban", "removal"], "sources": ["Feed 2", "The Herald"],
        }  # fmt: skip
        found = facet_counts(session, SearchQuery(topic=TOPIC, vendors=("Dahua",)), Story.id == story)
        assert found["vendors"] == [("Dahua", 1), ("Hikvision", 1), ("ZTE", 0)]  # a facet's own choice leaves its counts alone
        assert found["sources"] == [("Feed 2", 1), ("The Herald", 1)]  # "the herald" too: listed once, as the filter matches it
        assert found["countries"] == [("GB", 1), ("US", 0)] and found["actions"] == [("ban", 1), ("removal", 1)]
        later = SearchQuery(topic=TOPIC, since=(NOW + timedelta(days=1)).date(), until=date(2999, 12, 31))
        nothing = facet_counts(session, later, Story.id.is_not(None))
        assert {name: [value for value, _ in values] for name, values in nothing.items()} == options
        assert all(count == 0 for values in nothing.values() for _, count in values)


def test_the_migration_lists_what_the_archive_held_before_it_and_downgrades(database_url):
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0015")
    with session_factory(engine).begin() as session:
        add_feeds(session)
        stories = [
            {"id": 1, "vendors": ["Hikvision", "Dahua"], "countries": ["AU"], "actions": ["ban"]},
            {"id": 2, "vendors": ["Hikvision"], "countries": [], "actions": ["blacklist", "ban"]},
            {"id": 3, "vendors": [], "countries": [], "actions": []},
        ]
        session.execute(insert(Story), [{**row, "title": "T", "url": f"https://x.example/{row['id']}", "first_seen_at": NOW, "last_updated_at": NOW} for row in stories])
        session.execute(insert(StoryTopic), [{"story_id": row["id"], "topic": TOPIC, "score": 0.9, "relevant": True} for row in stories])
        articles = [(1, "The Herald", 1), (2, None, 2), (3, "", 1), (None, "Unplaced Times", 1), (3, None, None)]
        session.execute(insert(Article), [
            {"url": f"https://x.example/a{n}", "original_url": f"https://x.example/a{n}", "feed_id": feed, "title": "T", "site_name": site, "text": "Text.",
             "text_source": "page", "content_hash": f"{n:064d}", "fetched_at": NOW, "story_id": story}
            for n, (story, site, feed) in enumerate(articles)
        ])  # fmt: skip
    command.upgrade(config, "head")
    sessions = session_factory(engine)
    with sessions() as session:
        expected = {"vendors": ["Dahua", "Hikvision"], "countries": ["AU"], "actions": ["ban", "blacklist"], "sources": ["Feed 1", "Feed 2", "The Herald"]}
        assert filter_options(session) == expected
    command.downgrade(config, "0015")
    assert "facet_values" not in inspect(engine).get_table_names()
    command.upgrade(config, "head")
    with sessions() as session:
        assert filter_options(session) == expected
    engine.dispose()
