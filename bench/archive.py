"""The archive's search at a year's scale (1,000,000 articles by default), on SQLite and on PostgreSQL with pgvector.

Latency through the JSON API (FastAPI's TestClient, in process; queries embedded by the real model) for words,
meaning and hybrid searches, each with a filter (vendor, country, action, source or dates), with facet counts, and
the listing without a query; on PostgreSQL with meaning where MONITOR_VECTOR_SEARCH=auto puts it, then in the other
place (memory or pgvector: meaning, hybrid, facets) beside it; pgvector's recall@20 against exact search, by
ef_search, and through the search's own path, unfiltered and filtered; index sizes.
The archives (bench/archive_data.py) are built once and cached: `BENCH_ARTICLES=100000 python -m bench.archive`
runs a smaller one; `python -m bench.archive sqlite` one store. Each figure is printed beside the one measured before issue 16 (at 100,000 articles).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from monitor.config import Settings, load_config
from monitor.embed import SentenceTransformerEmbedder
from monitor.store.db import make_engine, session_factory
from monitor.store.filters import SearchQuery, story_filters
from monitor.store.models import Article, Story
from monitor.store.search import CANDIDATES, VectorIndex
from monitor.store.memory_filters import StoryFilters
from monitor.store.vectors import nearest_in_database
from monitor.store.word_blocks import INDEX_PREFIX as BLOCK_INDEX_PREFIX
from monitor.store.words import RECENT_WORDS_TABLE
from monitor.web.app import create_app

from bench import cache
from bench.archive_data import TOPIC, evaluation_embeddings, pgvector_version, postgres_archive, sqlite_archive

ROOT = Path(__file__).resolve().parents[1]
QUERIES = 60  # per mode and store
SUBJECTS = [
    "camera ban", "Hikvision removal", "drones grounded", "Dahua cameras", "council procurement",
    "national security risk", "court challenge", "thermal cameras", "Huawei equipment", "surveillance contract",
    "ministers review", "parliament committee",
]  # fmt: skip
FILTERS = [
    {"vendor": "Hikvision"}, {"country": "GB"}, {"action": "ban"}, {"since": "2026-01-01"},
    {"vendor": "Dahua", "country": "US"}, {"source": "Outlet 7"}, {"until": "2025-12-31", "action": "removal"},
]  # fmt: skip
EF_SEARCH = (40, 100, 200, 400, 1000)  # pgvector's default to its most
MODES = ("words", "meaning", "hybrid", "facets", "listing")
# p50 / p95 ms measured before issue 16 at 100,000 articles (README); PostgreSQL then without pgvector
TODAY = {
    "sqlite": {"words": (29.7, 42.4), "meaning": (41.1, 54.9), "hybrid": (65.7, 78.0)},
    "postgresql": {"words": (77.5, 148.2), "meaning": (68.6, 78.3), "hybrid": (124.3, 199.7)},
}
GOALS = {"words": 50, "hybrid": 100}  # p95 ms


def _queries(rng: random.Random) -> list[dict]:
    return [{"q": rng.choice(SUBJECTS), **FILTERS[n % len(FILTERS)]} for n in range(QUERIES)]


def measure(client: TestClient, queries: list[dict], mode: str, server: Path | None = None, **extra) -> dict:
    """Wall milliseconds (p50, p95) and CPU milliseconds (mean): this process's, and the database server's when it is
    another (its data folder given), which a busy machine does not inflate as it does wall time."""
    times, found, by_filter = [], 0, {}
    cpu = time.process_time(), _server_cpu(server)
    for params in queries:
        client.app.state.archive.query_vector.cache_clear()  # each query embedded as a new one: the subjects repeat
        started = time.perf_counter()
        answer = client.get("/api/search", params={**params, "mode": mode, **extra})
        times.append((time.perf_counter() - started) * 1000)
        by_filter.setdefault(_label({name: value for name, value in params.items() if name != "q"}), []).append(times[-1])
        answer.raise_for_status()
        found += answer.json()["total"] > 0
    spent = time.process_time() - cpu[0] + _server_cpu(server) - cpu[1]
    times.sort()
    slowest = max(by_filter, key=lambda label: statistics.median(by_filter[label]))
    return {
        "p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))], "cpu": spent * 1000 / len(queries),
        "answered": found / len(queries), "slowest": (slowest or "none", statistics.median(by_filter[slowest])),
    }  # fmt: skip


def _server_cpu(data: Path | None) -> float:
    """CPU seconds spent so far by a PostgreSQL server's processes (the postmaster's children), from /proc."""
    if data is None or not (data / "postmaster.pid").exists():
        return 0.0
    postmaster = (data / "postmaster.pid").read_text().split()[0]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def index_sizes(engine) -> dict:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            by_index = "CASE WHEN name LIKE 'articles_fts_recent%' THEN 1 WHEN name LIKE 'articles_fts_b%' THEN 2 ELSE 0 END"
            sizes = dict(connection.execute(text(f"SELECT {by_index}, SUM(pgsize) FROM dbstat WHERE name LIKE 'articles_fts%' GROUP BY 1")).all())
            return {"words index": sizes.get(0, 0), "recent words index": sizes.get(1, 0), "word blocks": sizes.get(2, 0)}
        column = connection.execute(text("SELECT SUM(pg_column_size(search_vector)) FROM articles")).scalar()
        gin = connection.execute(text("SELECT pg_relation_size('ix_articles_search_vector')")).scalar()
        hnsw = connection.execute(text("SELECT pg_relation_size('ix_articles_embedding_vector')")).scalar()
        recent = connection.execute(text(f"SELECT pg_total_relation_size('{RECENT_WORDS_TABLE}')")).scalar()
        blocks = connection.execute(text(f"SELECT SUM(pg_relation_size(oid))::bigint FROM pg_class WHERE relname LIKE '{BLOCK_INDEX_PREFIX}%'")).scalar()
        return {"words index": column + gin, "GIN index": gin, "HNSW index": hnsw, "recent words index": recent, "word blocks": blocks or 0}


def recall(sessions, exact: VectorIndex, probes: np.ndarray, k: int = 20) -> dict:
    """pgvector's recall@k against exact search, and its milliseconds per query, at each ef_search; then through the
    search's own path (nearest_in_database, asked for CANDIDATES as the search asks), unfiltered and with each bench
    filter, against exact search among the stories it lets through."""
    truth = [{a for a, _ in exact.nearest(probe, k, exact=True)} for probe in probes]
    result: dict = {"unfiltered": {}, "filtered": {}}
    for ef in EF_SEARCH:
        found, started = 0, time.perf_counter()
        for probe, expected in zip(probes, truth):
            with sessions() as session:
                session.execute(select(func.set_config("hnsw.ef_search", str(ef), True)))
                rows = session.execute(
                    text("SELECT id FROM articles ORDER BY embedding_vector <=> CAST(:v AS vector) LIMIT :k"), {"v": str(probe.tolist()), "k": k}
                ).scalars()
                found += len(expected & set(rows))
        result["unfiltered"][ef] = {"recall": found / (k * len(probes)), "ms": (time.perf_counter() - started) * 1000 / len(probes)}
    found = 0  # the search's own path asks for CANDIDATES nearest, of which the page shows the first
    for probe, expected in zip(probes, truth):
        with sessions() as session:
            found += len(expected & {a for a, _ in nearest_in_database(session, probe, CANDIDATES)[:k]})
    result["filtered"]["none"] = found / (k * len(probes))
    for params in FILTERS:
        found = wanted = 0
        filters = story_filters(SearchQuery(q="", topic=TOPIC, **_filter_fields(params)), "postgresql")  # relevant only, as the API
        with sessions() as session:
            allowed = np.zeros(session.scalar(select(func.max(Story.id))) + 1, dtype=bool)
            allowed[session.scalars(select(Story.id).where(*filters)).all()] = True
        for probe in probes[:12]:
            with sessions() as session:
                expected = {a for a, _ in exact.nearest(probe, k, exact=True, stories=allowed)}
                rows = {a for a, _ in nearest_in_database(session, probe, CANDIDATES, filters)[:k]}
            found, wanted = found + len(expected & rows), wanted + len(expected)
        result["filtered"][_label(params)] = found / max(wanted, 1)
    return result


def memory_recall(vectors: VectorIndex, probes: np.ndarray, k: int = 20) -> dict:
    """The in-memory index's recall@k (pre-selection by signs) against its exact search, and milliseconds per query of each."""
    found, spent = 0, {"approximate": 0.0, "exact": 0.0}
    for probe in probes:
        started = time.perf_counter()
        approximate = {a for a, _ in vectors.nearest(probe, k)}
        middle = time.perf_counter()
        exact = {a for a, _ in vectors.nearest(probe, k, exact=True)}
        spent["approximate"] += middle - started
        spent["exact"] += time.perf_counter() - middle
        found += len(approximate & exact)
    return {"recall": found / (k * len(probes))} | {name: seconds * 1000 / len(probes) for name, seconds in spent.items()}


def _filter_fields(params: dict) -> dict:
    plural = {"vendor": "vendors", "country": "countries", "action": "actions", "source": "sources"}
    return {plural.get(name, name): (value,) if name in plural else date.fromisoformat(value) for name, value in params.items()}


def _label(params: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items())


def run_store(url: str, built: float, embedder, probes: np.ndarray | None = None, *, where: str = "auto", modes: tuple[str, ...] = MODES) -> dict:
    """One store's figures, meaning searched where `where` says (MONITOR_VECTOR_SEARCH); only `modes` timed."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    settings = Settings(database_url=url, config=ROOT / "feeds.yaml", vector_search=where)
    vectors = VectorIndex(where=where)
    client = TestClient(create_app(sessions=sessions, embedder=embedder, config=load_config(settings.config), settings=settings, vectors=vectors))
    started = time.perf_counter()
    with sessions() as session:
        vectors.refresh(session)
        articles = session.scalar(select(func.count()).select_from(Article))
    loaded = time.perf_counter() - started
    with sessions() as session:  # the stories' filters, loaded with the vectors (or alone where pgvector has those), timed alone
        started, filters = time.perf_counter(), StoryFilters()
        if vectors.holds:
            filters.refresh(session, [])  # the stories; the articles' outlets come in the vectors' own pass
        filters_loaded = time.perf_counter() - started
    queries = _queries(random.Random(articles))
    with sessions() as session:
        in_database = vectors.in_database(session)
    row = {"store": engine.dialect.name, "articles": articles, "insert_s": built, "vectors_load_s": loaded, "vector_mb": vectors.nbytes / 1e6}
    row |= {"meaning_in": "pgvector" if in_database else "memory", "where": where}
    row |= {"filters_load_s": filters_loaded, "filters_mb": filters.nbytes / 1e6} if vectors.holds else {}
    server = Path(make_url(url).query["host"]) / "data" if engine.dialect.name == "postgresql" else None
    listings = [{name: value for name, value in params.items() if name != "q"} for params in queries]
    with client:  # one event loop for every request, as a server has (not one started for each)
        measure(client, queries[:5], "hybrid")  # warm the caches and the model
        for mode in modes:
            if mode == "facets":  # what the search page asks: hybrid with facet counts
                row[mode] = measure(client, queries, "hybrid", server, facets="true")
            elif mode == "listing":  # the search page without a query: newest first, counted
                row[mode] = measure(client, listings, "hybrid", server, facets="true")
            else:
                row[mode] = measure(client, queries, mode, server)
    row |= {name: value / 1e6 for name, value in index_sizes(engine).items()}
    if len(vectors) and probes is not None:
        row["memory_recall"] = memory_recall(vectors, probes)
    if probes is not None and engine.dialect.name == "postgresql" and where != "database":
        exact = VectorIndex(where="memory")
        with sessions() as session:
            exact.refresh(session)
        row["recall"] = recall(sessions, exact, probes)
        row["pgvector"] = pgvector_version(url)
    engine.dispose()
    return row


def vector_alternatives(matrix: np.ndarray, probes: np.ndarray, k: int = 200) -> dict:
    """Per-query milliseconds of k-NN by NumPy (the chosen way: exact, and pre-selected by signs) and by sqlite-vec (the rejected one), same vectors."""
    index = VectorIndex(approximate_from=0)
    index._append([(i + 1, row.tobytes(), None) for i, row in enumerate(matrix)])
    result = {}
    for name, exact in (("numpy_ms", True), ("signs_ms", False)):
        started = time.perf_counter()
        for probe in probes:
            index.nearest(probe, k, exact=exact)
        result[name] = (time.perf_counter() - started) * 1000 / len(probes)
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


def main(size: int = cache.ARTICLES, stores: tuple[str, ...] = ("sqlite", "postgresql")) -> dict:
    embedder = SentenceTransformerEmbedder()
    directions = evaluation_embeddings(embedder)
    subjects = embedder.embed(SUBJECTS)
    started = time.perf_counter()
    for phrase in SUBJECTS * 5:
        embedder.embed([phrase])
    embed_ms = (time.perf_counter() - started) * 1000 / (len(SUBJECTS) * 5)
    probes = np.vstack([subjects, directions[np.random.default_rng(5).choice(len(directions), 48, replace=False)]])
    rows = [run_store(*sqlite_archive(size, directions), embedder, probes)] if "sqlite" in stores else []
    try:
        if "postgresql" in stores:
            with postgres_archive(size, directions) as (url, built):
                rows.append(run_store(url, built, embedder, probes))
                other = "database" if rows[-1]["meaning_in"] == "memory" else "memory"  # the other place beside it
                rows.append(run_store(url, 0.0, embedder, where=other, modes=("meaning", "hybrid", "facets")))
    except Exception as exc:  # noqa: BLE001 - the bench reports what it could measure
        print(f"archive: PostgreSQL with pgvector skipped ({type(exc).__name__}: {exc})")
    matrix = np.random.default_rng(1).normal(size=(min(size, 100_000), directions.shape[1])).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return {"rows": rows, "embed_ms": embed_ms, "vectors": {len(matrix): vector_alternatives(matrix, subjects)}, "machine": cache.machine()}


def report(result: dict) -> None:
    print(f"archive search through the API, with filters ({result['machine']}):")
    print(f"  p50 / p95 ms, and CPU ms a query (client and server; the query's embedding, {result['embed_ms']:.1f} ms, included in meaning")
    print("  and hybrid); [p50 / p95 before issue 16, at 100,000 articles, on a quiet machine]")
    for row in result["rows"]:
        store, before = row["store"], TODAY[row["store"]]
        held = f", meaning in {row['meaning_in']} (MONITOR_VECTOR_SEARCH={row['where']})"
        print(f"  {store} ({row['articles']:,} articles" + (f", pgvector {row['pgvector']}" if "pgvector" in row else "") + held + "):")
        for mode in (mode for mode in MODES if mode in row):
            figure, goal = row[mode], GOALS.get(mode)
            was = f"  [{before[mode][0]:.1f} / {before[mode][1]:.1f}]" if mode in before else ""
            met = f"  goal p95 <= {goal} ms: {'met' if figure['p95'] <= goal else 'missed'}" if goal else ""
            slowest = f"  slowest filter: {figure['slowest'][0]}, median {figure['slowest'][1]:.1f}" if mode in GOALS else ""
            print(f"    {mode:<8} {figure['p50']:>7.1f} / {figure['p95']:>7.1f}, CPU {figure['cpu']:>6.1f}{was}{met}{slowest}")
        sizes = f"words index {row['words index']:.0f} MB" + (f" (GIN {row['GIN index']:.0f} MB), HNSW {row['HNSW index']:.0f} MB" if "GIN index" in row else "")
        sizes += f", its last 120 days' {row['recent words index']:.0f} MB" if "recent words index" in row else ""
        sizes += f", its blocks' {row['word blocks']:.0f} MB" if "word blocks" in row else ""
        built = f"; built now in {row['insert_s']:.0f} s" if row["insert_s"] else " (cached)"
        print(f"    {sizes}; held in memory {row['vector_mb']:.0f} MB (vectors and the stories' filters), loaded in {row['vectors_load_s']:.1f} s{built}")
        if "filters_mb" in row:
            print(f"    the stories' filters beside them: {row['filters_mb']:.0f} MB, {row['filters_load_s']:.1f} s of that load")
        if "memory_recall" in row:
            figures = row["memory_recall"]
            print(f"    in memory, pre-selected by signs: recall@20 {figures['recall']:.3f} against exact, {figures['approximate']:.1f} ms a search (exact {figures['exact']:.1f} ms)")
        if "recall" in row:
            cells = ", ".join(f"ef_search {ef}: {v['recall']:.3f} ({v['ms']:.1f} ms)" for ef, v in row["recall"]["unfiltered"].items())
            print(f"    pgvector recall@20 against exact (goal >= 0.95): {cells}")
            cells = ", ".join(f"{name}: {value:.3f}" for name, value in row["recall"]["filtered"].items())
            print(f"    through the search's own path (its ef_search, {CANDIDATES} asked), by filter: {cells}")
    for size, figures in result["vectors"].items():
        vec = f"{figures['sqlite_vec_ms']:.1f} ms" if figures["sqlite_vec_ms"] is not None else "not installed"
        print(f"  k-NN (k=200) over {size:,} random vectors: NumPy exact {figures['numpy_ms']:.1f} ms, by signs {figures['signs_ms']:.1f} ms, sqlite-vec {vec}")


if __name__ == "__main__":
    import sys

    report(main(stores=tuple(sys.argv[1:]) or ("sqlite", "postgresql")))  # python -m bench.archive [sqlite] [postgresql]
