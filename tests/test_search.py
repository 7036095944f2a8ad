"""The archive's search engine on both stores: words, meaning, hybrid, filters, snippets, safety, fresh indexes."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone

import numpy as np
import pytest
from alembic import command
from sqlalchemy import delete, func, inspect, select, update
from typer.testing import CliRunner

from monitor.domain import Candidate, TopicVerdict
from monitor.embed import to_bytes
from monitor.store import repository as repo
from monitor.store.db import alembic_config, make_engine, session_factory
from monitor.store.hits import HEADLINE_CHARS, RUN_GAP, SNIPPET_WORDS, page_hits
from monitor.store.models import Article
from monitor.store.search import (
    SearchError,
    SearchQuery,
    VectorIndex,
    filter_options,
    search,
    similar_stories,
)
from monitor.store.terms import fuse, parse_terms

from bench.archive_data import fill

from .conftest import later_tables_stand_in


TOPIC = "china-surveillance-bans"
NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
CANADA = "Canada orders Hikvision and Dahua cameras stripped from federal buildings"
AUSTRALIA = "Australian Defence Force bans DJI drones and orders fleet grounded"
AARHUS = "Aarhus councillors vote to stop buying Chinese-made surveillance cameras"
NEW_ZEALAND = "Hikvision launches legal challenge to New Zealand government camera ban"
BRISTOL = "Bristol councillors clash over police use of live facial recognition"
BRAZIL = "Brazil's soybean farmers take to the skies as DJI spraying drones boom"
NASTY = [
    '"unbalanced quote',
    'Hikvision" AND "',
    "* ^ : NEAR(a b) AND OR NOT ( ) - -- + ~ \\",
    "NEAR",
    "title:Hikvision",
    "-Hikvision",
    "'; DROP TABLE articles; --",
    "1 OR 1=1",
    "x" * 10_000,
    "Hikvision " * 2_000,
    "🙂🎥🚫",
    "海康威视 摄像头 禁令",
    "حظر كاميرات هيكفيجن",
    "запрет камер Hikvision",
    "nul\x00byte",
    "lone \udcff surrogate",
    "<script>alert(1)</script>",
    "%s %(q)s {q} $1 ?",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def archive(demo_archive):
    vectors = VectorIndex()
    with demo_archive.sessions() as session:
        vectors.refresh(session)
    return demo_archive.url, demo_archive.sessions, vectors


def find(archive, embedder, q: str = "", **fields):
    _url, sessions, vectors = archive
    query = SearchQuery(q=q, **fields)
    vector = embedder.embed([q])[0] if q.strip() and query.mode != "words" else None
    with sessions() as session:
        return search(session, query, vectors=vectors, query_vector=vector)


def titles(page) -> list[str]:
    return [hit.title for hit in page.results]


def test_words_find_stories_by_vendor_country_and_stem(archive, embedder):
    page = find(archive, embedder, "Hikvision", mode="words")
    assert {CANADA, NEW_ZEALAND} <= set(titles(page)) and page.total == len(page.results)
    assert all("<mark>Hikvision</mark>" in hit.snippet for hit in page.results)
    assert titles(find(archive, embedder, "Canada", mode="words"))[0] == CANADA
    assert AUSTRALIA in titles(find(archive, embedder, "drone grounding", mode="words"))  # stems: drones, grounded
    assert titles(find(archive, embedder, '"facial recognition"', mode="words", relevant=False)) == [BRISTOL]
    assert titles(find(archive, embedder, "facial -recognition", mode="words", relevant=False)) == []


def test_a_title_match_ranks_above_a_text_match(archive, embedder):
    hits = find(archive, embedder, "Canada", mode="words", relevant=False).results
    assert hits[0].title == CANADA and len(hits) > 1 and hits[0].rank > hits[1].rank


def test_meaning_finds_a_paraphrase_sharing_no_word_with_the_headline(archive, embedder):
    q = "soldiers told to stop flying unmanned aircraft from China"
    assert not set(q.lower().split()) & set(AUSTRALIA.lower().split())
    assert titles(find(archive, embedder, q, mode="meaning"))[0] == AUSTRALIA
    assert titles(find(archive, embedder, q, mode="words")) == []
    hybrid = find(archive, embedder, q)
    assert hybrid.query.mode == "hybrid" and titles(hybrid)[0] == AUSTRALIA


def test_hybrid_fuses_words_and_meaning(archive, embedder):
    page = find(archive, embedder, "Hikvision court challenge")
    assert titles(page)[0] == NEW_ZEALAND
    assert "<mark>" in page.results[0].snippet
    assert fuse([1, 2, 3], [3, 1])[1] == pytest.approx(1 / 61 + 1 / 62)
    assert max(fuse([1, 2, 3], [3, 1]).items(), key=lambda kv: kv[1])[0] == 1


def test_each_hit_says_how_it_matched(archive, embedder):
    by_title = {hit.title: hit for hit in find(archive, embedder, "Hikvision", per_page=100).results}
    aarhus, canada = by_title[AARHUS], by_title[CANADA]  # Aarhus never names Hikvision: found by meaning alone
    assert aarhus.matched == "meaning" and 0.2 <= aarhus.similarity < 1 and "<mark>" not in aarhus.snippet
    assert canada.matched == "both" and 0 < canada.similarity < 1 and "<mark>Hikvision</mark>" in canada.snippet
    assert {hit.matched for hit in by_title.values()} <= {"words", "meaning", "both"}
    assert all(hit.similarity is not None for hit in by_title.values())  # words-only ones too: their nearest article
    words_only = find(archive, embedder, "Hikvision", mode="words").results
    assert {(hit.matched, hit.similarity) for hit in words_only} == {("words", None)}
    meaning_only = find(archive, embedder, "Hikvision", mode="meaning").results
    assert {hit.matched for hit in meaning_only} == {"meaning"} and all(hit.similarity >= 0.2 for hit in meaning_only)
    assert {(hit.matched, hit.similarity) for hit in find(archive, embedder).results} == {(None, None)}


def test_snippets_leave_out_the_section_name_and_headline_that_open_a_text(archive, embedder):
    for mode in ("words", "hybrid", "meaning"):
        for hit in find(archive, embedder, "Hikvision", mode=mode, per_page=100).results:
            text = hit.snippet.replace("<mark>", "").replace("</mark>", "").lstrip("…")
            assert not text.startswith(("World", "Business", "Tech", "Security")), (mode, hit.snippet)
            assert hit.title not in text, (mode, hit.snippet)
    canada = find(archive, embedder, "Hikvision Canada", mode="words").results[0]
    assert canada.title == CANADA and "<mark>" in canada.snippet  # the passage that names it, after the headline


def test_facet_counts_say_what_ticking_a_value_would_show(archive, embedder):
    q = "Hikvision"
    vector = embedder.embed([q])[0]
    _url, sessions, vectors = archive

    def run(query: str, **fields):
        with sessions() as session:
            return search(session, SearchQuery(q=query, **fields), vectors=vectors, query_vector=vector if query else None, facets=True)

    keys = {"vendors": "vendors", "countries": "countries", "actions": "actions", "sources": "sources"}
    for query, mode in (("", "hybrid"), (q, "words"), (q, "hybrid")):
        page = run(query, mode=mode, per_page=100)
        assert set(page.facets) == set(keys) and any(count for values in page.facets.values() for _, count in values)
        for facet, values in page.facets.items():
            counts = [count for _, count in values]
            assert counts == sorted(counts, reverse=True)
            for value, count in values:
                assert run(query, mode=mode, per_page=100, **{keys[facet]: (value,)}).total == count, (query, mode, facet, value)
        ticked = run(query, mode=mode, vendors=("Hikvision",))
        assert ticked.facets["vendors"] == page.facets["vendors"]  # a facet's own choice leaves its counts alone
        for value, count in ticked.facets["countries"]:
            assert run(query, mode=mode, per_page=100, vendors=("Hikvision",), countries=(value,)).total == count
    assert run("").facets["countries"] and find(archive, embedder).facets is None  # counted only when asked


@pytest.mark.parametrize("mode", ["words", "meaning", "hybrid"])
def test_filters_apply_to_stories(archive, embedder, mode):
    q = "cameras drones ban" if mode != "words" else "ban"

    def found(**filters):
        return set(titles(find(archive, embedder, q, mode=mode, per_page=100, **filters)))

    everything = found(relevant=False)
    relevant = found()
    assert relevant < everything and BRISTOL not in relevant
    assert found(vendors=("dji",), relevant=False) <= {AUSTRALIA, BRAZIL} and AUSTRALIA in found(vendors=("DJI",))
    assert found(countries=("nz",)) == {NEW_ZEALAND}
    assert found(countries=("CA", "DK")) <= {CANADA, AARHUS} and CANADA in found(countries=("CA", "DK"))
    assert found(actions=("procurement_restriction",)) == {AARHUS} or mode == "words"
    assert found(sources=("The Sample Herald",)) == relevant
    assert found(sources=("the sample herald (world)",)) and found(sources=("the sample herald (world)",)) < relevant
    assert found(sources=("Nobody's Gazette",)) == set()
    on_the_18th = found(since=date(2026, 11, 18), until=date(2026, 11, 18), relevant=False)
    assert on_the_18th and CANADA in on_the_18th and AUSTRALIA not in on_the_18th
    assert found(since=date(2026, 11, 23)) == set()


def test_relevant_only_and_pagination_of_an_empty_query(archive, embedder):
    relevant = find(archive, embedder, per_page=100)
    assert relevant.total == 7 and all(hit.score > 0 for hit in relevant.results)
    pages = [find(archive, embedder, relevant=False, per_page=7, page=n) for n in range(1, 6)]
    assert {p.total for p in pages} == {30} and [len(p.results) for p in pages] == [7, 7, 7, 7, 2]
    ids = [hit.story_id for p in pages for hit in p.results]
    assert len(set(ids)) == 30
    dates = [hit.published for p in pages for hit in p.results]
    assert dates == sorted(dates, reverse=True)
    assert find(archive, embedder, relevant=False, per_page=7, page=6).results == []


def test_words_pagination_and_newest_sort(archive, embedder):
    first = find(archive, embedder, "the", mode="words")  # a stop word alone: nothing to search for
    assert first.total == 0 and "no words to search for" in first.notice
    pages = [find(archive, embedder, "said", mode="words", relevant=False, per_page=4, page=n) for n in (1, 2, 3)]
    total = pages[0].total
    assert total > 8 and {p.total for p in pages} == {total}
    ids = [hit.story_id for p in pages for hit in p.results]
    assert len(ids) == len(set(ids)) == 12
    beyond = find(archive, embedder, "said", mode="words", relevant=False, per_page=4, page=50)
    assert beyond.results == [] and beyond.total == total
    newest = find(archive, embedder, "Hikvision", sort="newest", per_page=100)
    dates = [hit.published for hit in newest.results]
    assert dates == sorted(dates, reverse=True) and newest.total == len(dates)


def test_hits_carry_what_the_pages_show(archive, embedder):
    hit = find(archive, embedder, "Canada Hikvision", mode="words").results[0]
    assert (hit.title, hit.vendors, hit.countries, hit.actions) == (CANADA, ["Hikvision", "Dahua"], ["CA"], ["removal"])
    assert hit.sources == ["The Sample Herald"] and hit.url.endswith(".html") and hit.published.tzinfo
    assert hit.article_id > 0 and 0 < hit.score <= 1


@pytest.mark.parametrize("mode", ["words", "meaning", "hybrid"])
def test_nasty_queries_never_raise(archive, embedder, mode):
    _url, sessions, _vectors = archive
    for q in NASTY:
        page = find(archive, embedder, q.encode("utf-8", "replace").decode() if mode != "words" else q, mode=mode)
        assert page.total >= 0 and all("<script>" not in hit.snippet for hit in page.results)
    assert find(archive, embedder, "x" * 10_000, mode=mode).notice.startswith("the query was cut to 500 characters")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 30


def test_a_query_that_cannot_run_says_why(archive, embedder):
    for fields, message in [
        ({"mode": "fuzzy"}, "mode must be one of words, meaning, hybrid"),
        ({"sort": "oldest"}, "sort must be one of best, newest"),
        ({"page": 0}, "page must be between 1"),
        ({"page": 10**30}, "page must be between 1"),
        ({"per_page": 1000}, "per_page must be between 1 and 100"),
        ({"since": date(2026, 2, 1), "until": date(2026, 1, 1)}, "since (2026-02-01) is after until (2026-01-01)"),
        ({"until": date(9999, 12, 31)}, "until must be a day between 1900-01-01 and 2999-12-31, not 9999-12-31"),
        ({"since": date(1, 1, 1)}, "since must be a day between 1900-01-01 and 2999-12-31, not 0001-01-01"),
    ]:
        with pytest.raises(SearchError, match=message.replace("(", r"\(").replace(")", r"\)")):
            find(archive, embedder, "Hikvision", **fields)


def test_filter_options_and_similar_stories(archive, embedder):
    _url, sessions, vectors = archive
    with sessions() as session:
        options = filter_options(session)
        assert {"Hikvision", "Dahua", "DJI"} <= set(options["vendors"])
        assert {"CA", "AU", "NZ", "DK"} <= set(options["countries"]) and "removal" in options["actions"]
        assert options["sources"] == ["The Sample Herald"]
        canada = find(archive, embedder, "Canada", mode="words").results[0]
        similar = similar_stories(session, canada.story_id, topic=TOPIC, vectors=vectors, k=3)
    assert len(similar) == 3 and canada.story_id not in {hit.story_id for hit in similar}
    assert "Hikvision" in {vendor for hit in similar for vendor in hit.vendors}


def test_vector_index_finds_the_nearest_among_the_stories_asked_for():
    index = VectorIndex()
    axes = np.eye(4, dtype=np.float32)
    index._append([(10, (2 * axes[0]).tobytes(), 1), (20, axes[1].tobytes(), 2)])
    index._append([(30, (axes[0] + axes[1]).tobytes(), 1), (40, axes[2].tobytes(), 3), (50, axes[0].tobytes(), None)])  # grows past its first rows
    nearest = index.nearest(axes[0], 2)
    assert [i for i, _ in nearest] == [10, 50] and nearest[0][1] == pytest.approx(1.0)  # stored vectors are normalised
    stories = np.array([True, False, True, True])  # by story id; no story has id 0, and an article in none is never let through
    assert [i for i, _ in index.nearest(axes[0], 5, stories=stories)] == [20, 40]
    assert [i for i, _ in index.nearest(axes[0], 5, stories=np.array([False, False, True]))] == [20]  # story 3 is past the end: not known yet
    assert index.nearest(axes[0], 5, stories=np.zeros(4, dtype=bool)) == [] and index.nearest(np.ones(3), 5) == []


def test_parse_terms_quotes_every_word():
    terms = parse_terms('Hikvision\'s "facial recognition" -TikTok the NEAR( * "unbalanced')
    assert terms.include == (("hikvision",), ("facial", "recognition"), ("near",), ("unbalanced",))
    assert terms.exclude == (("tiktok",),)
    assert terms.fts5() == '("hikvision" AND "facial recognition" AND "near" AND "unbalanced") NOT "tiktok"'


def test_search_command_table_and_json(archive, monkeypatch):
    url, _sessions, _vectors = archive
    if not url.startswith("sqlite"):
        pytest.skip("the command is tested once, on SQLite")
    from monitor.cli import app

    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    runner = CliRunner()
    result = runner.invoke(app, ["search", "Hikvision", "--mode", "words", "--country", "CA", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 1 and data["results"][0]["title"] == CANADA
    design = {"story_id", "title", "url", "published", "score", "vendors", "countries", "actions", "sources", "snippet"}
    assert set(data["results"][0]) == design | {"article_id", "matched", "similarity"} and data["results"][0]["matched"] == "words"
    assert "<mark>" not in data["results"][0]["snippet"]  # plain text for scripts; the API keeps the marks
    result = runner.invoke(app, ["search", "soldiers told to stop flying aircraft", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "Australian" in result.stdout and "DJI" in result.stdout and "1 story" in result.stdout  # a rich table
    assert "meaning" in result.stdout and "similar" in result.stdout  # how each story matched
    result = runner.invoke(app, ["search", "x", "--mode", "fuzzy"])
    assert result.exit_code == 2 and "mode must be one of" in result.output
    result = runner.invoke(app, ["search", "Hikvision", "--until", "9999-12-31"])
    assert result.exit_code == 2 and "until must be a day between 1900-01-01 and 2999-12-31" in result.output


# --- the indexes follow the store: each test on a fresh database of its own


def store(sessions, embedder, url: str, title: str, text: str, **tags) -> int:
    verdict = TopicVerdict(topic=TOPIC, score=0.9, relevant=True, **tags)
    item = repo.StoredArticle(
        Candidate(feed_id=None, url=url, original_url=url, title=title, text=text, text_source="page", published=NOW),
        hashlib.sha256(text.encode()).hexdigest(),
        to_bytes(embedder.embed([f"{title}\n{text}"])[0]),
        [verdict],
    )
    with sessions.begin() as session:
        article_id = repo.add_articles(session, [item], now=NOW)[url]
        repo.place_article(session, article_id, story_id=None, duplicate_of_id=None, copy_kind=None, tags=verdict, verdicts=[verdict], now=NOW)
    return article_id


def words(sessions, q: str, vectors: VectorIndex | None = None):
    with sessions() as session:
        return search(session, SearchQuery(q=q, mode="words"), vectors=vectors or VectorIndex(), query_vector=None)


def test_snippets_escape_what_they_show(sessions, embedder):
    store(sessions, embedder, "https://x.example/1", "<script>alert(1)</script> Hikvision ban", "Officials & <b>councils</b> said <script>alert(1)</script> the ban on Hikvision stands.")
    page = words(sessions, "councils")
    snippet = page.results[0].snippet
    assert "<script>" not in snippet and "<b>" not in snippet
    assert "<mark>councils</mark>" in snippet and "Officials &amp;" in snippet
    if sessions.kw["bind"].dialect.name == "sqlite":  # PostgreSQL's ts_headline leaves tags out; FTS5 keeps the text as it is
        assert "&lt;b&gt;<mark>councils</mark>&lt;/b&gt;" in snippet and "&lt;script&gt;" in snippet
    assert page.results[0].title.startswith("<script>")  # the hit holds the raw title; pages escape it


def test_snippets_mark_the_words_of_hits_close_together_and_far_apart(sessions):
    """FTS5 reads a page's hits within their rowid range where they lie close together, and seeks each where they
    are spread out (hits.RUN_GAP, as meaning finds them): the same marked passages either way."""
    fill(sessions, 0, 30, np.eye(384, dtype=np.float32)[:5], seed=3)
    fill(sessions, 30 + RUN_GAP, 30, np.eye(384, dtype=np.float32)[:5], seed=4)  # ids from RUN_GAP + 31 on
    near, far = [1, 2, 3], [RUN_GAP + 31, RUN_GAP + 32]
    terms = parse_terms("said")
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        snippets = {}
        for ids in ([near[0]], near, far, near + far):
            hits = page_hits(session, dialect, [(i, i, 0.0) for i in ids], terms, TOPIC, matched={}, similarity={})
            assert [hit.article_id for hit in hits] == ids
            for hit in hits:
                assert "<mark>said</mark>" in hit.snippet.lower(), hit.snippet
                assert snippets.setdefault(hit.article_id, hit.snippet) == hit.snippet


def test_private_use_characters_in_an_article_never_become_marks(sessions, embedder):
    """U+E000 and U+E001 mark matched words inside the database: an article holding them is stored without them."""
    text = "Officials said \ue000the council\ue001 removed \ue001cameras\ue000 from the harbour offices last week."
    store(sessions, embedder, "https://x.example/private-use", "Harbour \ue000cameras\ue001 removed", text)
    for query in ("harbour", "officials"):
        snippet = words(sessions, query).results[0].snippet
        assert "\ue000" not in snippet and "\ue001" not in snippet
        assert snippet.count("<mark>") == snippet.count("</mark>") == 1, snippet
    assert "the council removed cameras" in words(sessions, "officials").results[0].snippet


def test_indexes_follow_inserts_updates_and_deletes(sessions, embedder):
    vectors = VectorIndex()
    first = store(sessions, embedder, "https://x.example/a", "Dahua cameras removed from council offices", "The council removed every Dahua camera.")
    assert words(sessions, "Dahua").total == 1
    store(sessions, embedder, "https://x.example/b", "Harbour drones grounded", "The port authority grounded its Chinese-made drones.")
    assert words(sessions, "harbour").total == 1  # a new article is searchable at once

    edited = repo.StoredArticle(
        Candidate(feed_id=None, url="https://x.example/a", original_url="https://x.example/a", title="Uniview cameras removed from council offices",
                  text="The council removed every Uniview camera.", text_source="page", published=NOW),
        "f" * 64,
        to_bytes(embedder.embed(["Uniview cameras removed"])[0]),
        [TopicVerdict(topic=TOPIC, score=0.9, relevant=True)],
    )
    with sessions.begin() as session:
        assert repo.update_article(session, edited, now=NOW) is not None
    assert words(sessions, "Dahua").total == 0 and words(sessions, "Uniview").total == 1

    with sessions() as session:
        vectors.refresh(session)
    assert len(vectors) == 2
    with sessions.begin() as session:
        session.execute(delete(Article).where(Article.id == first))
    assert words(sessions, "Uniview").total == 0
    with sessions() as session:
        query = SearchQuery(q="council cameras", mode="meaning")
        page = search(session, query, vectors=vectors, query_vector=embedder.embed(["council cameras"])[0])
    assert first not in {hit.article_id for hit in page.results}  # the index still holds it; the store does not


def test_the_migration_indexes_articles_stored_before_it_and_downgrades(database_url, embedder):
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0003")
    sessions = session_factory(engine)
    with later_tables_stand_in(engine):
        store(sessions, embedder, "https://x.example/old", "Hytera radios banned", "Police stopped buying Hytera radios.")
    command.upgrade(config, "head")
    assert words(sessions, "Hytera").total == 1
    command.downgrade(config, "0003")
    names = set(inspect(engine).get_table_names()) | {c["name"] for c in inspect(engine).get_columns("articles")}
    assert not {n for n in names if n.startswith("articles_fts") or n == "search_vector"}
    command.upgrade(config, "head")
    assert words(sessions, "Hytera").total == 1
    engine.dispose()


def test_the_migration_takes_the_sentinels_out_of_articles_stored_before_it(database_url, embedder):
    engine = make_engine(database_url)
    command.upgrade(alembic_config(engine), "0006")
    sessions = session_factory(engine)
    with later_tables_stand_in(engine):
        article_id = store(sessions, embedder, "https://x.example/old", "Harbour cameras", "Old harbour text.")
    with sessions.begin() as session:
        session.execute(update(Article).where(Article.id == article_id).values(text="Old \ue001harbour\ue000 text."))
    command.upgrade(alembic_config(engine), "head")
    with sessions() as session:
        assert session.get(Article, article_id).text == "Old harbour text."
    assert words(sessions, "harbour").results[0].snippet.count("<mark>") == 1
    engine.dispose()


def test_words_follow_articles_moved_between_stories_and_stories_deleted(sessions, embedder):
    from sqlalchemy import text

    from monitor.store.models import Story

    first = store(sessions, embedder, "https://x.example/p", "Police stop buying Hytera radios", "The police stopped buying Hytera radios.")
    second = store(sessions, embedder, "https://x.example/c", "Council drops Hytera radios", "The council dropped its Hytera radios.")
    with sessions() as session:
        story_of = {a: session.get(Article, a).story_id for a in (first, second)}
    assert {hit.story_id for hit in words(sessions, "Hytera").results} == set(story_of.values()) and len(set(story_of.values())) == 2

    with sessions.begin() as session:
        session.get(Article, second).story_id = story_of[first]  # the second article joins the first's story
    page = words(sessions, "council Hytera")
    assert page.total == 1 and page.results[0].story_id == story_of[first] and page.results[0].article_id == second
    assert words(sessions, "Hytera").total == 1

    with sessions.begin() as session:
        session.execute(delete(Article).where(Article.id == second))
    assert words(sessions, "council Hytera").total == 0 and words(sessions, "Hytera").total == 1
    with sessions.begin() as session:
        session.execute(delete(Story).where(Story.id == story_of[first]))  # its articles keep no story (ON DELETE SET NULL)
    assert words(sessions, "Hytera").total == 0

    navy = store(sessions, embedder, "https://x.example/n", "Navy bans Hytera radios", "The navy banned Hytera radios.")
    with sessions.begin() as session:  # an article stored straight into a story
        story_id = session.get(Article, navy).story_id
        url = "https://x.example/a"
        session.add(Article(url=url, original_url=url, title="Army bans Hytera radios", summary="", text="", text_source="feed",
                            content_hash="a" * 64, fetched_at=NOW, story_id=story_id))  # fmt: skip
    page = words(sessions, "army Hytera")
    assert page.total == 1 and page.results[0].story_id == story_id
    if sessions.kw["bind"].dialect.name == "sqlite":  # the narrow map that word search joins follows articles
        with sessions() as session:
            stored = session.execute(text("SELECT id, story_id FROM articles WHERE story_id IS NOT NULL ORDER BY id")).all()
            assert session.execute(text("SELECT article_id, story_id FROM article_stories ORDER BY article_id")).all() == stored


def test_snippets_mark_words_that_first_appear_deep_in_a_long_text(sessions, embedder):
    """PostgreSQL highlights each text's first HEADLINE_CHARS, and the whole text only where its passage lies past them."""
    filler = " ".join(f"Paragraph {n} of the council's report covered budgets, roads and libraries." for n in range(60))
    near_cut = filler[: HEADLINE_CHARS - 40] + " The harbour authority removed its cameras. " + filler
    store(sessions, embedder, "https://x.example/deep", "Council report", filler + " The harbour authority removed its cameras. " + filler)
    store(sessions, embedder, "https://x.example/near-cut", "Budget report", near_cut.replace("harbour", "quayside"))
    for word in ("harbour", "quayside"):
        snippet = words(sessions, word).results[0].snippet
        assert f"<mark>{word}</mark> authority removed its cameras. Paragraph" in snippet, snippet
        assert snippet.endswith("…") and len(snippet.split()) >= SNIPPET_WORDS, snippet
