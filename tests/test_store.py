"""The store: migrations build exactly the models, on SQLite and PostgreSQL; SQLite runs in WAL mode."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from monitor.specs import FeedSpec
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Base
from monitor.store.search import is_search_index

from .conftest import ROOT, new_database

UPGRADE_AT = """
import sys, time
from monitor.store.db import make_engine, session_factory, upgrade
engine = make_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade(engine)
"""


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")  # SQLite's, of 0015's
def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        # the search objects of migrations 0004 to 0006 and 0014 to 0018 (FTS5 tables, the tsvector column, indexes) are not in the models, by design
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
        polling.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/rss"), FeedSpec(name="B", url="https://b.org/rss")], now=now)
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/new.xml", interval="2h")], now=now)
    with sessions() as session:
        feeds = {f.name: f for f in polling.feeds_overview(session)}
        assert feeds["A"].url == "https://a.org/new.xml" and feeds["A"].interval_seconds == 7200 and feeds["A"].active
        assert not feeds["B"].active
        assert polling.due_feed_ids(session, now=now) == [feeds["A"].id]
        assert feeds["A"].created_at.tzinfo is not None


def test_processes_starting_at_once_add_each_feed_once(sessions):
    """Two `monitor run --once` started together both bring the feeds table in line with feeds.yaml."""
    now = datetime(2026, 11, 22, tzinfo=timezone.utc)
    specs = [FeedSpec(name=f"feed {n}", url=f"https://{n}.example/rss") for n in range(20)]
    start, errors = threading.Barrier(4), []

    def sync() -> None:
        start.wait()
        try:
            with sessions.begin() as session:
                polling.sync_feeds(session, specs, now=now)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as session:
        assert sorted(f.name for f in polling.feeds_overview(session)) == sorted(s.name for s in specs)


def test_naive_datetimes_are_refused(sessions):
    with pytest.raises(Exception, match="naive datetime"):
        with sessions.begin() as session:
            polling.sync_feeds(session, [FeedSpec(name="A", url="https://a.org/rss")], now=datetime(2026, 1, 1))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_processes_migrating_one_fresh_database_take_turns(kind, tmp_path):
    """Both start the upgrade at the same instant (imports done beforehand); both succeed, one version row."""
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        with new_database(kind, folder) as url:
            start = time.time() + 4
            processes = [
                subprocess.Popen([sys.executable, "-c", UPGRADE_AT, url, str(start)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                for _ in range(2)
            ]
            errors = [process.communicate(timeout=120)[1] for process in processes]
            assert [process.returncode for process in processes] == [0, 0], errors
            engine = make_engine(url)
            with engine.connect() as connection:
                assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            engine.dispose()


def test_sqlite_transactions_that_read_then_write_wait_for_each_other(tmp_path):
    """A deferred transaction whose snapshot went stale could not wait: it failed with "database is locked"."""
    engine = make_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name="a", url="https://a.example/rss")], now=datetime.now(timezone.utc))
    errors: list[Exception] = []

    def writer() -> None:
        for _ in range(40):
            try:
                with sessions.begin() as session:
                    count = session.execute(text("SELECT error_count FROM feeds")).scalar()
                    session.execute(text("UPDATE feeds SET error_count = :count"), {"count": count + 1})
            except Exception as exc:  # noqa: BLE001 (collected for the assertion)
                errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sessions() as session:
        assert session.execute(text("SELECT error_count FROM feeds")).scalar() == 240
    engine.dispose()
    assert errors == []
