"""Vector search over the article embeddings: exact, in memory (NumPy), or in PostgreSQL where pgvector serves it."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import Engine, cast, func, literal_column, select, text
from sqlalchemy.orm import Session

from monitor.store.models import Article, Story

FULL_RELOAD_SECONDS = 3600  # vectors replaced in place (an edited article) are picked up within this

# migration 0006's objects, on a PostgreSQL with pgvector only
VECTOR_COLUMN = "embedding_vector"
VECTOR_INDEX = "ix_articles_embedding_vector"
EXACT_UP_TO = 20_000  # filtered meaning search reads this many vectors exactly; beyond, the HNSW index serves
EF_SEARCH_MIN, EF_SEARCH_MAX = 40, 1000  # pgvector's default and its maximum: the index scan yields at most this many
ITERATIVE_SINCE = (0, 8)  # pgvector's iterative index scans: a filtered search reads on through the index until k rows pass

_vector = literal_column(f"articles.{VECTOR_COLUMN}", Vector())
_served: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_iterative: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_HAS_COLUMN = text(
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('articles') AND attname = :name AND NOT attisdropped)"
)


def in_database(session: Session) -> bool:
    """Whether the store searches vectors itself (PostgreSQL with migration 0006's column); asked once per engine."""
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
    where the server's pgvector has iterative scans (0.8 and later), it reads on through the index, in
    distance order, until k rows pass the filters; before that it yields up to EF_SEARCH_MAX candidates
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
        iterative = bool(filters) and iterative_scans(session)
        ef_search = min(max(k, EF_SEARCH_MIN) if not filters or iterative else EF_SEARCH_MAX, EF_SEARCH_MAX)
        session.execute(select(func.set_config("hnsw.ef_search", str(ef_search), True)))  # for this transaction
        if iterative:
            session.execute(select(func.set_config("hnsw.iterative_scan", "strict_order", True)))
    # the index serves only ORDER BY the distance alone; `+ 0` keeps the planner off it, for an exact scan
    order = (distance + literal_column("0"), Article.id) if exact else (distance,)
    rows = session.execute(statement.order_by(*order).limit(k)).all()
    return [(article_id, float(cosine)) for article_id, cosine in rows]


class VectorIndex:
    """Exact NumPy search over article embeddings held in memory; refreshed incrementally from the store.

    Chosen over sqlite-vec by measurement (bench/archive.py), and the same code serves PostgreSQL
    without pgvector. Readers take one consistent snapshot; refresh appends behind them under a lock.
    Where the store searches vectors itself (in_database), it loads nothing and search asks the
    store, unless made with memory_only (to compare the two).
    """

    def __init__(self, *, memory_only: bool = False) -> None:
        self.memory_only = memory_only
        self._lock = threading.Lock()
        self._ids = np.zeros(0, dtype=np.int64)  # capacity buffers; the first _size rows are filled
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._size = 0
        self._snapshot = (self._ids, self._matrix)
        self._last_id = 0
        self._loaded_at = float("-inf")

    def __len__(self) -> int:
        return len(self._snapshot[0])

    @property
    def nbytes(self) -> int:
        ids, matrix = self._snapshot
        return ids.nbytes + matrix.nbytes

    def in_database(self, session: Session) -> bool:
        """Whether searches through this index run in the store (pgvector) rather than in memory."""
        return not self.memory_only and in_database(session)

    def refresh(self, session: Session, *, full: bool = False) -> None:
        """Load the vectors of articles stored since the last call (cheap when none); all of them hourly or when full.

        Nothing where the store searches vectors itself.
        """
        if self.in_database(session):
            return
        with self._lock:
            if full or time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS:
                self._ids, self._matrix, self._size, self._last_id = np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), 0, 0
                self._loaded_at = time.monotonic()
            rows = session.execute(
                select(Article.id, Article.embedding)
                .where(Article.id > self._last_id, Article.embedding.is_not(None))
                .order_by(Article.id)
            ).all()
            if rows:
                self._append(rows)

    def _append(self, rows: list) -> None:
        """Add rows of (id, float32 bytes) in id order, growing the buffers by doubling (readers keep the old ones)."""
        self._last_id = rows[-1][0]
        width = self._matrix.shape[1] if self._size else len(rows[0][1]) // 4
        rows = [row for row in rows if len(row[1]) == width * 4]  # vectors of another model are left out
        if not rows:
            return
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), width)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        size, needed = self._size, self._size + len(rows)
        ids, matrix = self._ids, self._matrix
        if needed > len(ids):
            capacity = max(needed, 2 * len(ids), 1024)
            ids, matrix = np.zeros(capacity, dtype=np.int64), np.zeros((capacity, width), dtype=np.float32)
            if size:
                ids[:size], matrix[:size] = self._ids[:size], self._matrix[:size]
        ids[size:needed] = [row[0] for row in rows]
        matrix[size:needed] = vectors / np.where(norms == 0, 1, norms)
        self._ids, self._matrix, self._size = ids, matrix, needed
        self._snapshot = (ids[:needed], matrix[:needed])

    def nearest(self, vector: np.ndarray, k: int, among: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k articles closest to vector by cosine, best first; only ids in among when it is given."""
        ids, matrix = self._snapshot
        vector = np.asarray(vector, dtype=np.float32)
        if not len(ids) or k <= 0 or vector.shape != (matrix.shape[1],):
            return []
        if among is None:
            rows, scores = np.arange(len(ids)), matrix @ vector
        else:
            among = np.asarray(among, dtype=np.int64)
            positions = np.searchsorted(ids, among)
            inside = positions < len(ids)
            rows = np.unique(positions[inside][ids[positions[inside]] == among[inside]])
            # a few rows: read only those (memory bandwidth is the cost); most rows: one product over all
            scores = matrix[rows] @ vector if len(rows) < len(ids) // 2 else (matrix @ vector)[rows]
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return [(int(ids[row]), float(score)) for row, score in zip(rows[order], scores[order])]
