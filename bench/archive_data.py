"""The archive bench's archives: generated once at the chosen size (bench/cache.py), cached, on SQLite and on PostgreSQL.

Articles are generated from the demo site's sentences (as bench/newsgen does), about 450 words each, spread
evenly over two years and stored in the order they were fetched, as a monitor stores them (ids grow with time;
each published up to half a day before it was fetched), one story each: 10 % relevant, written from the on-topic articles' sentences (with a few
off-topic ones), the rest from the off-topic articles' sentences with an on-topic one now and then (a general
news archive); tags drawn from the topic's vocabulary. Their vectors are not a million model runs: each is the
real embedding of one of the evaluation texts (eval/topic_labelled.jsonl, by the packaged model) mixed with
random noise to cosine about 0.6, so meaning queries find neighbours as they would in real news.
Building is resumable: batches are committed as they are made, and a run carries on from what is stored.
PostgreSQL is a bundled 16 with the newest pgvector installed (tests/pgserver.py), kept in the cache folder; its word (GIN) and vector (HNSW) indexes
are dropped while the rows go in and built once after, which is many times faster than row by row.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from monitor.classify import Document
from monitor.demo.site import load_demo_articles
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.facets import record_values
from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.store.word_blocks import keep_blocks
from monitor.store.words import keep_recent

from bench import cache
from bench.newsgen import SENTENCE

TOPIC = "china-surveillance-bans"
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
DAYS = 730
BATCH = 5_000
OUTLETS = 50
MIX = 0.6  # cosine of an article's vector to the evaluation text it is made from
VENDORS = ["Hikvision", "Dahua", "Huawei", "ZTE", "Hytera", "DJI", "Uniview"]
COUNTRIES = ["US", "GB", "AU", "CA", "DE", "NL", "DK", "NZ", "FR", "EU", "IN", "TW", "LT", "SE", "JP"]
ACTIONS = ["ban", "removal", "blacklist", "sanction", "procurement_restriction", "call_for_ban", "investigation", "reaction"]
# the indexes that migrations 0004, 0006 and 0017 make, built after the rows go in (the same definitions)
POSTGRES_INDEXES = {
    "ix_articles_search_vector": "CREATE INDEX ix_articles_search_vector ON articles USING gin (search_vector)",
    "ix_articles_recent_words": "CREATE INDEX ix_articles_recent_words ON articles_recent_words USING gin (search_vector)",
    "ix_articles_embedding_vector": "CREATE INDEX ix_articles_embedding_vector ON articles USING hnsw (embedding_vector vector_cosine_ops)",
}
POSTGRES_SETTINGS = "shared_buffers = 1GB\nmaintenance_work_mem = 4GB\nmax_parallel_maintenance_workers = 2\nwork_mem = 64MB"


def evaluation_embeddings(embedder) -> np.ndarray:
    """The packaged model's vectors of the evaluation texts, cached beside the archives."""
    path = cache.folder() / "eval-embeddings.npy"
    if path.exists():
        return np.load(path)
    rows = [json.loads(line) for line in (cache.ROOT / "eval" / "topic_labelled.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    vectors = embedder.embed([Document(row.get("title") or "", row.get("text") or "").for_embedding for row in rows]).astype(np.float32)
    np.save(path, vectors)
    return vectors


def noisy(directions: np.ndarray, count: int, np_rng: np.random.Generator) -> np.ndarray:
    """count unit vectors, each a random direction's at cosine about MIX."""
    noise = np_rng.normal(size=(count, directions.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = MIX * directions[np_rng.integers(0, len(directions), count)] + np.sqrt(1 - MIX**2) * noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)  # NumPy 2 made them float64


def _pools() -> tuple[list[str], list[str]]:
    """The demo's sentences, from its on-topic and its off-topic articles."""
    pools: tuple[list[str], list[str]] = ([], [])
    for article in load_demo_articles():
        for paragraph in article.paragraphs:
            pools[0 if article.on_topic else 1].extend(s.strip() for s in SENTENCE.split(paragraph) if len(s.split()) >= 6)
    return pools


def fill(sessions, start: int, count: int, directions: np.ndarray, seed: int, progress: str = "") -> float:
    """Insert count articles (ids start+1…), each its own story, in committed batches; returns the seconds taken."""
    rng, np_rng, (on_topic, off_topic) = random.Random(seed), np.random.default_rng(seed), _pools()
    began = time.perf_counter()
    if start == 0:
        with sessions.begin() as session:
            session.execute(insert(Feed), [{"id": i + 1, "name": f"Outlet {i}", "url": f"https://outlet{i}.example/rss", "interval_seconds": 1800,
                                            "tags": [], "active": True, "error_count": 0, "created_at": NOW} for i in range(OUTLETS)])  # fmt: skip
    span = timedelta(days=DAYS) / (start + count)  # between two articles' fetches
    for offset in range(start, start + count, BATCH):
        ids = range(offset + 1, min(offset + BATCH, start + count) + 1)
        vectors = noisy(directions, len(ids), np_rng)
        stories, articles, views = [], [], []
        for row, i in enumerate(ids):
            fetched = NOW - (start + count - i) * span
            when = fetched - timedelta(hours=12 * rng.random())
            relevant = rng.random() < 0.10
            tags = {
                "vendors": rng.sample(VENDORS, rng.randint(1, 2)) if relevant or rng.random() < 0.3 else [],
                "countries": rng.sample(COUNTRIES, 1) if relevant or rng.random() < 0.5 else [],
                "actions": rng.sample(ACTIONS, rng.randint(1, 2)) if relevant else [],
            }
            share = 0.8 if relevant else 0.03  # of sentences drawn from the on-topic articles
            picks = [on_topic if rng.random() < share else off_topic for _ in range(rng.randint(15, 27))]
            sentences = [rng.choice(pool) for pool in picks]
            body = " ".join(sentences[1:])
            title = " ".join(sentences[0].rstrip(".").split()[: rng.randint(7, 12)])
            url = f"https://news.example/{i}"
            stories.append({"id": i, "title": title, "url": url, "first_seen_at": when, "last_updated_at": when, "published_at": when, "article_count": 1, **tags})
            articles.append({"id": i, "url": url, "original_url": url, "feed_id": rng.randint(1, OUTLETS), "title": title, "site_name": f"Outlet {rng.randrange(OUTLETS)}",
                             "text": body, "summary": "", "text_source": "page", "content_hash": f"{i:064d}", "embedding": vectors[row].tobytes(),
                             "published_at": when, "fetched_at": fetched, "story_id": i})  # fmt: skip
            views.append({"story_id": i, "topic": TOPIC, "score": rng.uniform(0.6, 1) if relevant else rng.uniform(0, 0.4), "relevant": relevant, "relevant_since": when if relevant else None})
        with sessions.begin() as session:
            session.execute(insert(Story), stories)
            session.execute(insert(Article), articles)
            session.execute(insert(StoryTopic), views)
            record_values(session, ids)  # the filter lists' values, as the pipeline keeps them
        if progress and ids[-1] % 50_000 < BATCH:
            print(f"  {progress}: {ids[-1]:,} articles stored ({time.perf_counter() - began:.0f} s)", flush=True)
    return time.perf_counter() - began


def stored(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Article))


def sqlite_archive(size: int, directions: np.ndarray) -> tuple[str, float]:
    """The cached SQLite archive of size articles (made or completed now) and the seconds that took."""
    url = f"sqlite:///{cache.folder() / f'archive-{size}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    have = stored(sessions)
    built = fill(sessions, have, size - have, directions, seed=size + have, progress="SQLite") if have < size else 0.0
    with sessions.begin() as session:
        keep_recent(session, NOW)  # the recent word index took every generated article in: it keeps the last weeks
        keep_blocks(session)  # the blocks past the two made at the first upgrade (which took their articles in one by one)
    engine.dispose()
    return url, built


@contextmanager
def postgres_archive(size: int, directions: np.ndarray) -> Iterator[tuple[str, float]]:
    """A bundled PostgreSQL (the newest pgvector installed, tests/pgserver.py) holding the cached archive of size articles, and the seconds building took now.

    One process builds at a time (an advisory lock): `python -m bench.archive_data postgresql` may build it beside a bench.
    """
    from tests.pgserver import newest_install, pgvector_postgres

    install = newest_install()
    with pgvector_postgres(install, cache.folder() / f"pg-{install.package}-{size}", settings=POSTGRES_SETTINGS) as admin:
        with psycopg.connect(**_connect_args(admin), autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = 'archive'").fetchone():
                connection.execute("CREATE DATABASE archive")
            connection.execute("SELECT pg_advisory_lock(16)")  # held until this connection closes, after building
            url = admin.replace("/postgres?", "/archive?")
            built = _build_postgres(url, size, directions)
        yield url, built


def _build_postgres(url: str, size: int, directions: np.ndarray) -> float:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    have, built = stored(sessions), 0.0
    if have < size:
        with engine.begin() as connection:
            for name in POSTGRES_INDEXES:
                connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        built = fill(sessions, have, size - have, directions, seed=size + have, progress="PostgreSQL")
        with sessions.begin() as session:
            keep_recent(session, NOW)  # as on SQLite: the recent words took every generated article in
            keep_blocks(session)  # as on SQLite; each partial index past the first two built once its articles are in
    with engine.begin() as connection:
        for name, statement in POSTGRES_INDEXES.items():
            if connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
                started = time.perf_counter()
                connection.execute(text(statement))
                built += time.perf_counter() - started
                print(f"  PostgreSQL: {name} built in {time.perf_counter() - started:.0f} s", flush=True)
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return built


def _connect_args(url: str) -> dict:
    parsed = make_url(url)
    return {"host": parsed.query["host"], "user": parsed.username, "dbname": parsed.database}


def pgvector_version(url: str) -> str:
    with psycopg.connect(**_connect_args(url)) as connection:
        return connection.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]



def _build(stores: list[str]) -> None:
    """Build (or complete) the cached archives without measuring: `python -m bench.archive_data [sqlite] [postgresql]`."""
    from monitor.embed import SentenceTransformerEmbedder

    directions = evaluation_embeddings(SentenceTransformerEmbedder())
    if "sqlite" in stores:
        print(f"SQLite archive of {cache.ARTICLES:,}: built in {sqlite_archive(cache.ARTICLES, directions)[1]:.0f} s")
    if "postgresql" in stores:
        with postgres_archive(cache.ARTICLES, directions) as (_url, built):
            print(f"PostgreSQL archive of {cache.ARTICLES:,}: built in {built:.0f} s")


if __name__ == "__main__":
    import sys

    _build(sys.argv[1:] or ["sqlite", "postgresql"])
