"""The archive's pages and JSON API on a stored demo archive, on SQLite and PostgreSQL, through FastAPI's TestClient."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime, timezone
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from monitor.notify.digest import build_digest
from monitor.notify.slack import alert_message, batch_message
from monitor.store.models import Article, Story
from monitor.store.search import VectorIndex
from monitor.store.views import story_views
from monitor.web.app import create_app

from .archive import build_demo_archive
from .conftest import archive_settings

ATOM = "{http://www.w3.org/2005/Atom}"
CONTRACT = {"story_id", "title", "url", "published", "score", "vendors", "countries", "actions", "sources", "snippet"}
NASTY = [
    '"',
    'Hikvision "ban',
    "Hikvision*",
    "title:ban",
    "^ban",
    "NEAR(ban camera)",
    "ban AND OR NOT",
    "(((",
    "-ban",
    "'; DROP TABLE articles; --",
    "1 OR 1=1",
    "%_%",
    "\\",
    "ban " * 2500,  # 10,000 characters
    "海康威视 禁令",
    "حظر الكاميرات",
    "запрет камер",
    "🚫📷",
    "\x00",
    "<script>alert(1)</script>",
]


@pytest.fixture(scope="module")
def stored(demo_archive):
    return demo_archive.sessions, demo_archive.settings


@pytest.fixture(scope="module")
def client(stored, embedder, config):
    sessions, settings = stored
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings)) as test_client:
        yield test_client


def search(client, **params) -> dict:
    response = client.get("/api/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def titles(answer: dict) -> list[str]:
    return [r["title"] for r in answer["results"]]


def test_words_find_the_demo_stories_with_highlighted_snippets(client):
    answer = search(client, q="Hikvision", mode="words")
    assert answer["total"] >= 3 and len(answer["results"]) == answer["total"]
    assert all(CONTRACT <= set(r) for r in answer["results"])
    assert "Canada orders Hikvision and Dahua cameras stripped from federal buildings" in titles(answer)
    assert all("<mark>" in r["snippet"] for r in answer["results"])
    assert all(r["sources"] and r["published"] for r in answer["results"])


def test_meaning_finds_a_paraphrase_that_shares_no_word_with_the_headline(client):
    query = "army stops flying its unmanned aircraft made in China"
    by_meaning = search(client, q=query, mode="meaning")
    assert titles(by_meaning)[0] == "Australian Defence Force bans DJI drones and orders fleet grounded"
    hybrid = search(client, q=query)  # the default mode
    assert "Australian Defence Force bans DJI drones and orders fleet grounded" in titles(hybrid)[:3]


def test_empty_query_lists_the_newest_relevant_stories_and_all_on_request(client):
    relevant = search(client)
    assert 5 <= relevant["total"] <= 7
    published = [r["published"] for r in relevant["results"]]
    assert published == sorted(published, reverse=True)
    assert "MPs call for ban on Chinese surveillance cameras across the public sector" == relevant["results"][0]["title"]
    everything = search(client, relevant="false", per_page=100)
    assert everything["total"] > 20
    assert "Lisbon's maritime museum reopens after five-year renovation" in titles(everything)
    assert "Lisbon's maritime museum reopens after five-year renovation" not in titles(relevant)


def test_each_filter_narrows_the_stories(client):
    for name, value, field in [("vendor", "Hikvision", "vendors"), ("country", "CA", "countries"), ("action", "ban", "actions")]:
        answer = search(client, **{name: value})
        assert 1 <= answer["total"] < search(client)["total"], name
        assert all(value in r[field] for r in answer["results"]), name
    both = search(client, vendor="Hikvision", country="CA")
    assert titles(both) == ["Canada orders Hikvision and Dahua cameras stripped from federal buildings"]
    either = client.get("/api/search?vendor=DJI&vendor=Hytera").json()
    assert {"Australian Defence Force bans DJI drones and orders fleet grounded"} < set(titles(either)) and either["total"] == 2
    one_day = search(client, since="2026-11-20", until="2026-11-20", relevant="false")
    assert one_day["total"] >= 1 and all(r["published"].startswith("2026-11-20") for r in one_day["results"])
    options = client.get("/api/options").json()
    assert {"Hikvision", "Dahua", "DJI"} <= set(options["vendors"]) and "CA" in options["countries"]
    source = options["sources"][0]
    assert all(source in r["sources"] for r in search(client, source=source, relevant="false")["results"])
    assert search(client, source="No Such Outlet")["total"] == 0


def test_pages_of_results_do_not_overlap(client):
    first, second = search(client, relevant="false", per_page=5), search(client, relevant="false", per_page=5, page=2)
    assert first["total"] == second["total"] > 10 and first["pages"] == -(-first["total"] // 5)
    assert len(first["results"]) == len(second["results"]) == 5
    assert not {r["story_id"] for r in first["results"]} & {r["story_id"] for r in second["results"]}


@pytest.mark.parametrize(
    "query, says",
    [
        ("page=0", "page"),
        ("per_page=10000", "per_page"),
        ("since=yesterday", "since"),
        ("until=2026-13-45", "until"),
        ("mode=fuzzy", "mode"),
        ("sort=random", "sort"),
        ("relevant=perhaps", "relevant"),
        ("since=2026-11-22&until=2026-11-01", "after until"),
        ("topic=no-such-topic", "no-such-topic"),
    ],
)
def test_bad_filter_values_answer_422_with_a_readable_message(client, query, says):
    api = client.get(f"/api/search?{query}")
    assert api.status_code == 422 and says in api.json()["detail"], api.text
    page = client.get(f"/?{query}")
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert says in page.text and "That search cannot be run" in page.text


def test_any_query_text_gives_results_or_a_clear_message(client):
    for text in NASTY:
        for mode in ("words", "meaning", "hybrid"):
            api = client.get("/api/search", params={"q": text, "mode": mode})
            assert api.status_code in (200, 422), (text[:40], mode, api.text[:300])
            assert "total" in api.json() if api.status_code == 200 else api.json()["detail"]
        page = client.get("/", params={"q": text})
        assert page.status_code in (200, 422), (text[:40], page.text[:300])
        assert "<script>alert(1)" not in page.text


def test_blank_form_fields_mean_defaults(client):
    page = client.get("/?q=Hikvision&mode=&sort=&relevant=&since=&until=&vendor=&page=")
    assert page.status_code == 200
    assert "Canada orders Hikvision and Dahua cameras stripped from federal buildings" in page.text


def test_search_page_shows_stories_with_readable_tags_and_a_bookmarkable_form(client):
    page = client.get("/", params={"q": "Hikvision", "vendor": "Hikvision", "country": "CA"})
    assert page.status_code == 200
    html = page.text
    assert '<form class="search" method="get" action="/"' in html and 'value="Hikvision"' in html
    assert "Canada orders Hikvision and Dahua cameras stripped from federal buildings" in html
    assert ">Canada<" in html  # CA shown as its name
    assert "<mark>" in html
    assert 'href="/api/search.csv?q=Hikvision&amp;vendor=Hikvision&amp;country=CA"' in html
    assert "https://" not in html.split("<body>")[0], "pages load no external assets"
    story_id = search(client, q="Hikvision", vendor="Hikvision", country="CA")["results"][0]["story_id"]
    assert f'href="/stories/{story_id}"' in html


def test_story_page_and_api_show_sources_evidence_and_similar_stories(client):
    hit = search(client, q="Australian Defence Force DJI drones", mode="words")["results"][0]
    api = client.get(f"/api/stories/{hit['story_id']}").json()
    story = api["story"]
    assert story["title"] == "Australian Defence Force bans DJI drones and orders fleet grounded"
    assert len(story["sources"]) >= 1 and all(s["url"].startswith("http://127.0.0.1") for s in story["sources"])
    assert "DJI" in story["vendors"] and story["why"]
    assert api["similar"] and hit["story_id"] not in {s["story_id"] for s in api["similar"]}
    html = client.get(f"/stories/{hit['story_id']}").text
    assert story["title"] in html and "More like this" in html and "Why it matched" in html
    assert all(f'href="{s["url"]}"' in html for s in story["sources"])
    assert "Closest example" in html and "{&#34;" not in html and '{"' not in html  # evidence readable, not raw JSON
    assert f'href="/stories/{api["similar"][0]["story_id"]}"' in html


def test_article_page_and_api_show_text_metadata_verdict_and_story(client):
    hit = search(client, q="Aarhus", mode="words")["results"][0]
    article = client.get(f"/api/articles/{hit['article_id']}").json()["article"]
    assert article["story_id"] == hit["story_id"] and article["relevant"] is True and 0 <= article["score"] <= 1
    assert "Aarhus" in article["text"] and article["outlet"] and article["why"]
    html = client.get(f"/articles/{hit['article_id']}").text
    assert article["title"] in html and f'href="/stories/{hit["story_id"]}"' in html and article["url"] in html


def test_unknown_ids_are_404_pages_and_json(client):
    for path in ("/stories/999999", "/articles/999999", "/no/such/page"):
        page = client.get(path)
        assert page.status_code == 404 and "Not found" in page.text and page.headers["content-type"].startswith("text/html")
    for path in ("/api/stories/999999", "/api/articles/999999"):
        api = client.get(path)
        assert api.status_code == 404 and "999999" in api.json()["detail"]
    assert client.get("/api/stories/99999999999999999999").status_code == 422
    assert client.get("/stories/abc").status_code == 422


def test_exports_hold_every_matching_story(client):
    answer = search(client, relevant="false", per_page=5)
    rows = list(csv.DictReader(io.StringIO(client.get("/api/search.csv?relevant=false").text)))
    assert len(rows) == answer["total"] and CONTRACT <= set(rows[0])
    assert all("<mark>" not in row["snippet"] for row in rows)
    exported = client.get("/api/search.json", params={"q": "Hikvision", "mode": "words"})
    assert exported.headers["content-disposition"].startswith("attachment")
    assert [r["story_id"] for r in exported.json()] == [r["story_id"] for r in search(client, q="Hikvision", mode="words")["results"]]


def test_atom_feed_of_a_search_is_valid_atom(client):
    response = client.get("/feed.atom?vendor=Hikvision")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/atom+xml")
    feed = ElementTree.fromstring(response.content)
    assert feed.tag == f"{ATOM}feed" and feed.findtext(f"{ATOM}id") and feed.findtext(f"{ATOM}updated")
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == search(client, vendor="Hikvision")["total"]
    for entry in entries:
        assert entry.findtext(f"{ATOM}id") and entry.findtext(f"{ATOM}title") and entry.findtext(f"{ATOM}updated")
        assert entry.find(f"{ATOM}link").get("href").startswith("http")
    assert {c.get("term") for c in entries[0].findall(f"{ATOM}category")} >= {"Hikvision"}


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    parameters = {p["name"] for p in schema["paths"]["/api/search"]["get"]["parameters"]}
    assert {"q", "mode", "topic", "relevant", "vendor", "country", "action", "source", "since", "until", "sort", "page", "per_page"} <= parameters
    assert {"/api/stories/{story_id}", "/api/articles/{article_id}", "/api/search.csv", "/feed.atom"} <= set(schema["paths"])
    assert "/" not in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_titles_are_shown_as_text_never_as_markup(sessions, embedder, config, tmp_path, database_url):
    build_demo_archive(sessions, embedder, config, archive_settings(tmp_path, database_url))
    nasty = '<script>alert("x")</script> Canada orders Hikvision cameras out'
    formula = '=HYPERLINK("http://evil.example/","Aarhus")'
    with sessions.begin() as session:
        article = session.scalars(select(Article).where(Article.title.startswith("Canada orders"))).first()
        article.title = nasty
        session.get(Story, article.story_id).title = nasty
        article_id, story_id = article.id, article.story_id
        aarhus = session.scalars(select(Article).where(Article.title.startswith("Aarhus"))).first()
        session.get(Story, aarhus.story_id).title = formula
        aarhus_story = aarhus.story_id
    app = create_app(sessions=sessions, embedder=embedder, config=config, settings=archive_settings(tmp_path, database_url))
    with TestClient(app) as client:
        for path in ("/?q=Canada", f"/stories/{story_id}", f"/articles/{article_id}", "/?q=" + nasty):
            html = client.get(path).text
            assert '<script>alert("x")' not in html, path
            assert "&lt;script&gt;alert(" in html, path
        assert search(client, q="Canada", mode="words")["results"][0]["title"] == nasty
        rows = {row["story_id"]: row for row in csv.DictReader(io.StringIO(client.get("/api/search.csv").text))}
        assert rows[str(aarhus_story)]["title"] == "'" + formula  # a spreadsheet shows it, never runs it


def test_a_token_protects_pages_and_api_when_set(stored, embedder, config):
    sessions, settings = stored
    app = create_app(sessions=sessions, embedder=embedder, config=config, settings=settings.model_copy(update={"api_token": "s3cret"}))
    with TestClient(app) as client:
        assert client.get("/api/search").status_code == 401
        assert client.get("/api/search", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/search", headers={"Authorization": "Bearer s3cret"}).json()["total"] >= 1
        assert client.get("/feed.atom?token=s3cret").status_code == 200
        page = client.get("/?q=Hikvision")
        assert page.status_code == 401 and 'name="token"' in page.text
        assert client.get("/static/archive.css").status_code == 200
        entered = client.get("/?q=Hikvision&token=s3cret", follow_redirects=False)
        assert entered.status_code == 303 and entered.headers["location"] == "/?q=Hikvision" and "s3cret" in entered.headers["set-cookie"]
        assert client.get("/?q=Hikvision").status_code == 200  # the cookie now carries it
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings)) as open_client:
        assert open_client.get("/api/search").status_code == 200


@pytest.mark.parametrize("query", ["until=9999-12-31", "since=9999-12-31", "since=0001-01-01", "until=3000-01-01"])
def test_days_out_of_range_answer_422_everywhere(client, query):
    for path in ("/api/search", "/feed.atom", "/api/search.csv", "/api/search.json"):
        answer = client.get(f"{path}?{query}")
        assert answer.status_code == 422, (path, answer.text[:200])
        assert re.search(r"(since|until): .*(1900-01-01|2999-12-31)", answer.json()["detail"]), answer.json()
    page = client.get(f"/?{query}")
    assert page.status_code == 422 and "That search cannot be run" in page.text
    assert client.get("/api/search").status_code == 200  # and the next request is answered as usual


def test_exports_of_a_bad_search_answer_422_before_any_byte(client):
    for path in ("/api/search.csv", "/api/search.json"):
        answer = client.get(f"{path}?topic=no-such-topic")
        assert answer.status_code == 422 and "no-such-topic" in answer.json()["detail"], answer.text[:200]
        assert "content-disposition" not in answer.headers


def test_every_answer_carries_the_security_headers(client):
    for path in ("/", "/api/search", "/static/archive.css", "/nothing-here", "/?page=0", "/feed.atom"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "same-origin", path
        assert "camera=()" in headers["permissions-policy"], path
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "http" not in policy, path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_links_that_are_not_http_are_rendered_nowhere(sessions, embedder, config, tmp_path, database_url):
    """Stored links from before the scheme check (javascript:, data:, …) never become an href: pages, digest, Slack, Atom."""
    build_demo_archive(sessions, embedder, config, archive_settings(tmp_path, database_url))
    unsafe = ["javascript:alert(document.cookie)", "vbscript:msgbox(1)", "data:text/html,<script>alert(1)</script>", "file:///etc/passwd"]
    topic = config.topics[0].name
    with sessions.begin() as session:
        article = session.scalars(select(Article).where(Article.title.startswith("Canada orders"))).first()
        story = session.get(Story, article.story_id)
        others = session.scalars(select(Article).where(Article.story_id != story.id).limit(3)).all()
        article.url = article.original_url = story.url = unsafe[0]
        for other, url in zip(others, unsafe[1:]):
            other.url = other.original_url = url
            session.get(Story, other.story_id).url = url
        story_ids = [story.id, *(other.story_id for other in others)]
        article_ids = [article.id, *(other.id for other in others)]
    with sessions() as session:
        views = story_views(session, story_ids, topic=topic)
    app = create_app(sessions=sessions, embedder=embedder, config=config, settings=archive_settings(tmp_path, database_url))
    with TestClient(app) as client:
        pages = [client.get(f"/stories/{i}").text for i in story_ids] + [client.get(f"/articles/{i}").text for i in article_ids]
        pages.append(client.get("/feed.atom?relevant=false&sort=newest").text)
        pages.append(client.get("/?relevant=false").text)
    digest = build_digest(views, day=date(2026, 11, 21), topic=topic, now=datetime(2026, 11, 22, tzinfo=timezone.utc))
    slack = [json.dumps(alert_message(view)) for view in views] + [json.dumps(batch_message(views))]
    for text in [*pages, digest.html, digest.text, *slack]:
        assert not re.search(r"\b(javascript|vbscript|data|file):", text), re.search(r".{80}\b(javascript|vbscript|data|file):.{80}", text)
    assert all(re.fullmatch(r"(/|https?://)\S*", href) for text in pages for href in re.findall(r'href="([^"]*)"', text))


def test_results_say_how_they_matched_and_filters_count_their_stories(client):
    answer = search(client, q="Hikvision")
    by_title = {r["title"]: r for r in answer["results"]}
    aarhus = by_title["Aarhus councillors vote to stop buying Chinese-made surveillance cameras"]  # never names Hikvision
    assert aarhus["matched"] == "meaning" and 0 < aarhus["similarity"] < 1 and "<mark>" not in aarhus["snippet"]
    assert {r["matched"] for r in answer["results"]} <= {"words", "meaning", "both"} and answer["facets"] is None
    counted = search(client, q="Hikvision", facets="true")["facets"]
    assert set(counted) == {"vendors", "countries", "actions", "sources"}
    hikvision = next(f["count"] for f in counted["vendors"] if f["value"] == "Hikvision")
    assert hikvision == search(client, q="Hikvision", vendor="Hikvision")["total"] >= 3
    html = client.get("/", params={"q": "Hikvision"}).text
    assert "matched by meaning · 0." in html and "matched by words and meaning · 0." in html
    assert f'<span class="count" title="stories with this vendor among the results, the other filters applied">{hikvision}</span>' in html
    rows = list(csv.DictReader(io.StringIO(client.get("/api/search.csv?q=Hikvision").text)))
    assert {row["matched"] for row in rows} <= {"words", "meaning", "both"} and all(row["similarity"] for row in rows)


def test_an_empty_search_is_newest_first_and_its_sort_box_says_so(client):
    assert search(client)["sort"] == "newest" and search(client, sort="best")["sort"] == "newest"
    assert search(client, q="Hikvision")["sort"] == "best"
    empty = client.get("/").text
    assert '<select name="sort" disabled' in empty and '<option value="newest" selected>' in empty and "newest first" in empty
    query = client.get("/", params={"q": "Hikvision"}).text
    assert '<option value="best" selected>' in query and "newest first" not in query


def test_snippets_csv_and_atom_start_after_the_section_name_and_headline(client):
    furniture = ("World", "Business", "Tech", "Security")
    for mode in ("words", "hybrid"):
        for row in csv.DictReader(io.StringIO(client.get(f"/api/search.csv?q=Hikvision&mode={mode}").text)):
            assert not row["snippet"].lstrip("…").startswith(furniture) and row["title"] not in row["snippet"], row["snippet"]
    feed = ElementTree.fromstring(client.get("/feed.atom").content)
    for entry in feed.findall(f"{ATOM}entry"):
        summary = entry.findtext(f"{ATOM}summary")
        assert summary and not summary.startswith(furniture) and entry.findtext(f"{ATOM}title") not in summary


def test_evidence_says_the_strongest_signals_in_words_and_pages_use_the_topic_title(client):
    macros = client.app.state.templates.env.get_template("_macros.html").module
    html = str(macros.evidence({"strongest_signals": ["action_mentions +2.5", "sim_margin -0.4", "brand_new_feature +1.1"]}))
    assert "How often it names a ban, removal or other action: weighs strongly for the topic" in html
    assert "How much closer it is to the examples than to the counter-examples: weighs against the topic" in html
    assert "Brand new feature: weighs for the topic" in html and "action_mentions" not in html
    story_id = search(client)["results"][0]["story_id"]
    assert "relevant</span> to Bans on Chinese surveillance technology" in client.get(f"/stories/{story_id}").text


def test_story_and_article_pages_offer_the_reader_s_verdict(client):
    """The buttons post to the page's own label path (tests/test_labels.py posts to them on an archive of its own)."""
    story = search(client, q="Canada Hikvision", mode="words")["results"][0]
    page = client.get(f"/stories/{story['story_id']}").text
    assert f'<form method="post" action="/stories/{story["story_id"]}/label"' in page
    assert 'name="verdict" value="relevant"' in page and 'name="verdict" value="not-relevant"' in page
    assert client.get(f"/api/stories/{story['story_id']}").json()["story"]["label"] is None
    article = client.get(f"/articles/{story['article_id']}").text
    assert f'action="/articles/{story["article_id"]}/label"' in article and "Not relevant</button>" in article


def test_the_archive_searches_the_vector_index_it_is_given_though_empty_at_start(stored, embedder, config):
    """`monitor serve` hands the app an index still empty while its warm-up loads it: the app searches that one,
    not a second copy of the vectors of its own."""
    sessions, settings = stored
    vectors = VectorIndex(where=settings.vector_search)
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings, vectors=vectors)) as client:
        assert not len(vectors)
        assert search(client, q="cameras removed from government buildings", mode="meaning")["results"]
    assert len(vectors)


class CountingEmbedder:
    """The real embedder, with the texts it was asked for written down."""

    def __init__(self, embedder):
        self.embedder, self.asked = embedder, []

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def embed(self, texts):
        self.asked += texts
        return self.embedder.embed(texts)


def test_a_query_is_embedded_once_for_its_page_its_chart_and_its_refinements(stored, embedder, config, client):
    sessions, settings = stored
    counting = CountingEmbedder(embedder)
    with TestClient(create_app(sessions=sessions, embedder=counting, config=config, settings=settings)) as counted:
        first = counted.get("/", params={"q": "camera bans on councils"})
        assert first.status_code == 200 and "Coverage" in first.text  # the results and the chart, one page
        refined = search(counted, q="camera bans on councils", vendor="Hikvision")
        again = search(counted, q="camera bans on councils", vendor="Hikvision")
        search(counted, q="drones grounded")
    assert counting.asked == ["camera bans on councils", "drones grounded"]
    assert refined == again and refined["results"]
    fresh = search(client, q="camera bans on councils", vendor="Hikvision")  # another archive's app, its own vector
    assert [r["similarity"] for r in refined["results"]] == [r["similarity"] for r in fresh["results"]]
