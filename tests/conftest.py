"""Shared fixtures: the model once per session, a fresh real database per test, local HTTP sites."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, inspect
from sqlalchemy.orm import sessionmaker

from monitor.config import LOOPBACK_NETWORKS, Settings, load_config
from monitor.demo.server import LocalSite, Reply
from monitor.embed import SentenceTransformerEmbedder
from monitor.store.db import make_engine, session_factory, upgrade

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TOPIC_YAML = (ROOT / "feeds.yaml").read_text(encoding="utf-8").split("\ntopics:\n", 1)[1]
REQUIRE_POSTGRES = os.environ.get("MONITOR_TEST_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test where it is absent (a user's own clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the team's shared data is not beside this clone")
    return path


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])
    return model


@pytest.fixture(scope="session")
def config():
    return load_config(ROOT / "feeds.yaml")


def _postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def new_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of either store; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'monitor.db'}"
        return
    if not _postgres_available():
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required here (CI) but does not answer")
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    name = f"monitor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(tmp_path) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    with new_database("postgres", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    """Each test using this runs on both stores."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@dataclass(frozen=True)
class Archive:
    url: str
    sessions: sessionmaker
    settings: Settings


@contextmanager
def later_tables_stand_in(engine) -> Iterator[None]:
    """For a test that stores articles under an old schema with today's repository: it reads readers' labels
    (migration 0010), the recent word index's floor (0014 on SQLite, 0017 on PostgreSQL) and the word blocks made
    (0019), so tables stand in for those the schema lacks, dropped again before the upgrade creates them: empty, but
    for a block made far ahead, so that none is made before 0019 makes them."""
    from monitor.store.models import Label
    from monitor.store.word_blocks import blocks_made
    from monitor.store.words import recent_floor

    blocks = Table(blocks_made.name, MetaData(), Column("block", Integer))
    present = set(inspect(engine).get_table_names())
    stand_ins = [t for t in (Label.__table__, Table(recent_floor.name, MetaData(), Column("id", Integer)), blocks) if t.name not in present]
    for stand_in in stand_ins:
        stand_in.create(engine)
    if blocks in stand_ins:
        with engine.begin() as connection:
            connection.execute(blocks.insert().values(block=2**30))
    try:
        yield
    finally:
        for stand_in in stand_ins:
            stand_in.drop(engine)


def archive_settings(folder: Path, database_url: str, **changes) -> Settings:
    """Settings of a stored archive: the demo site is ours, so no politeness delay; short timeouts."""
    return Settings(
        config=ROOT / "feeds.yaml",
        database_url=database_url,
        model_cache=folder / "models",
        host_delay=0,
        host_concurrency=4,
        connect_timeout=5,
        read_timeout=5,
        allowed_networks=list(LOOPBACK_NETWORKS),
        **changes,
    )


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def demo_archive(request, tmp_path_factory, embedder, config) -> Iterator[Archive]:
    """The demo site's stories stored by the real pipeline, once per store per test session, for tests that only read them."""
    from .archive import build_demo_archive

    folder = tmp_path_factory.mktemp("archive")
    with new_database(request.param, folder) as url:
        engine = make_engine(url)
        upgrade(engine)
        sessions = session_factory(engine)
        settings = archive_settings(folder, url)
        build_demo_archive(sessions, embedder, config, settings)
        yield Archive(url, sessions, settings)
        engine.dispose()


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for tests: timeouts short, yet long enough for a busy CI machine; no politeness delay to our own servers."""
    return Settings(
        config=ROOT / "feeds.yaml",
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        connect_timeout=5,
        read_timeout=5,
        host_delay=0,
        host_concurrency=4,
        fetch_workers=4,
        retry_after_wait=2,
        max_page_bytes=1_000_000,
        max_feed_bytes=2_000_000,
        allowed_networks=list(LOOPBACK_NETWORKS),
    )


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One trained topic model for every command that tests run as a subprocess."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def local_news():
    """A local outlet with one relevant article, one not, and a feed that fails (test_cli and test_startup use it)."""
    from .test_pipeline import HTML, RSS, page, rss  # here: test_pipeline imports this module

    with LocalSite() as site:
        site.routes.update(
            {
                "/news.xml": Reply(
                    200,
                    rss(
                        [
                            ("Britain orders Hikvision cameras out of ministries", site.url("/1.html"), "Removal order."),
                            ("Local bakery wins regional prize", site.url("/2.html"), "Bread."),
                        ]
                    ),
                    RSS,
                ),
                "/1.html": Reply(200, page("Britain orders Hikvision cameras out of ministries over security fears"), HTML),
                "/2.html": Reply(200, page("Local bakery wins regional prize for sourdough"), HTML),
                "/down.xml": Reply(500, b"down", {"Content-Type": "text/plain"}),
            }
        )
        yield site


@pytest.fixture
def workdir(tmp_path, local_news, model_cache):
    """A feeds.yaml naming the local outlet, and the environment of a `monitor` subprocess that reads it."""
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n"
        f"  - {{name: Local News, url: '{local_news.url('/news.xml')}', interval: 1h}}\n"
        f"  - {{name: Broken Feed, url: '{local_news.url('/down.xml')}', interval: 1h}}\n"
        "topics:\n" + TOPIC_YAML.replace("../shared/", f"{ROOT.parent / 'shared'}/").replace("eval/", f"{ROOT / 'eval'}/"),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "MONITOR_CONFIG": str(config),
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'monitor.db'}",
        "MONITOR_HOST_DELAY": "0",
        "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),
        "MONITOR_MODEL_CACHE": str(model_cache),
    }
    return tmp_path, env


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite() as local:
        yield local


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # the tests' clock; the demo's articles were written for it


class Clock:
    """A clock the test sets: nothing a test checks may depend on the day it runs."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def now() -> datetime:
    return NOW


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`); one per test session.

    The browser stands for the reader's machine, so it keeps the real clock even under `make test-ahead`:
    libfaketime preloaded with the monotonic clock left real stalls Chromium's timers."""
    if not CHROMIUM.exists():
        if REQUIRE_POSTGRES:
            pytest.fail(f"{CHROMIUM} is required here (CI): apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        reader_env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=reader_env)
        yield chromium
        chromium.close()
