"""Property-based tests: hostile bytes and strings never crash the parsers, the URL keys, the phrase language or the
archive's search; schemathesis walks the archive's OpenAPI schema. Derandomized, so a failure repeats in CI."""

from __future__ import annotations

from datetime import datetime

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.dedup import canonical_url
from monitor.domain import Extracted, ParsedFeed, TopicSpec
from monitor.extract import extract
from monitor.feeds import NotAFeed, parse_feed
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.tags import Tagger
from monitor.web.app import create_app

from .archive import build_demo_archive
from .conftest import archive_settings

FUZZ = settings(derandomize=True, deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
SLOW_FUZZ = settings(FUZZ, max_examples=50)  # trafilatura and the archive take milliseconds an example


def pieces(*fragments: str) -> st.SearchStrategy[str]:
    """Documents glued together from meaningful fragments and noise, which reach deeper than random bytes."""
    return st.lists(st.one_of(st.sampled_from(fragments), st.text(max_size=12)), max_size=40).map("".join)


FEED_FRAGMENTS = (
    '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="latin-1"?>', "<rss version=\"2.0\">",
    "<channel>", "</channel>", "<item>", "</item>", "<title>", "</title>", "<link>", "</link>", "http://a.example/x",
    "javascript:alert(1)", "<description>", "</description>", "<pubDate>", "</pubDate>", "Sat, 31 Feb 99999 25:61:00 +9999",
    "<feed xmlns=\"http://www.w3.org/2005/Atom\">", "<entry>", "</entry>", '<link href="/rel"/>', "<![CDATA[", "]]>",
    "&amp;", "&#0;", "&#xD800;", "&bogus;", "<!DOCTYPE x [<!ENTITY e \"&e;&e;\">]>", "&e;",
    '{"version": "https://jsonfeed.org/version/1.1", "items": [', '{"url": "/a", "title": 1}', "]}", "<html>",
)
HTML_FRAGMENTS = (
    "<html>", "<head>", "<title>", "</title>", "<meta property=\"article:published_time\" content=\"", "9999-99-99",
    "\">", "<body>", "<article>", "<p>", "</p>", "Officials said the ban on cameras stands. ", "<script>", "</script>",
    "<nav>", "</nav>", "<h1>", "</h1>", "<![CDATA[", "<!--", "-->", "&nbsp;", "\x00", "<meta charset=\"utf-16\">",
)


@FUZZ
@given(st.one_of(st.binary(max_size=2000), pieces(*FEED_FRAGMENTS).map(lambda text: text.encode("utf-8", "surrogatepass"))),
       st.sampled_from(["", "application/rss+xml", "text/xml", "text/html; charset=latin-1", "application/json"]))
def test_parse_feed_returns_entries_or_says_it_is_not_a_feed(content, content_type):
    try:
        parsed = parse_feed(content, url="http://site.example/feed", content_type=content_type)
    except NotAFeed as error:
        assert str(error)
        return
    assert isinstance(parsed, ParsedFeed)
    assert all(isinstance(entry.url, str) and isinstance(entry.title, str) for entry in parsed.entries)


@SLOW_FUZZ
@given(st.one_of(st.binary(max_size=3000), pieces(*HTML_FRAGMENTS).map(lambda text: text.encode("utf-8", "surrogatepass"))))
def test_extract_returns_text_or_nothing(page):
    result = extract(page, url="http://site.example/a.html")
    assert result is None or (isinstance(result, Extracted) and isinstance(result.text, str))
    assert result is None or result.published is None or isinstance(result.published, datetime)


URL_FRAGMENTS = (
    "http://", "https://", "HTTP://", "Example.ORG", "xn--", "[::1]", ":80", ":99999", "/", "//", "?", "&", "=", "#",
    "utm_source=rss", "fbclid=x", "%", "%2F", "%zz", "..", "./", "@", "user:pass@", " ", "\t", "\u00e9", "\u0000",
)


@FUZZ
@given(st.one_of(st.text(max_size=200), pieces(*URL_FRAGMENTS)))
def test_canonical_url_never_raises_and_is_idempotent(url):
    key = canonical_url(url)
    assert isinstance(key, str)
    assert canonical_url(key) == key


PHRASE_FRAGMENTS = ("{", "}", "|", "*", "...", " ", "-", "!", "'", "’", "Hik", "vision", "DJI", "ban", "\\", "(", "[", "$")


@FUZZ
@given(pieces(*PHRASE_FRAGMENTS), st.text(max_size=200))
def test_phrase_language_compiles_or_names_the_entry(entry, text):
    """Every entry either compiles to patterns that run on any text, or is a ValueError that quotes it."""
    try:
        tagger = Tagger(TopicSpec(name="t", description="d", vendors={"V": [entry]}))
    except ValueError as error:
        assert "vocabulary entry" in str(error) or "cannot start with" in str(error)
        return
    tagger.tag(text, f"{text} {entry}. {text}")


@pytest.fixture(scope="module")
def archive_client(demo_archive, embedder, config):
    app = create_app(sessions=demo_archive.sessions, embedder=embedder, config=config, settings=demo_archive.settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


PARAMETER = st.sampled_from(["q", "mode", "topic", "relevant", "vendor", "country", "action", "source", "since",
                             "until", "sort", "page", "per_page", "token", "\u0000"])
VALUE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["words", "meaning", "hybrid", "newest", "0", "-1", "501", "2026-11-20", "0001-01-01", "2026-02-30",
                     "true", "\"", "NEAR(", "* OR", "AND NOT", "'--", "\ue000"]),
)


@SLOW_FUZZ
@given(st.lists(st.tuples(PARAMETER, VALUE), max_size=6), st.sampled_from(["/api/search", "/"]))
def test_arbitrary_search_parameters_never_crash_the_archive(archive_client, params, path):
    response = archive_client.get(path, params=params)
    assert response.status_code in (200, 422), response.text[:500]


def walk_schema(client: TestClient, *, method: str | None = None, skip_method: str | None = None) -> None:
    """Schemathesis walks each chosen operation of the OpenAPI schema: no 5xx, every answer as documented. A
    schema-valid request may still be refused (since after until, an unknown story), so positive-data acceptance is
    not checked."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    for operation in (result.ok() for result in schema.get_all_operations()):
        if (method and operation.method.upper() != method) or (skip_method and operation.method.upper() == skip_method):
            continue

        @given(operation.as_strategy())
        @settings(derandomize=True, deadline=None, max_examples=25, suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])

        conforms()


def test_the_archive_api_answers_every_request_within_its_schema(archive_client):
    """Every reading operation, on the archive the other tests share (the writing one, below, on an archive of its own)."""
    walk_schema(archive_client, skip_method="POST")


@pytest.fixture(scope="module")
def labelled_archive_client(embedder, config, tmp_path_factory):
    """The demo archive stored afresh, for the operation that writes (readers' labels) to change as it likes."""
    folder = tmp_path_factory.mktemp("labelled")
    url = f"sqlite:///{folder / 'monitor.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    settings = archive_settings(folder, url)
    build_demo_archive(sessions, embedder, config, settings)
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings), raise_server_exceptions=False) as client:
        yield client
    engine.dispose()


def test_the_label_api_answers_every_request_within_its_schema(labelled_archive_client):
    walk_schema(labelled_archive_client, method="POST")
