"""Exact vector search over the stored article embeddings, held in memory as one normalised float32 matrix."""

from __future__ import annotations

import threading
import time

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.store.models import Article

FULL_RELOAD_SECONDS = 3600  # vectors replaced in place (an edited article) are picked up within this


class VectorIndex:
    """Exact NumPy search over article embeddings held in memory; refreshed incrementally from the store.

    Chosen over sqlite-vec by measurement (bench/archive.py), and the same code serves PostgreSQL
    without pgvector. Readers take one consistent snapshot; refresh appends behind them under a lock.
    """

    def __init__(self) -> None:
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

    def refresh(self, session: Session, *, full: bool = False) -> None:
        """Load the vectors of articles stored since the last call (cheap when none); all of them hourly or when full."""
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
