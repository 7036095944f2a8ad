"""Folding a new article into an archive of 100,000 stored articles: cost beyond the embedding, and index memory."""

from __future__ import annotations

import random
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import insert

from monitor.dedup import Deduper, Incoming, content_hash, signature, signature_to_bytes
from monitor.deps import Deps
from monitor.domain import TopicVerdict
from monitor.pipeline import _place
from monitor.placement import load_deduper
from monitor.store import repository as repo
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Story

from bench.newsgen import sentence_pool

ARCHIVE = 100_000
NEW = 500
DAYS = 365
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def _texts(count: int, rng: random.Random) -> list[str]:
    pool = sentence_pool()
    return [" ".join(rng.choice(pool) for _ in range(8)) for _ in range(count)]


def _vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_archive(sessions, count: int) -> None:
    """count articles spread over a year, each its own story, with text, MinHash and vector."""
    rng, np_rng = random.Random(3), np.random.default_rng(3)
    texts, vectors = _texts(count, rng), _vectors(count, np_rng)
    with sessions.begin() as session:
        for start in range(0, count, 5000):
            stop = min(start + 5000, count)
            when = [NOW - timedelta(days=DAYS * (count - i) / count) for i in range(start, stop)]
            session.execute(
                insert(Story),
                [{"id": i + 1, "title": f"story {i}", "url": f"https://archive.example/{i}", "first_seen_at": w,
                  "last_updated_at": w, "published_at": w, "article_count": 1, "vendors": [], "countries": [], "actions": []}
                 for i, w in zip(range(start, stop), when)],
            )
            session.execute(
                insert(Article),
                [{"id": i + 1, "url": f"https://archive.example/{i}", "original_url": f"https://archive.example/{i}", "title": f"story {i}",
                  "text": texts[i], "text_source": "page", "summary": "", "content_hash": content_hash(texts[i]),
                  "minhash": signature_to_bytes(signature(texts[i])), "embedding": vectors[i].tobytes(),
                  "published_at": w, "fetched_at": w, "story_id": i + 1}
                 for i, w in zip(range(start, stop), when)],
            )


class _Unused:
    """Deps fields the placement step never touches."""


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/archive.db")
        upgrade(engine)
        sessions = session_factory(engine)
        start = time.perf_counter()
        build_archive(sessions, ARCHIVE)
        built = time.perf_counter() - start
        tracemalloc.start()
        start = time.perf_counter()
        deduper = load_deduper(Deduper(), sessions, topic="t", now=NOW)
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
                                           title=f"new {i}", text=texts[i], text_source="page", published=NOW)
                items.append(repo.StoredArticle(candidate, content_hash(texts[i]), vectors[i].tobytes(), [verdict]))
            ids = list(repo.add_articles(session, items, now=NOW).values())
        index_work = fold = 0.0
        for item, article_id, vector, text in zip(items, ids, vectors, texts):
            started = time.perf_counter()
            probe = Incoming(article_id, item.content_hash, signature(text), vector, NOW)
            deduper.place(probe)
            index_work += time.perf_counter() - started
            with sessions.begin() as session:
                started = time.perf_counter()
                _place(session, deps, article_id, item, signature(text), vector, NOW)
                fold += time.perf_counter() - started
        engine.dispose()
    return {
        "archive": ARCHIVE,
        "archive_build_s": built,
        "indexed_articles": len(deduper),
        "index_load_s": loaded,
        "index_mb": index_bytes / 1e6,
        "fold_ms": fold / NEW * 1000,
        "index_ms": index_work / NEW * 1000,
    }


def report(result: dict) -> None:
    print(
        f"stories: folding one article into an archive of {result['archive']:,}: {result['index_ms']:.2f} ms in the indexes "
        f"(MinHash, LSH, vector lookup; goal <= 5 ms), {result['fold_ms']:.2f} ms with the story rows written"
    )
    print(
        f"  indexes hold the {result['indexed_articles']:,} articles of the last 7 days (copies) and 3 days (stories): {result['index_mb']:.0f} MB, "
        f"loaded from the store in {result['index_load_s']:.1f}s on start"
    )


if __name__ == "__main__":
    report(main())
