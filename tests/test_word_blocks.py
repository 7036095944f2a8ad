"""The word index's blocks of ids (migration 0019): an old slice of the archive is ranked in the few blocks it spans,
which are made ahead of the articles and kept in step with them as they are stored, edited and deleted; on both stores."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import numpy as np
from alembic import command
from sqlalchemy import delete, select, text, update

from monitor.domain import Candidate, TopicVerdict
from monitor.embed import to_bytes
from monitor.store import repository as repo
from monitor.store.db import alembic_config, make_engine, session_factory
from monitor.store.models import Article
from monitor.store.word_blocks import BLOCK, INDEX_PREFIX, blocks_made, table_name
from monitor.store.words import slices

from .conftest import later_tables_stand_in
from .test_search_slices import TOPIC, words

START = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
EVERY = timedelta(days=30)
STORIES = 12  # one each 30 days, two in each block of ids: the last 121 days (the recent index) hold the last 5


def first_id(n: int) -> int:
    """Story n's article's id: half a block after story n - 1's, and one past the first id so that SQLite's filler
    (below) lies in the same block."""
    return n * BLOCK // 2 + 2


def stored(sessions) -> list[int]:
    """STORIES stories, one article each, 30 days and half a block of ids apart, oldest first; each names Hikvision,
    the odd ones Dahua too. Returns their story ids."""
    vector = to_bytes(np.ones(8, dtype=np.float32) / np.sqrt(8))
    ids = []
    for n in range(STORIES):
        when = START + n * EVERY
        with sessions.begin() as session:
            _next_id(session, first_id(n), when)
        url, text_ = f"https://x.example/{n}", f"Council {n} removed its Hikvision cameras." + (" Dahua too." if n % 2 else "")
        verdict = TopicVerdict(topic=TOPIC, score=0.9, relevant=True, vendors=["Hikvision"])
        candidate = Candidate(feed_id=None, url=url, original_url=url, title=f"Cameras removed, number {n}", text=text_, text_source="page", published=when)
        item = repo.StoredArticle(candidate, hashlib.sha256(text_.encode()).hexdigest(), vector, [verdict])
        with sessions.begin() as session:
            article_id = repo.add_articles(session, [item], now=when)[url]
            assert article_id == first_id(n)
            ids.append(repo.place_article(session, article_id, story_id=None, duplicate_of_id=None, copy_kind=None, tags=verdict, verdicts=[verdict], now=when)[0])
    return ids


def _next_id(session, article_id: int, when: datetime) -> None:
    """The next article stored gets this id, as months of a busy archive's articles would have taken those before it:
    PostgreSQL's sequence moved on, SQLite's rowids past an article left out of every story."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT setval('articles_id_seq', :id)"), {"id": article_id - 1})
    else:
        filler = f"https://filler.example/{article_id}"
        session.add(Article(id=article_id - 1, url=filler, original_url=filler, title="", text="", text_source="feed", content_hash="0" * 64, fetched_at=when))


def dialect(sessions) -> str:
    with sessions() as session:
        return session.get_bind().dialect.name


def day(n: int):
    return (START + n * EVERY).date()


def blocks_indexed(sessions) -> dict[int, list[int]]:
    """Each block's articles as its index holds them (SQLite), or its partial index's bounds (PostgreSQL)."""
    with sessions() as session:
        made = session.scalars(select(blocks_made.c.block).order_by(blocks_made.c.block)).all()
        if session.get_bind().dialect.name == "postgresql":
            found = session.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE :p"), {"p": f"{INDEX_PREFIX}%"}).all()
            return {int(name.removeprefix(INDEX_PREFIX)): definition.split("WHERE ")[1] for name, definition in found} | {"made": made}
        return {block: session.scalars(text(f"SELECT id FROM {table_name(block)}_docsize ORDER BY id")).all() for block in made} | {"made": made}


def assert_intact(sessions) -> None:
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            for block in session.scalars(select(blocks_made.c.block)).all():
                session.execute(text(f"INSERT INTO {table_name(block)}({table_name(block)}) VALUES ('integrity-check')"))


def test_blocks_are_made_ahead_of_the_articles_and_hold_their_own(sessions):
    stored(sessions)
    indexed = blocks_indexed(sessions)
    assert indexed.pop("made") == list(range(7))  # the newest article is in block 5: one block ahead
    if dialect(sessions) == "postgresql":
        assert indexed[1] == f"((id >= {BLOCK}) AND (id < {2 * BLOCK}))"
        assert len(indexed) == 7
    else:
        assert indexed[0] == [1, 2, first_id(1) - 1, first_id(1)] and indexed[6] == []
        assert indexed[1] == [first_id(2) - 1, first_id(2), first_id(3) - 1, first_id(3)]
    assert_intact(sessions)


def test_an_old_slice_is_ranked_in_the_blocks_it_spans_and_finds_what_the_whole_index_finds(sessions):
    story_ids = stored(sessions)
    with sessions() as session:
        parts = slices(session, None, day(3))
        assert [part.blocks for part in parts[:2]] == [(1, 2), (1, 2)]  # 7 and 30 days before: story 3's block and the next, the slice's ceiling
        assert parts[-1].blocks == (0, 1, 2)  # to the archive's first article: three blocks
        assert slices(session, None, day(9))[-1].blocks == ()  # six: the whole archive's index
        assert slices(session, day(9), None)[-1].recent  # within the last 121 days: the recent index
    page = words(sessions, "Hikvision", until=day(3), per_page=2)
    assert [hit.story_id for hit in page.results] and {hit.story_id for hit in page.results} <= set(story_ids[:5])
    found = words(sessions, "Dahua", until=day(6), since=day(4), per_page=10)
    assert sorted(hit.story_id for hit in found.results) == [story_ids[5]] and found.total == 1 and found.total_exact
    newest = words(sessions, "Hikvision", until=day(6), since=day(3), sort="newest", per_page=10)
    assert [hit.story_id for hit in newest.results] == story_ids[6:2:-1]
    assert words(sessions, "Hikvision", until=day(7), per_page=100).total == 8


def test_blocks_follow_edits_and_deletions(sessions):
    story_ids = stored(sessions)
    with sessions.begin() as session:
        session.execute(update(Article).where(Article.id == first_id(2)).values(text="Zebracam units were removed."))
        session.execute(delete(Article).where(Article.id == first_id(3)))
    found = words(sessions, "Zebracam", until=day(3), since=day(2))
    assert [hit.story_id for hit in found.results] == [story_ids[2]]
    assert words(sessions, "Hikvision", until=day(3), since=day(2)).total == 0  # story 2's words edited, story 3's article gone
    assert_intact(sessions)


def test_the_migration_makes_the_blocks_of_the_articles_stored_before_it_and_downgrades(database_url):
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0018")
    sessions = session_factory(engine)
    with later_tables_stand_in(engine):
        story_ids = stored(sessions)
    command.upgrade(config, "head")
    assert blocks_indexed(sessions)["made"] == list(range(7))
    found = words(sessions, "Dahua", until=day(6), since=day(4))
    assert [hit.story_id for hit in found.results] == [story_ids[5]]
    assert_intact(sessions)
    command.downgrade(config, "0018")
    with engine.connect() as connection:  # SQLite's tables, their shadow tables and triggers; PostgreSQL's indexes
        listed = "SELECT relname FROM pg_class" if connection.dialect.name == "postgresql" else "SELECT name FROM sqlite_master"
        assert not [name for name in connection.scalars(text(listed)) if name.startswith(("articles_fts_b", INDEX_PREFIX))]
    command.upgrade(config, "head")
    assert words(sessions, "Dahua", until=day(6), since=day(4)).total == 1
    engine.dispose()
