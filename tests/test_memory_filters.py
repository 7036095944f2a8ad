"""The stories' filters held in memory beside the vectors follow the store: new stories and articles, tags that
grow, relevance turned off and on; and where what is held is behind, the store's word wins in the results."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import event, func, select, text, update

from monitor.domain import Candidate, TopicVerdict
from monitor.embed import to_bytes
from monitor.store import feedback
from monitor.store import repository as repo
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.facets import facet_counts, filter_options, record_values
from monitor.store.filters import SearchQuery, story_filters
from monitor.store.models import Article, ArticleTopic, Story, StoryTopic
from monitor.store.search import VectorIndex, search

from bench.archive_data import NOW, TOPIC, fill

QUERIES = [
    SearchQuery(topic=TOPIC),
    SearchQuery(topic=TOPIC, relevant=False, vendors=("Zeta",)),
    SearchQuery(topic=TOPIC, relevant=False, sources=("the zeta times",)),
    SearchQuery(topic=TOPIC, since=(NOW - timedelta(days=30)).date(), countries=("FI",)),
]


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    filled(sessions, 0, 400, seed=7)
    yield sessions
    engine.dispose()


def filled(sessions, start: int, count: int, *, seed: int) -> None:
    """The bench's generated articles, a story each, with ids given: PostgreSQL's sequences are moved past them."""
    fill(sessions, start, count, np.eye(384, dtype=np.float32)[:20], seed=seed)
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            for table in ("articles", "stories"):
                session.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))


def agree(sessions, index: VectorIndex) -> None:
    """What is held lets through exactly the stories the store's filters do."""
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        size = session.scalar(select(func.max(Story.id))) + 1
        for query in QUERIES:
            allowed = np.zeros(size, dtype=bool)
            allowed[session.scalars(select(Story.id).where(*story_filters(query, dialect))).all()] = True
            held = index.stories.passing(query)
            assert np.array_equal(np.resize(held, size) if len(held) < size else held[:size], allowed), query
            assert not held[size:].any()


def place(session, url: str, vector: np.ndarray, *, story_id: int | None, when, site_name: str = "The Zeta Times", **tags) -> int:
    verdict = TopicVerdict(topic=TOPIC, score=0.9, relevant=True, **tags)
    candidate = Candidate(feed_id=1, url=url, original_url=url, title=f"About {url}", text="Text.", text_source="page", published=when, site_name=site_name)
    item = repo.StoredArticle(candidate, hashlib.sha256(url.encode()).hexdigest(), to_bytes(vector), [verdict])
    article_id = repo.add_articles(session, [item], now=when)[url]
    return repo.place_article(session, article_id, story_id=story_id, duplicate_of_id=None, copy_kind=None, tags=verdict, verdicts=[verdict], now=when)[0]


def test_what_is_held_follows_the_store(sessions):
    index = VectorIndex()
    with sessions() as session:
        index.refresh(session)
    agree(sessions, index)
    later, vector = NOW + timedelta(hours=1), np.eye(384, dtype=np.float32)[100]
    filled(sessions, 400, 50, seed=8)  # stories with new ids
    with sessions.begin() as session:
        joined = place(session, "https://zeta.example/1", vector, story_id=5, when=later, vendors=["Zeta"], countries=["FI"])  # an old story's tags grow
        new = place(session, "https://zeta.example/2", vector, story_id=None, when=later, vendors=["Zeta"], countries=["FI"], actions=["ban"])
        old = place(session, "https://zeta.example/3", vector, story_id=None, when=NOW - timedelta(days=3), vendors=["Zeta"], countries=["FI"])
        turned_on = session.scalar(select(StoryTopic.story_id).where(StoryTopic.relevant.is_(False)).order_by(StoryTopic.story_id))
    with sessions() as session:
        index.refresh(session)
    agree(sessions, index)
    with sessions.begin() as session:  # a rescore: the article's verdict turned, the stories settled as feedback does it
        session.execute(update(ArticleTopic).values(relevant=False))
        assert feedback.settle_stories(session, [joined, new, old], now=later + timedelta(minutes=5)).turned_off == 3
        session.execute(update(StoryTopic).where(StoryTopic.story_id == turned_on).values(relevant=True))  # behind memory's back
        session.execute(update(Story).where(Story.id == turned_on).values(last_updated_at=later + timedelta(minutes=5)))
    with sessions() as session:
        index.refresh(session)
    agree(sessions, index)


def test_where_what_is_held_is_behind_the_store_wins(sessions):
    index = VectorIndex()
    vector = np.eye(384, dtype=np.float32)[200]
    with sessions.begin() as session:
        story = place(session, "https://zeta.example/near", vector, story_id=None, when=NOW - timedelta(days=3), vendors=["Zeta"])
    query = SearchQuery(q="zeta", mode="meaning", topic=TOPIC)
    with sessions() as session:
        index.refresh(session)
        assert search(session, query, vectors=index, query_vector=vector).results[0].story_id == story
    with sessions.begin() as session:  # turned off without the story marked updated: memory cannot know until its full reload
        session.execute(update(StoryTopic).where(StoryTopic.story_id == story).values(relevant=False))
    with sessions() as session:
        index.refresh(session)
        assert index.stories.passing(query)[story]
        assert story not in {hit.story_id for hit in search(session, query, vectors=index, query_vector=vector).results}
        index.refresh(session, full=True)
        assert not index.stories.passing(query)[story]


@pytest.mark.parametrize("mode", ["words", "hybrid"])
def test_a_word_search_given_the_ids_of_a_narrow_filters_stories_finds_those_stored_since_the_last_refresh(sessions, mode):
    index = VectorIndex()
    with sessions() as session:
        index.refresh(session)
    vector = np.eye(384, dtype=np.float32)[300]
    with sessions.begin() as session:
        first = place(session, "https://zeta.example/a", vector, story_id=None, when=NOW, vendors=["Zeta"])
        place(session, "https://zeta.example/b", vector, story_id=None, when=NOW, vendors=["Other"])
    query = SearchQuery(q="text", mode=mode, topic=TOPIC, vendors=("zeta",))
    with sessions() as session:
        found = search(session, query, vectors=index, query_vector=vector if mode == "hybrid" else None)
    assert [hit.story_id for hit in found.results] == [first]


def test_facets_counted_from_what_is_held_agree_with_the_store(sessions):
    """Every value of every facet, for every story and for a query's matches, with facets chosen or not: the same
    numbers as the store's statements, and they follow a story stored since (the search refreshes before counting)."""
    index = VectorIndex()
    with sessions() as session:
        index.refresh(session)
    with sessions.begin() as session:  # an outlet named by its feed in one case and its pages in another: one outlet to the filter
        story = place(session, "https://zeta.example/c", np.eye(384, dtype=np.float32)[7], story_id=None, when=NOW, site_name="OUTLET 3", vendors=["Zeta"])
        record_values(session, session.scalars(select(Article.id).where(Article.story_id == story)).all())
    queries = [
        *QUERIES,
        SearchQuery(topic=TOPIC, vendors=("zeta", "Hikvision")),
        SearchQuery(topic=TOPIC, relevant=False, sources=("Outlet 3",), actions=("ban",)),
        SearchQuery(topic=TOPIC, until=(NOW - timedelta(days=60)).date(), countries=("GB", "US")),
    ]
    with sessions() as session:
        index.refresh(session)
        options = filter_options(session)
        assert "OUTLET 3" in options["sources"] and "Outlet 3" not in options["sources"]  # listed once, case aside
        among = session.scalars(select(Story.id).where(Story.id % 3 == 0)).all()
        compared = 0
        for query in queries:
            for ids in (None, among):
                matching = Story.id.is_not(None) if ids is None else Story.id.in_(ids)
                expected = facet_counts(session, query, matching, per_story=ids is not None)
                held = index.stories.counts(query, options, among=ids)
                assert {name: dict(values) for name, values in held.items()} == {name: dict(values) for name, values in expected.items()}, (query, ids)
                assert held == expected  # the same order too: most stories first
                compared += sum(count for values in held.values() for _, count in values)
        outlet_3 = SearchQuery(topic=TOPIC, relevant=False, sources=("outlet 3",))
        assert dict(index.stories.counts(SearchQuery(topic=TOPIC, relevant=False), options)["sources"])["OUTLET 3"] == np.count_nonzero(index.stories.passing(outlet_3))
    assert compared > 1000  # not a comparison of zeros


def test_the_newest_stories_listed_from_what_is_held_are_the_stores(sessions):
    """The search page without a query lists from memory what the store would list, page by page, in the store's
    order (to the microsecond: memory holds seconds); where memory is behind, the store's word wins."""
    held, store_only = VectorIndex(), VectorIndex()  # never loaded: the store lists
    vector = np.eye(384, dtype=np.float32)[9]
    with sessions.begin() as session:  # one second, three stories, stored newest first
        second = NOW.replace(microsecond=0) + timedelta(hours=2)
        same_second = [place(session, f"https://zeta.example/s{n}", vector, story_id=None, when=second + timedelta(microseconds=900 - 400 * n)) for n in range(3)]
    with sessions() as session:
        held.refresh(session)

    def listed(index, query, page):
        with sessions() as session:
            found = search(session, replace(query, page=page, per_page=7), vectors=index, query_vector=None)
            return found.total, [hit.story_id for hit in found.results]

    for query in [*QUERIES, SearchQuery(topic=TOPIC, relevant=False)]:
        for page in (1, 2, 5):
            assert listed(held, query, page) == listed(store_only, query, page), (query, page)
    everything = SearchQuery(topic=TOPIC, relevant=False)
    assert listed(held, everything, 1)[1][:3] == same_second  # by the microsecond, not by id
    with sessions.begin() as session:  # turned off behind memory's back: one, then every story of the first page
        session.execute(update(StoryTopic).where(StoryTopic.story_id == same_second[0]).values(relevant=False))
    relevant = SearchQuery(topic=TOPIC)
    assert listed(held, relevant, 1) == listed(store_only, relevant, 1) and same_second[0] not in listed(held, relevant, 1)[1]
    with sessions.begin() as session:  # more than memory reads past a page
        newest = held.stories.newest(relevant, 40)[0].tolist()
        session.execute(update(StoryTopic).where(StoryTopic.story_id.in_(newest)).values(relevant=False))
    assert listed(held, relevant, 1) == listed(store_only, relevant, 1)


def test_a_refresh_with_nothing_new_reads_no_story_again(sessions):
    """Stories updated within the writers' clock margin are looked at again, but read again only when their update
    is not the one read: reading them at every search cost 5 ms at a million."""
    index = VectorIndex()
    vector = np.eye(384, dtype=np.float32)[200]
    with sessions.begin() as session:  # the newest update: within the margin of every refresh that follows
        story = place(session, "https://zeta.example/margin", vector, story_id=None, when=NOW + timedelta(hours=1), vendors=["Zeta"])
    with sessions() as session:
        index.refresh(session)
    statements = []
    event.listen(sessions.kw["bind"], "before_cursor_execute", lambda *args: statements.append(args[2]))
    with sessions() as session:
        index.refresh(session)
    assert not [sql for sql in statements if "story_topics" in sql], statements
    with sessions.begin() as session:  # updated again, to the same moment's margin: read again
        place(session, "https://zeta.example/margin-2", vector, story_id=story, when=NOW + timedelta(hours=1, minutes=1), countries=["FI"])
    with sessions() as session:
        index.refresh(session)
        assert index.stories.passing(SearchQuery(topic=TOPIC, countries=("FI",)))[story]
    assert [sql for sql in statements if "story_topics" in sql]
