"""The archive's search at 10,000 and 100,000 articles, on SQLite and PostgreSQL: latency through the API, index sizes.

Articles are generated from the demo site's sentences (as bench/newsgen does), about 450 words each,
spread over two years, one story each: 10 % relevant, written from the on-topic articles' sentences
(with a few off-topic ones), the rest from the off-topic articles' sentences with an on-topic one
now and then (a general news archive); tags drawn from the topic's vocabulary. Their vectors are not computed by
the model 100,000 times: each is a real embedding of one of the query phrases (a "subject") mixed
with random noise to cosine about 0.6, so meaning queries find neighbours as they would in real news.
Queries go through the JSON API (FastAPI's TestClient, in process) and embed with the real model.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text

from monitor.config import Settings, load_config
from monitor.demo.site import load_demo_articles
from monitor.embed import SentenceTransformerEmbedder
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.store.search import VectorIndex
from monitor.web.app import create_app

from bench.newsgen import SENTENCE

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SIZES = (10_000, 100_000)
QUERIES = 60  # per mode, store and size
KEEP = os.environ.get("BENCH_ARCHIVE_KEEP")  # a SQLite file kept between runs: built once, then only the sizes it can show are measured
TOPIC = "china-surveillance-bans"
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
DAYS = 730
BATCH = 5_000
OUTLETS = 50
SUBJECTS = [
    "camera ban", "Hikvision removal", "drones grounded", "Dahua cameras", "council procurement",
    "national security risk", "court challenge", "thermal cameras", "Huawei equipment", "surveillance contract",
    "ministers review", "parliament committee",
]  # fmt: skip
VENDORS = ["Hikvision", "Dahua", "Huawei", "ZTE", "Hytera", "DJI", "Uniview"]
COUNTRIES = ["US", "GB", "AU", "CA", "DE", "NL", "DK", "NZ", "FR", "EU", "IN", "TW", "LT", "SE", "JP"]
ACTIONS = ["ban", "removal", "blacklist", "sanction", "procurement_restriction", "call_for_ban", "investigation", "reaction"]
FILTERS = [
    {"vendor": "Hikvision"}, {"country": "GB"}, {"action": "ban"}, {"since": "2026-01-01"},
    {"vendor": "Dahua", "country": "US"}, {"source": "Outlet 7"}, {"until": "2025-12-31", "action": "removal"},
]  # fmt: skip


def _pools() -> tuple[list[str], list[str]]:
    """The demo's sentences, from its on-topic and its off-topic articles."""
    pools: tuple[list[str], list[str]] = ([], [])
    for article in load_demo_articles():
        for paragraph in article.paragraphs:
            pools[0 if article.on_topic else 1].extend(s.strip() for s in SENTENCE.split(paragraph) if len(s.split()) >= 6)
    return pools


def fill(sessions, start: int, count: int, directions: np.ndarray, seed: int) -> float:
    """Insert count articles (ids start+1…), each its own story, in batches; returns the seconds taken."""
    rng, np_rng, (on_topic, off_topic) = random.Random(seed), np.random.default_rng(seed), _pools()
    began = time.perf_counter()
    with sessions.begin() as session:
        if start == 0:
            session.execute(insert(Feed), [{"id": i + 1, "name": f"Outlet {i}", "url": f"https://outlet{i}.example/rss", "interval_seconds": 1800,
                                            "tags": [], "active": True, "error_count": 0, "created_at": NOW} for i in range(OUTLETS)])  # fmt: skip
    for offset in range(start, start + count, BATCH):
        ids = range(offset + 1, min(offset + BATCH, start + count) + 1)
        noise = np_rng.normal(size=(len(ids), directions.shape[1])).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        subject = np_rng.integers(0, len(directions), len(ids))
        vectors = 0.6 * directions[subject] + 0.8 * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        stories, articles, views = [], [], []
        for row, i in enumerate(ids):
            when = NOW - timedelta(days=DAYS * rng.random())
            relevant = rng.random() < 0.10
            tags = {
                "vendors": rng.sample(VENDORS, rng.randint(1, 2)) if relevant or rng.random() < 0.3 else [],
                "countries": rng.sample(COUNTRIES, 1) if relevant or rng.random() < 0.5 else [],
                "actions": rng.sample(ACTIONS, rng.randint(1, 2)) if relevant else [],
            }
            share = 0.8 if relevant else 0.03  # of sentences drawn from the on-topic articles
            pick = lambda: rng.choice(on_topic if rng.random() < share else off_topic)  # noqa: E731
            body = " ".join(pick() for _ in range(rng.randint(14, 26)))
            title = " ".join(pick().rstrip(".").split()[: rng.randint(7, 12)])
            url = f"https://news.example/{i}"
            stories.append({"id": i, "title": title, "url": url, "first_seen_at": when, "last_updated_at": when, "published_at": when, "article_count": 1, **tags})
            articles.append({"id": i, "url": url, "original_url": url, "feed_id": rng.randint(1, OUTLETS), "title": title, "site_name": f"Outlet {rng.randrange(OUTLETS)}",
                             "text": body, "summary": "", "text_source": "page", "content_hash": f"{i:064d}", "embedding": vectors[row].tobytes(),
                             "published_at": when, "fetched_at": when, "story_id": i})  # fmt: skip
            views.append({"story_id": i, "topic": TOPIC, "score": rng.uniform(0.6, 1) if relevant else rng.uniform(0, 0.4), "relevant": relevant, "relevant_since": when if relevant else None})
        with sessions.begin() as session:
            session.execute(insert(Story), stories)
            session.execute(insert(Article), articles)
            session.execute(insert(StoryTopic), views)
    return time.perf_counter() - began


def _queries(rng: random.Random) -> list[dict]:
    return [{"q": rng.choice(SUBJECTS), **FILTERS[n % len(FILTERS)]} for n in range(QUERIES)]


def measure(client: TestClient, queries: list[dict], mode: str, **extra) -> dict:
    times, found = [], 0
    for params in queries:
        started = time.perf_counter()
        answer = client.get("/api/search", params={**params, "mode": mode, **extra})
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        found += answer.json()["total"] > 0
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))], "answered": found / len(queries)}


def index_sizes(engine) -> dict:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sizes = dict(connection.execute(text("SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'articles_fts%' GROUP BY name")).all())
            return {"words index": sum(sizes.values())}
        column = connection.execute(text("SELECT SUM(pg_column_size(search_vector)) FROM articles")).scalar()
        gin = connection.execute(text("SELECT pg_relation_size('ix_articles_search_vector')")).scalar()
        return {"words index": column + gin, "tsvector column": column, "GIN index": gin}


def vector_alternatives(matrix: np.ndarray, probes: np.ndarray, k: int = 200) -> dict:
    """Per-query milliseconds of k-NN by NumPy (the chosen way) and by sqlite-vec (the rejected one), same vectors."""
    index = VectorIndex()
    index._append([(i + 1, row.tobytes()) for i, row in enumerate(matrix)])
    started = time.perf_counter()
    for probe in probes:
        index.nearest(probe, k)
    result = {"numpy_ms": (time.perf_counter() - started) * 1000 / len(probes)}
    among = np.arange(1, len(matrix) + 1, 10)
    started = time.perf_counter()
    for probe in probes:
        index.nearest(probe, k, among=among)
    result["numpy_filtered_ms"] = (time.perf_counter() - started) * 1000 / len(probes)
    try:
        import pysqlite3.dbapi2 as sqlite3
        import sqlite_vec
    except ImportError:
        return result | {"sqlite_vec_ms": None}
    connection = sqlite3.connect(":memory:")
    connection.enable_load_extension(True)
    sqlite_vec.load(connection)
    connection.execute(f"CREATE VIRTUAL TABLE vec USING vec0(embedding float[{matrix.shape[1]}] distance_metric=cosine)")
    connection.executemany("INSERT INTO vec(rowid, embedding) VALUES (?, ?)", ((i + 1, row.tobytes()) for i, row in enumerate(matrix)))
    started = time.perf_counter()
    for probe in probes:
        connection.execute("SELECT rowid, distance FROM vec WHERE embedding MATCH ? AND k = ?", (probe.tobytes(), k)).fetchall()
    connection.close()
    return result | {"sqlite_vec_ms": (time.perf_counter() - started) * 1000 / len(probes)}


def run_store(url: str, embedder, directions: np.ndarray) -> list[dict]:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    settings = Settings(database_url=url, config=ROOT / "feeds.yaml")
    rows = []
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Article))  # a kept file's articles (BENCH_ARCHIVE_KEEP)
    for size in (size for size in SIZES if size >= stored):
        built = fill(sessions, stored, size - stored, directions, seed=size) if size > stored else 0.0
        stored = size
        vectors = VectorIndex()
        client = TestClient(create_app(sessions=sessions, embedder=embedder, config=load_config(settings.config), settings=settings, vectors=vectors))
        started = time.perf_counter()
        with sessions() as session:
            vectors.refresh(session)
        loaded = time.perf_counter() - started
        queries = _queries(random.Random(size))
        measure(client, queries[:5], "hybrid")  # warm the caches and the model
        row = {"store": engine.dialect.name, "articles": size, "insert_s": built, "vectors_load_s": loaded, "vector_mb": vectors.nbytes / 1e6}
        row |= {mode: measure(client, queries, mode) for mode in ("words", "meaning", "hybrid")}
        row["facets"] = measure(client, queries, "hybrid", facets="true")  # what the search page asks: hybrid with facet counts
        row |= {name: value / 1e6 for name, value in index_sizes(engine).items()}
        rows.append(row)
    engine.dispose()
    return rows


def main() -> dict:
    embedder = SentenceTransformerEmbedder()
    directions = embedder.embed(SUBJECTS)
    started = time.perf_counter()
    for phrase in SUBJECTS * 5:
        embedder.embed([phrase])
    embed_ms = (time.perf_counter() - started) * 1000 / (len(SUBJECTS) * 5)
    rows = []
    if KEEP:
        rows += run_store(f"sqlite:///{KEEP}", embedder, directions)
    else:
        with tempfile.TemporaryDirectory() as folder:
            rows += run_store(f"sqlite:///{folder}/archive.db", embedder, directions)
    name = f"bench_archive_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"archive: PostgreSQL skipped ({exc})")
    else:
        try:
            rows += run_store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", embedder, directions)
        finally:
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    np_rng = np.random.default_rng(1)
    vectors = {}
    for size in SIZES:
        matrix = np_rng.normal(size=(size, directions.shape[1])).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors[size] = vector_alternatives(matrix, directions)
    return {"rows": rows, "embed_ms": embed_ms, "vectors": vectors}


def report(result: dict) -> None:
    print(f"archive search through the API, with filters (p50 / p95 ms; the query's embedding, {result['embed_ms']:.1f} ms, included in meaning and hybrid):")
    print(f"  {'store':<10} {'articles':>8} {'words':>13} {'meaning':>13} {'hybrid':>13} {'+ facets':>13}  {'word index':>10} {'vectors':>8}  insert")
    for row in result["rows"]:
        cells = " ".join(f"{row[m]['p50']:>5.1f} / {row[m]['p95']:>5.1f}" for m in ("words", "meaning", "hybrid", "facets"))
        print(f"  {row['store']:<10} {row['articles']:>8,} {cells}  {row['words index']:>7.0f} MB {row['vector_mb']:>5.0f} MB  {row['insert_s']:.0f} s"
              + (f" (GIN {row['GIN index']:.0f} MB)" if "GIN index" in row else ""))  # fmt: skip
    for size, figures in result["vectors"].items():
        vec = f"{figures['sqlite_vec_ms']:.1f} ms" if figures["sqlite_vec_ms"] is not None else "not installed"
        print(f"  k-NN (k=200) over {size:,} vectors: NumPy {figures['numpy_ms']:.1f} ms ({figures['numpy_filtered_ms']:.1f} ms among a tenth), sqlite-vec {vec}")


if __name__ == "__main__":
    report(main())
