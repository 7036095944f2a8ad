"""The ONNX Runtime backends: exported once from the packaged model, reused after, and embedding as torch does."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.config import Settings
from monitor.embed import SentenceTransformerEmbedder
from monitor.embed_onnx import FLOAT_FILE, INT8_FILE

TEXTS = [
    "Denmark bans Hikvision cameras from government buildings over security concerns",
    "The city council voted to remove Dahua surveillance equipment from schools.",
    "Local bakery wins award for its sourdough bread",
    "Le Parlement européen interdit les caméras chinoises dans ses locaux.",
]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One export (and one int8 form) for the whole session: each takes a while."""
    cache = tmp_path_factory.mktemp("onnx")
    for backend in ("onnx", "onnx-int8"):
        SentenceTransformerEmbedder(backend=backend, cache_dir=cache).embed(["warm up"])
    return cache


def exported(cache) -> dict[str, float]:
    return {str(path.relative_to(cache)): path.stat().st_mtime_ns for path in cache.glob("*/*.onnx")}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # both unit length


def test_the_export_is_made_once_and_reused(onnx_cache):
    before = exported(onnx_cache)
    assert sorted(name.split("/", 1)[1] for name in before) == sorted([FLOAT_FILE, INT8_FILE])
    for backend in ("onnx", "onnx-int8"):
        SentenceTransformerEmbedder(backend=backend, cache_dir=onnx_cache).embed(TEXTS)
    assert exported(onnx_cache) == before


def test_onnx_embeds_as_torch_does_and_int8_nearly(onnx_cache, embedder):
    reference = embedder.embed(TEXTS)
    onnx = SentenceTransformerEmbedder(backend="onnx", cache_dir=onnx_cache).embed(TEXTS)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=onnx_cache).embed(TEXTS)
    assert onnx.shape == int8.shape == reference.shape and onnx.dtype == np.float32
    assert cosines(onnx, reference).min() >= 0.99
    assert cosines(int8, reference).min() >= 0.97


def test_settings_choose_the_backend_and_tokens(tmp_path):
    embedder = SentenceTransformerEmbedder.from_settings(
        Settings(embed_backend="onnx-int8", embed_max_tokens=128, model_cache=tmp_path)
    )
    assert (embedder.backend, embedder.max_tokens, embedder.cache_dir) == ("onnx-int8", 128, tmp_path / "onnx")
    with pytest.raises(ValueError, match="unknown embedding backend"):
        SentenceTransformerEmbedder(backend="tensorflow")
