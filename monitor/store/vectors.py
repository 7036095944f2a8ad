"""Vector search over the article embeddings: exact, in memory (NumPy), or in PostgreSQL where pgvector serves it."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Literal

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import Engine, bindparam, cast, func, literal_column, select, text
from sqlalchemy.orm import Session

from monitor.store.memory_filters import StoryFilters
from monitor.store.models import Article, Feed, Story

FULL_RELOAD_SECONDS = 3600  # vectors replaced in place (an edited article) are picked up within this
APPROXIMATE_FROM = 50_000  # vectors in memory beyond which an unfiltered search pre-selects by sign bits
RESCORED = 10_000  # at least this many pre-selected rows are scored exactly (recall@20 0.975 at a million, bench/archive.py)

# migration 0006's objects, on a PostgreSQL with pgvector only
VECTOR_COLUMN = "embedding_vector"
VECTOR_INDEX = "ix_articles_embedding_vector"
EXACT_UP_TO = 20_000  # filtered meaning search reads this many vectors exactly; beyond, the HNSW index serves
# candidates the HNSW index scan keeps (hnsw.ef_search), pgvector's most: at a million, recall@20 against exact search
# 0.953 (0.902 at 200, what the search asks; 0.823 at pgvector's default, 40) for 16 ms a search against 7 (bench/archive.py)
EF_SEARCH = 1000
ITERATIVE_SINCE = (0, 8)  # pgvector's iterative index scans: a filtered search reads on through the index until k rows pass
# In relaxed order, rows may come slightly out of distance order (put back in order here) for a better recall, and
# the scan may read up to MAX_SCAN_TUPLES index tuples (pgvector's default 20,000). At a million, recall@20 against
# exact search, Hikvision / since 1 January: strict order 0.750 / 0.779 (not higher with more tuples), relaxed 0.892 /
# 0.912, relaxed with 50,000 tuples 0.971 / 0.954 for 5-10 % more time (bench/archive.py).
ITERATIVE_ORDER = "relaxed_order"
MAX_SCAN_TUPLES = 50_000

_vector = literal_column(f"articles.{VECTOR_COLUMN}", Vector())
_served: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_iterative: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_HAS_COLUMN = text(
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('articles') AND attname = :name AND NOT attisdropped)"
)


VectorSearch = Literal["auto", "memory", "database"]  # MONITOR_VECTOR_SEARCH


def in_database(session: Session) -> bool:
    """Whether the store can search vectors itself (PostgreSQL with migration 0006's column); asked once per engine."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    engine = bind.engine
    served = _served.get(engine)
    if served is None:
        served = _served[engine] = bool(session.scalar(_HAS_COLUMN, {"name": VECTOR_COLUMN}))
    return served


def has_iterative_scans(version: str) -> bool:
    """Whether a pgvector version ("0.8.0") scans its HNSW index on until enough rows pass the filters."""
    parts = [int(part) for part in version.split(".")[:2] if part.isdigit()]
    return tuple(parts) >= ITERATIVE_SINCE


def iterative_scans(session: Session) -> bool:
    """Whether the server's pgvector has iterative index scans; asked once per engine."""
    engine = session.get_bind().engine
    known = _iterative.get(engine)
    if known is None:
        version = session.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        known = _iterative[engine] = has_iterative_scans(version or "0")
    return known


def nearest_in_database(session: Session, vector: np.ndarray, k: int, filters: list = ()) -> list[tuple[int, float]]:
    """The k articles closest to vector by cosine, best first, among those of the stories the filters let through.

    Unfiltered, or when more than EXACT_UP_TO articles pass the filters, pgvector's HNSW index serves:
    where the server's pgvector has iterative scans (0.8 and later), it reads on through the index until
    k rows pass the filters (in relaxed order, sorted here); before that it yields up to EF_SEARCH candidates
    and the filters apply to those (approximate: a filter that keeps a small share of a large archive
    may find fewer). Otherwise an exact scan of the articles the filters let through, like the
    in-memory search.
    """
    if k <= 0:
        return []
    query = cast(np.asarray(vector, dtype=np.float32), Vector())
    distance = _vector.cosine_distance(query)  # <=>
    statement = select(Article.id, 1 - distance).where(_vector.is_not(None))
    exact = False
    if filters:
        statement = statement.join(Story, Story.id == Article.story_id).where(*filters)
        passing = statement.with_only_columns(Article.id).limit(EXACT_UP_TO + 1).subquery()
        exact = session.scalar(select(func.count()).select_from(passing)) <= EXACT_UP_TO
    if not exact:
        settings = {"hnsw.ef_search": str(EF_SEARCH)}
        if filters and iterative_scans(session):
            settings |= {"hnsw.iterative_scan": ITERATIVE_ORDER, "hnsw.max_scan_tuples": str(MAX_SCAN_TUPLES)}
        session.execute(select(*(func.set_config(name, value, True) for name, value in settings.items())))  # for this transaction, in one round trip
    # the index serves only ORDER BY the distance alone; `+ 0` keeps the planner off it, for an exact scan
    order = (distance + literal_column("0"), Article.id) if exact else (distance,)
    rows = session.execute(statement.order_by(*order).limit(k)).all()
    return sorted(((article_id, float(cosine)) for article_id, cosine in rows), key=lambda row: (-row[1], row[0]))


def _stored_since(*, vectors: bool):
    """Each article stored after an id, with its story, outlet names and (where held in memory) its vector."""
    embedding = (Article.embedding,) if vectors else ()
    return (
        select(Article.id, Article.story_id, Article.site_name, Feed.name, *embedding)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .where(Article.id > bindparam("after"))
        .order_by(Article.id)
    )


_STORED_SINCE = {vectors: _stored_since(vectors=vectors) for vectors in (False, True)}  # built once: a search may refresh


class VectorIndex:
    """NumPy search over article embeddings held in memory; refreshed incrementally from the store.

    Up to approximate_from vectors, one exact product. Beyond, the whole matrix (1.5 GB at a million) is not
    read: each vector's signs are kept as bits (48 bytes), the rows nearest in Hamming distance are
    pre-selected and only those scored exactly, 5-6x faster at a million. Chosen over sqlite-vec by
    measurement (bench/archive.py), and the same code serves PostgreSQL without pgvector. Readers take one
    consistent snapshot; refresh appends behind them under a lock. Where the store searches vectors itself
    (in_database), search asks the store, and only the stories' filters are held.

    Where that is, is chosen by `where`: "memory", "database" (pgvector wherever migration 0006 made its column),
    or "auto", which is memory on every pgvector measured: at a million articles, pgvector 0.8.5 with its iterative
    index scans took 1.7 s a filtered search (reading each vector a narrow filter lets through from the table) and
    found 0.70 of the true 20 nearest for a wide one, pgvector 0.6.2 1.1 s; here 0.1 s and 0.975 (README, "A year's
    archive"). "database" spares each web process the vectors (1.6 GB at a million) where memory is short.
    """

    def __init__(self, *, where: VectorSearch = "auto", approximate_from: int = APPROXIMATE_FROM) -> None:
        self.where = where
        self.approximate_from = approximate_from
        self._lock = threading.Lock()
        self.stories = StoryFilters()
        self._clear()
        self._loaded_at = float("-inf")

    def _clear(self) -> None:
        # capacity buffers, the first _size rows filled; the signs column-major: (64-bit words, rows); each row's story id (0: none)
        self._ids, self._matrix, self._signs = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.uint64)
        self._stories = np.zeros(0, dtype=np.int64)
        self._size, self._last_id = 0, 0
        self._snapshot = (self._ids, self._matrix, self._signs, self._stories)

    def __len__(self) -> int:
        return len(self._snapshot[0])

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self._snapshot) + self.stories.nbytes

    def in_database(self, session: Session) -> bool:
        """Whether searches through this index run in the store (pgvector) rather than in memory."""
        return self.where == "database" and in_database(session)

    @property
    def holds(self) -> bool:
        """Whether the stories' filters are held, to count facets and list the newest stories from (at a million,
        counting every relevant story took the store 1.2 s on SQLite, 2 s on PostgreSQL): after a refresh that found articles."""
        return self._last_id > 0

    def refresh(self, session: Session, *, full: bool = False) -> None:
        """Load the vectors of articles stored since the last call (cheap when none); all of them hourly or when full.

        The stories' filters held beside them follow (monitor/store/memory_filters.py); where the store searches the
        vectors itself, only those are held.
        """
        database = self.in_database(session)
        with self._lock:
            full = full or time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
            if full:
                self._clear()
                self._loaded_at = time.monotonic()
            rows = session.execute(_STORED_SINCE[not database], {"after": self._last_id}).all()
            if rows:
                self._last_id = rows[-1][0]
            if rows and not database:
                self._append([(article_id, vector, story) for article_id, story, _, _, vector in rows if vector is not None])
            self.stories.refresh(session, [(site, feed, story) for _, story, site, feed, *_ in rows], full=full)

    def _append(self, rows: list) -> None:
        """Add rows of (id, float32 bytes, story id or None) in id order, growing the buffers by doubling (readers keep the old ones)."""
        if not rows:
            return
        width = self._matrix.shape[1] if self._size else len(rows[0][1]) // 4
        rows = [row for row in rows if len(row[1]) == width * 4]  # vectors of another model are left out
        if not rows:
            return
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), width)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        size, needed = self._size, self._size + len(rows)
        ids, matrix, signs, stories = self._ids, self._matrix, self._signs, self._stories
        if needed > len(ids):
            capacity = max(needed, 2 * len(ids), 1024)
            ids, matrix, stories = np.zeros(capacity, dtype=np.int64), np.zeros((capacity, width), dtype=np.float32), np.zeros(capacity, dtype=np.int64)
            signs = np.zeros((_words(width), capacity), dtype=np.uint64)
            if size:
                ids[:size], matrix[:size], signs[:, :size], stories[:size] = self._ids[:size], self._matrix[:size], self._signs[:, :size], self._stories[:size]
        ids[size:needed] = [row[0] for row in rows]
        matrix[size:needed] = vectors / np.where(norms == 0, 1, norms)
        signs[:, size:needed] = _sign_bits(vectors).T
        stories[size:needed] = [row[2] or 0 for row in rows]
        self._ids, self._matrix, self._signs, self._stories, self._size = ids, matrix, signs, stories, needed
        self._snapshot = (ids[:needed], matrix[:needed], signs[:, :needed], stories[:needed])

    def nearest(self, vector: np.ndarray, k: int, *, exact: bool = False, stories: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k articles closest to vector by cosine, best first; only those of the stories marked True in stories
        (a bool per story id, StoryFilters.passing) when it is given.

        Exact with exact, up to approximate_from vectors, or where stories let through at most RESCORED * 2 rows;
        otherwise approximate: only the rows (of those let through) whose signs differ least (RESCORED of them, or
        2k if more) are scored.
        """
        ids, matrix, signs, row_stories = self._snapshot
        vector = np.asarray(vector, dtype=np.float32)
        if not len(ids) or k <= 0 or vector.shape != (matrix.shape[1],):
            return []
        allowed = None
        if stories is not None:
            allowed = np.zeros(len(ids), dtype=bool)
            known = (row_stories > 0) & (row_stories < len(stories))  # an article in no story, or one not held yet, passes no filter
            allowed[known] = stories[row_stories[known]]
        if exact or len(ids) <= self.approximate_from or (allowed is not None and np.count_nonzero(allowed) <= 2 * RESCORED):
            rows = np.arange(len(ids)) if allowed is None else np.flatnonzero(allowed)
            # a few rows: read only those (memory bandwidth is the cost); most rows: one product over all
            scores = matrix[rows] @ vector if len(rows) < len(ids) // 2 else (matrix @ vector)[rows]
        else:
            rows = _fewest_differing(signs, _sign_bits(vector[None, :])[0], max(RESCORED, 2 * k), allowed)
            scores = matrix[rows] @ vector
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return list(zip(ids[rows[order]].tolist(), scores[order].tolist()))


def _words(width: int) -> int:
    return -(-width // 64)


def _sign_bits(vectors: np.ndarray) -> np.ndarray:
    """Each vector's signs (bit set where positive) as 64-bit words, one row per vector."""
    packed = np.packbits(vectors > 0, axis=1)
    padded = np.zeros((len(vectors), _words(vectors.shape[1]) * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view(np.uint64)


def _fewest_differing(signs: np.ndarray, query: np.ndarray, count: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of about count rows (of the allowed ones, when given) whose signs differ least from the query's (all
    those at the cut-off distance)."""
    distance = np.zeros(signs.shape[1], dtype=np.uint16)
    differing, bits = np.empty(signs.shape[1], dtype=np.uint64), np.empty(signs.shape[1], dtype=np.uint8)
    for word, row in zip(query, signs):  # a word at a time: contiguous arrays, no (rows, words) temporaries
        np.bitwise_xor(row, word, out=differing)
        np.bitwise_count(differing, out=bits)
        distance += bits
    far = np.iinfo(np.uint16).max  # the distance given to rows not allowed: further than any row's signs can differ
    if allowed is not None:
        distance[~allowed] = far
    within = np.searchsorted(np.cumsum(np.bincount(distance)), count)  # the distance at which count rows are reached
    return np.flatnonzero(distance <= min(within, far - 1))
