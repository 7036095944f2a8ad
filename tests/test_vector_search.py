"""Meaning search at scale: the in-memory index's pre-selection by signs, and filters asked of the nearest articles only."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from monitor.store import search as search_module
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.filters import SearchQuery, story_filters
from monitor.store.models import Story
from monitor.store.search import VectorIndex, search
from monitor.store.vectors import RESCORED

from bench.archive_data import NOW, TOPIC, fill, noisy

WIDTH = 100  # not a multiple of 64: the last word of signs is padded


def clustered(count: int, seed: int, centres: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """count vectors around a few directions (as articles gather around subjects), and those directions."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(centres, WIDTH)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return noisy(directions, count, rng), directions


def indexed(vectors: np.ndarray, **options) -> VectorIndex:
    index = VectorIndex(**options)
    for start in range(0, len(vectors), 7_000):  # in pieces: the buffers of signs grow with the rest
        index._append([(start + i + 1, row.tobytes(), start + i + 1) for i, row in enumerate(vectors[start : start + 7_000])])  # a story each
    return index


def test_past_its_threshold_the_index_finds_nearly_what_exact_search_finds():
    vectors, directions = clustered(60_000, seed=1)
    approximate, exact = indexed(vectors, approximate_from=1_000), indexed(vectors, approximate_from=10**9)
    probes = np.vstack([directions[:10], vectors[::6_000]])
    found = [approximate.nearest(probe, 20) for probe in probes]
    truth = [exact.nearest(probe, 20) for probe in probes]
    recall = np.mean([len({a for a, _ in got} & {a for a, _ in want}) / 20 for got, want in zip(found, truth)])
    assert recall >= 0.95
    for probe, got in zip(probes, found):  # scores are exact cosines, best first
        assert [score for _, score in got] == sorted((score for _, score in got), reverse=True)
        assert [score for _, score in got] == pytest.approx([float(vectors[a - 1] @ probe) / float(np.linalg.norm(probe)) for a, _ in got], abs=1e-5)
    assert [a for a, _ in approximate.nearest(probes[0], 20, exact=True)] == [a for a, _ in truth[0]]


def test_an_approximate_search_can_miss_what_exact_search_finds_and_exact_does_not():
    """Rows whose signs all match the query's crowd out the one nearest whose small parts point the other way."""
    query = np.full(WIDTH, -0.1, dtype=np.float32)
    query[0] = 10.0
    nearest = -query
    nearest[0] = 10.0  # cosine 0.98 with the query, its other signs all opposite
    crowd = np.abs(np.random.default_rng(2).normal(size=(RESCORED * 2, WIDTH))).astype(np.float32) * np.sign(query)
    crowd[:, 0] = 1.0  # signs as the query's, cosine about 0.2
    index = indexed(np.vstack([crowd, nearest]), approximate_from=1_000)
    nearest_id = len(crowd) + 1
    assert nearest_id not in {a for a, _ in index.nearest(query, 5)}
    assert index.nearest(query, 5, exact=True)[0][0] == nearest_id


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """3,000 articles, one story each, a tenth relevant, tagged, with vectors around 20 neighbouring directions."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('vectors') / 'monitor.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    rng = np.random.default_rng(3)
    common, spread = rng.normal(size=384), rng.normal(size=(20, 384))
    directions = (common / np.linalg.norm(common) + 0.6 * spread / np.linalg.norm(spread, axis=1, keepdims=True)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)  # near each other: most articles are above the floor
    fill(sessions, 0, 3_000, directions, seed=3)
    index = VectorIndex()
    with sessions() as session:
        index.refresh(session)
    yield sessions, index, directions
    engine.dispose()


FILTERS = [
    {},  # relevant only
    {"relevant": False},
    {"vendors": ("Uniview",)},
    {"vendors": ("Uniview",), "countries": ("LT",)},  # a handful of stories
    {"relevant": False, "actions": ("sanction",), "since": NOW.date() - timedelta(days=200)},
    {"until": NOW.date() - timedelta(days=365), "countries": ("us", "GB ")},  # case and spaces aside, as the store compares
    {"sources": ("outlet 3",)},  # by page or by feed
]


def allowed_stories(session, query: SearchQuery) -> np.ndarray:
    """The store's own answer, as a bool per story id: the stories its filters let through."""
    stories = np.zeros(session.scalar(select(func.max(Story.id))) + 1, dtype=bool)
    stories[session.scalars(select(Story.id).where(*story_filters(query, "sqlite"))).all()] = True
    return stories


@pytest.mark.parametrize("fields", FILTERS, ids=["relevant", "all", "vendor", "vendor-country", "action-since", "until-countries", "source"])
def test_filtered_meaning_search_finds_the_nearest_stories_the_filters_let_through(archive, monkeypatch, fields):
    """The filters held in memory let through the stories the store's do, and the search returns the nearest of those."""
    sessions, index, directions = archive
    monkeypatch.setattr(search_module, "CANDIDATES", 20)
    query = SearchQuery(q="anything", mode="meaning", topic=TOPIC, per_page=100, **fields)
    with sessions() as session:
        allowed = allowed_stories(session, query)
    held = index.stories.passing(query)
    assert held is None if not story_filters(query, "sqlite") else np.array_equal(held, allowed) and 0 < allowed.sum() < len(allowed) - 1
    for probe in directions[:5]:
        with sessions() as session:
            page = search(session, query, vectors=index, query_vector=probe)
        expected = [a for a, cosine in index.nearest(probe, 20, exact=True, stories=allowed) if cosine >= search_module.MEANING_FLOOR]
        assert [hit.article_id for hit in page.results] == expected


def test_past_its_threshold_a_filtered_search_finds_nearly_what_exact_search_finds_among_the_stories_let_through():
    vectors, directions = clustered(60_000, seed=4)
    index = indexed(vectors, approximate_from=1_000)
    stories = np.random.default_rng(4).random(60_001) < 0.5
    stories[0] = False
    probes = np.vstack([directions[:10], vectors[::6_000]])
    found = [index.nearest(probe, 20, stories=stories) for probe in probes]
    truth = [index.nearest(probe, 20, exact=True, stories=stories) for probe in probes]
    assert all(stories[a] for got in found for a, _ in got)  # each article is its own story here
    recall = np.mean([len({a for a, _ in got} & {a for a, _ in want}) / 20 for got, want in zip(found, truth)])
    assert recall >= 0.95
