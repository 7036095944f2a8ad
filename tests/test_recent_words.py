"""The recent word index (migrations 0014, 0017 and 0018): the archive's last months, in which SQLite's bm25 counts its words
and PostgreSQL's GIN index finds them, kept in step with the articles as they are stored, edited, deleted and age out
of it; on both stores."""

from __future__ import annotations

from alembic import command
from sqlalchemy import delete, select, text, update

from monitor.store.db import alembic_config, make_engine, session_factory
from monitor.store.models import Article
from monitor.store.words import RECENT_FTS_TABLE, RECENT_WORDS_TABLE, keep_recent, recent_floor, slices

from .test_search_slices import EVERY, START, STORIES, stored, words


def article_ids(sessions) -> list[int]:
    with sessions() as session:
        return session.scalars(select(Article.id).order_by(Article.id)).all()


def indexed(sessions, word: str | None = None) -> list[int]:
    """The ids of the articles the recent index holds (that hold the word)."""
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            holding = "WHERE search_vector @@ plainto_tsquery('english', :w)" if word else ""
            return session.scalars(text(f"SELECT id FROM {RECENT_WORDS_TABLE} {holding} ORDER BY id"), {"w": word}).all()
        if word:
            return session.scalars(text(f"SELECT rowid FROM {RECENT_FTS_TABLE} WHERE {RECENT_FTS_TABLE} MATCH :w ORDER BY rowid"), {"w": word}).all()
        return session.scalars(text(f"SELECT id FROM {RECENT_FTS_TABLE}_docsize ORDER BY id")).all()


def assert_intact(sessions) -> None:
    """FTS5's own check of the index's structure; it raises on a corrupt one (a 'delete' of words never indexed).
    PostgreSQL's recent words are rows of a table: what `indexed` reads is all there is to check."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text(f"INSERT INTO {RECENT_FTS_TABLE}({RECENT_FTS_TABLE}) VALUES ('integrity-check')"))


def test_it_holds_the_last_120_days_and_the_slices_within_them_are_ranked_there(sessions):
    story_ids = stored(sessions)
    ids = article_ids(sessions)
    assert indexed(sessions) == ids[-13:]  # 10 days apart: the last 121 days hold 13
    with sessions() as session:
        assert [part.recent for part in slices(session, None, None)] == [True, True, True, False, False]
        assert session.scalar(select(recent_floor.c.id)) == ids[-13]
        dated = slices(session, (START + 50 * EVERY).date(), None)  # since a day within them: the whole slice is
        assert [part.recent for part in dated] == [True, True, True]
    page = words(sessions, "Hikvision", per_page=2)
    assert page.total == 4 and {hit.story_id for hit in page.results} <= set(story_ids[-4:])
    everything = words(sessions, "Hikvision", per_page=100)  # past 120 days: the whole archive's index
    assert everything.total == STORIES and len(everything.results) == STORIES
    assert_intact(sessions)


def test_it_follows_edits_and_deletions_and_lets_go_of_what_ages_out(sessions):
    story_ids = stored(sessions)
    ids = article_ids(sessions)
    with sessions.begin() as session:
        for article_id in (ids[0], ids[-1]):  # one below the floor, one above
            session.execute(update(Article).where(Article.id == article_id).values(text="Zebracam units were removed."))
        session.execute(delete(Article).where(Article.id == ids[-2]))
    assert indexed(sessions, "zebracam") == [ids[-1]]
    assert indexed(sessions) == ids[-13:-2] + ids[-1:]
    found = words(sessions, "Zebracam")
    assert sorted(hit.story_id for hit in found.results) == sorted([story_ids[0], story_ids[-1]]) and found.total_exact
    assert_intact(sessions)

    last = START + (STORIES - 1) * EVERY
    with sessions.begin() as session:
        keep_recent(session, last + 3 * EVERY)  # three fewer within 121 days: dropped one by one
    assert indexed(sessions) == ids[-10:-2] + ids[-1:]
    assert_intact(sessions)
    with sessions.begin() as session:
        keep_recent(session, last + 9 * EVERY)  # more go than stay: the index is rebuilt from the three left
    assert indexed(sessions) == [ids[-4], ids[-3], ids[-1]]
    assert_intact(sessions)
    with sessions.begin() as session:
        keep_recent(session, last + 100 * EVERY)  # none left; what is stored next goes in
    assert indexed(sessions) == []
    assert words(sessions, "Zebracam").total == 2  # found in the whole archive's index
    assert_intact(sessions)


def test_the_migration_gives_the_recent_words_stored_before_it_their_stories_and_downgrades(database_url):
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "head")
    sessions = session_factory(engine)
    story_ids = stored(sessions)
    command.downgrade(config, "0017")  # the recent words stay, without their stories
    command.upgrade(config, "head")
    page = words(sessions, "Hikvision", per_page=2)
    assert page.total == 4 and {hit.story_id for hit in page.results} <= set(story_ids[-4:])
    command.downgrade(config, "0017")
    command.upgrade(config, "head")
    assert words(sessions, "Hikvision", per_page=2).total == 4
    engine.dispose()
