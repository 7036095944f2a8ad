"""Placing a new article in its story at a year's archive (1,000,000 articles by default): cost, and the indexes' memory.

The archive is built once and cached (bench/cache.py; `BENCH_ARTICLES` sets its size): articles spread over a
year, each its own story; those of the indexes' windows (the last 8 days) with full texts, MinHash and vectors,
the older ones with a line of text only (nothing reads more of them when placing). Each run places 500 new
articles in a copy of it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from monitor.dedup import Deduper, Incoming, content_hash, signature, signature_to_bytes
from monitor.deps import Deps
from monitor.domain import TopicVerdict
from monitor.storing import place
from monitor.placement import load_deduper
from monitor.store import repository as repo
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Story

from bench import cache
from bench.newsgen import sentence_pool

NEW = 500
DAYS = 365
WINDOW_DAYS = 8  # a day more than the indexes' longest window
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
BATCH = 20_000
TODAY = {"index_ms": 2.75, "fold_ms": 5.7, "kb_per_article": 17.0}  # issue 16, at 100,000 articles, before the compact indexes


def _texts(count: int, rng: random.Random) -> list[str]:
    pool = sentence_pool()
    return [" ".join(rng.choice(pool) for _ in range(8)) for _ in range(count)]


def _vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_archive(sessions, count: int) -> None:
    """count articles spread over a year, each its own story; the windows' articles with text, MinHash and vector."""
    rng, np_rng, pool = random.Random(3), np.random.default_rng(3), sentence_pool()
    recent = NOW - timedelta(days=WINDOW_DAYS)
    for start in range(0, count, BATCH):
        stop = min(start + BATCH, count)
        when = [NOW - timedelta(days=DAYS * (count - i) / count) for i in range(start, stop)]
        full = [w >= recent for w in when]
        texts = [" ".join(rng.choice(pool) for _ in range(8)) if f else rng.choice(pool) for f in full]
        vectors = _vectors(sum(full), np_rng)
        rows, used = [], 0
        for i, w, f, body in zip(range(start, stop), when, full, texts):
            rows.append({"id": i + 1, "url": f"https://archive.example/{i}", "original_url": f"https://archive.example/{i}", "title": f"story {i}",
                         "text": body, "text_source": "page", "summary": "", "content_hash": content_hash(body) if f else f"{i:064x}",
                         "minhash": signature_to_bytes(signature(body)) if f else None, "embedding": vectors[used].tobytes() if f else None,
                         "published_at": w, "fetched_at": w, "story_id": i + 1})  # fmt: skip
            used += f
        with sessions.begin() as session:
            session.execute(
                insert(Story),
                [{"id": i + 1, "title": f"story {i}", "url": f"https://archive.example/{i}", "first_seen_at": w,
                  "last_updated_at": w, "published_at": w, "article_count": 1, "vendors": [], "countries": [], "actions": []}
                 for i, w in zip(range(start, stop), when)],
            )  # fmt: skip
            session.execute(insert(Article), rows)


def cached_archive(count: int) -> tuple[Path, float]:
    """The cached SQLite archive of count articles (built when missing) and the seconds its building took now."""
    path = cache.folder() / f"stories-{count}.db"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    building = path.with_suffix(".building")
    building.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{building}")
    upgrade(engine)
    build_archive(session_factory(engine), count)
    engine.dispose()
    building.rename(path)
    return path, time.perf_counter() - started


class _Unused:
    """Deps fields the placement step never touches."""


def main(count: int = cache.ARTICLES) -> dict:
    archive, built = cached_archive(count)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(archive, f"{tmp}/archive.db")  # the cached one stays as built
        engine = make_engine(f"sqlite:///{tmp}/archive.db")
        sessions = session_factory(engine)
        deduper = Deduper()  # its libraries imported before memory is traced: only the indexes count
        tracemalloc.start()
        start = time.perf_counter()
        load_deduper(deduper, sessions, topic="t", now=NOW)
        loaded = time.perf_counter() - start
        index_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        deps = Deps(settings=None, sessions=sessions, fetcher=_Unused(), embedder=_Unused(), scorers=[], deduper=deduper)
        rng, np_rng = random.Random(9), np.random.default_rng(9)
        texts, vectors = _texts(NEW, rng), _vectors(NEW, np_rng)
        verdict = TopicVerdict(topic="t", score=0.9, relevant=True, vendors=["Hikvision"], countries=["GB"], actions=["ban"])
        items, ids = [], []
        with sessions.begin() as session:
            for i in range(NEW):
                candidate = repo.Candidate(feed_id=None, url=f"https://new.example/{i}", original_url=f"https://new.example/{i}",
                                           title=f"new {i}", text=texts[i], text_source="page", published=NOW)  # fmt: skip
                items.append(repo.StoredArticle(candidate, content_hash(texts[i]), vectors[i].tobytes(), [verdict]))
            ids = list(repo.add_articles(session, items, now=NOW).values())
        spent = {"minhash": [0.0, 0.0], "index": [0.0, 0.0], "fold": [0.0, 0.0]}  # wall and CPU seconds: on a busy machine, CPU is what the work costs
        for item, article_id, vector, text in zip(items, ids, vectors, texts):
            started = time.perf_counter(), time.process_time()
            sig = signature(text)  # the pipeline makes it before placing, outside the placement lock, as it does the vector
            _add(spent["minhash"], started)
            started = time.perf_counter(), time.process_time()
            deduper.place(Incoming(article_id, item.content_hash, sig, vector, NOW))
            _add(spent["index"], started)
            with sessions.begin() as session:
                started = time.perf_counter(), time.process_time()
                place(session, deps, article_id, item, sig, vector, NOW)
                _add(spent["fold"], started)
        engine.dispose()
    return {
        "archive": count,
        "archive_build_s": built,
        "indexed_articles": len(deduper),
        "index_load_s": loaded,
        "index_mb": index_bytes / 1e6,
        "kb_per_article": index_bytes / 1e3 / max(len(deduper), 1),
        "fold_ms": spent["fold"][0] / NEW * 1000,
        "fold_cpu_ms": spent["fold"][1] / NEW * 1000,
        "index_ms": spent["index"][0] / NEW * 1000,
        "index_cpu_ms": spent["index"][1] / NEW * 1000,
        "minhash_ms": spent["minhash"][0] / NEW * 1000,
        "minhash_cpu_ms": spent["minhash"][1] / NEW * 1000,
    }


def _add(total: list[float], started: tuple[float, float]) -> None:
    total[0] += time.perf_counter() - started[0]
    total[1] += time.process_time() - started[1]


def report(result: dict) -> None:
    print(f"stories: placing one article in its story at an archive of {result['archive']:,} ({cache.machine()}):")
    print(f"  in the indexes (MinHash, LSH, vector lookup): {result['index_ms']:.2f} ms, {result['index_cpu_ms']:.2f} ms of CPU (before: {TODAY['index_ms']} ms at 100,000)")
    print(f"  its text's MinHash, made before placing (as the embedding is): {result['minhash_ms']:.2f} ms, {result['minhash_cpu_ms']:.2f} ms of CPU")
    print(f"  with its story rows written (goal <= 5 ms): {result['fold_ms']:.2f} ms, {result['fold_cpu_ms']:.2f} ms of CPU (before: {TODAY['fold_ms']} ms at 100,000)")
    print(
        f"  indexes hold the {result['indexed_articles']:,} articles of the last 7 days: {result['index_mb']:.1f} MB, "
        f"{result['kb_per_article']:.1f} KB per article (goal <= 4.25; before: {TODAY['kb_per_article']:.0f} KB), "
        f"loaded from the store in {result['index_load_s']:.1f} s on start"
        + (f"; archive built in {result['archive_build_s']:.0f} s (cached)" if result["archive_build_s"] else "")
    )


if __name__ == "__main__":
    report(main())
