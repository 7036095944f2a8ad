"""Engine creation (SQLite pragmas, write transactions that wait their turn) and schema upgrades through Alembic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"  # package data, so an installed copy upgrades too
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE = "monitor_write"  # execution option: this connection's transactions will write
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72  # "monitor": the PostgreSQL advisory lock that serialises schema upgrades


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # pysqlite's own transaction handling would let a SAVEPOINT's RELEASE commit on its own;
    # SQLAlchemy's documented remedy: no implicit transactions, and an explicit BEGIN below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """A write transaction takes SQLite's write lock at its start (waiting up to the busy timeout for it).

    A deferred one that reads first and writes later fails at once with "database is locked" when another
    writer committed in between: its snapshot is stale, and waiting cannot help. Readers stay deferred.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for the URL; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def writer(engine: Engine) -> Engine:
    """The same engine, its transactions marked as writing (BEGIN IMMEDIATE on SQLite; no change elsewhere)."""
    return engine.execution_options(**{WRITE: True})


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = writer(engine)
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two processes starting on one fresh PostgreSQL database take turns: the second finds the schema made.

    SQLite needs no lock here: the whole upgrade is one transaction (env.py) that begins IMMEDIATE, which does the same.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()


def upgrade(engine: Engine) -> None:
    """Create the schema or bring it to the newest migration; concurrent callers wait for each other."""
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), "head")


def schema_problem(connection: Connection) -> str | None:
    """Why the schema is not at the newest migration, or None when it is (readiness); the caller handles an unreachable database."""
    newest = set(ScriptDirectory.from_config(alembic_config(connection.engine)).get_heads())
    current = set(MigrationContext.configure(connection).get_current_heads())
    if current == newest:
        return None
    return f"schema at {', '.join(sorted(current)) or 'nothing'}, newest is {', '.join(sorted(newest))}: run `monitor migrate`"


class Sessions(sessionmaker[Session]):
    """Sessions of one engine: `sessions()` for reading, `sessions.begin()` for a transaction that writes."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self._writer = writer(engine)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self(bind=self._writer) as session, session.begin():
            yield session


def session_factory(engine: Engine) -> Sessions:
    return Sessions(engine)
