"""The store: migrations build exactly the models, on SQLite and PostgreSQL; SQLite runs in WAL mode."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from monitor.config import FeedSpec
from monitor.store import repository as repo
from monitor.store.db import make_engine, upgrade
from monitor.store.models import Base
from monitor.store.search import is_search_index


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        # the word index of migration 0004 (FTS5 tables, the tsvector column) is not in the models, by design
        context = MigrationContext.configure(connection, opts={"include_name": lambda *a: not is_search_index(*a)})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'm.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_sync_feeds_adds_updates_and_deactivates(sessions):
    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    with sessions.begin() as session:
        repo.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/rss"), FeedSpec(name="B", url="https://b.org/rss")], now=now)
    with sessions.begin() as session:
        repo.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/new.xml", interval="2h")], now=now)
    with sessions() as session:
        feeds = {f.name: f for f in repo.feeds_overview(session)}
        assert feeds["A"].url == "https://a.org/new.xml" and feeds["A"].interval_seconds == 7200 and feeds["A"].active
        assert not feeds["B"].active
        assert repo.due_feed_ids(session, now=now) == [feeds["A"].id]
        assert feeds["A"].created_at.tzinfo is not None


def test_naive_datetimes_are_refused(sessions):
    with pytest.raises(Exception, match="naive datetime"):
        with sessions.begin() as session:
            repo.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/rss")], now=datetime(2026, 1, 1))
