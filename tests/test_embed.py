"""The embedder shared by a process's poll threads: calls at once go through the model together, each keeps its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

TEXTS = [f"The council of {town} removes {vendor} cameras from its buildings" for town in ("Leeds", "Bonn", "Perth", "Oslo") for vendor in ("Hikvision", "Dahua")]


def _at_once(embedder, texts) -> list:
    """Each text embedded by a thread of its own, the threads released together."""
    start = threading.Barrier(len(texts))

    def call(text):
        start.wait()
        try:
            return embedder.embed([text])
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(call, texts))


def test_calls_from_threads_at_once_run_through_the_model_together_and_each_gets_its_own_vectors(embedder):
    alone = [embedder.embed([text]) for text in TEXTS]
    before = embedder.batches_run
    together = _at_once(embedder, TEXTS)

    for mine, theirs in zip(alone, together):
        np.testing.assert_allclose(theirs, mine, atol=1e-4)
    assert embedder.batches_run - before < len(TEXTS)


def test_a_call_that_fails_fails_alone(embedder):
    texts = [*TEXTS[:3], b"not a text"]
    results = _at_once(embedder, texts)

    assert all(isinstance(result, np.ndarray) and result.shape == (1, embedder.dimension) for result in results[:3])
    assert isinstance(results[3], Exception)
    for text, result in zip(texts[:3], results[:3]):
        np.testing.assert_allclose(result, embedder.embed([text]), atol=1e-4)


def test_no_texts_need_no_model_run(embedder):
    before = embedder.batches_run
    assert embedder.embed([]).shape == (0, embedder.dimension)
    assert embedder.batches_run == before
