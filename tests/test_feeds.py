"""parse_feed over the staged real feed documents, plus encodings, relative links, HTML and dates."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import timedelta
from functools import cache
from urllib.parse import urlsplit

import pytest

from monitor.demo.server import Reply
from monitor.domain import ParsedFeed
from monitor.feeds import NotAFeed, parse_feed

from .conftest import SHARED, shared_path

FEED_URL = "https://example.org/feed"
JSON_FEED = "fastfeedparser/humanwhocodes.jsonfeed.json"
RSS_WITH_RELATIVE_LINKS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Relative</title>
<item><title>Rooted</title><link>/news/1</link><pubDate>Tue, 17 Feb 2026 20:19:37 -0500</pubDate></item>
<item><title>Sibling</title><link>story/2?x=1</link></item>
</channel></rss>"""
ATOM_WITH_RELATIVE_LINKS = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Relative</title>
<entry><title>Rooted</title><link href="/news/1"/><id>urn:x:1</id><updated>2026-02-17T20:19:37+05:00</updated></entry>
<entry><title>Sibling</title><link href="story/2?x=1"/><id>urn:x:2</id><updated>2026-02-17T20:19:37Z</updated></entry>
</feed>"""
JSON_FEED_WITH_RELATIVE_LINKS = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Relative",
        "items": [{"id": "1", "url": "/news/1", "title": "Rooted"}, {"id": "2", "url": "story/2?x=1", "title": "Sibling"}],
    }
).encode()
EMPTY_RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'


def index_rows() -> list[dict[str, str]]:
    index = SHARED / "data" / "feeds" / "FEEDS_INDEX.tsv"
    if not index.exists():
        return []
    with index.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = index_rows()
READABLE = [row for row in ROWS if int(row["entries"]) > 0 or row["staged_file"] == JSON_FEED]
UNREADABLE = [row for row in ROWS if row not in READABLE]
XML_READABLE = [row for row in READABLE if row["staged_file"] != JSON_FEED]


def staged(name: str) -> bytes:
    return (shared_path("data", "feeds") / name).read_bytes()


@cache
def parsed_staged(name: str, content_type: str = "") -> ParsedFeed:
    return parse_feed(staged(name), url=FEED_URL, content_type=content_type)


def expected_entries(row: dict[str, str], content: bytes) -> int:
    if row["staged_file"] == JSON_FEED:
        return len(json.loads(content)["items"])
    return int(row["entries"])


def titles(name: str) -> list[str]:
    return [entry.title for entry in parsed_staged(name).entries]


def rss_with_item_date(date: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>A</title><link>https://example.org/a</link><pubDate>{date}</pubDate></item>"
        "</channel></rss>"
    ).encode()


def json_feed_with_item(**item) -> bytes:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": [item]}).encode()


def by_name(rows: list[dict[str, str]]) -> list[str]:
    return [row["staged_file"] for row in rows]


def test_index_lists_every_staged_document():
    folder = shared_path("data", "feeds")
    assert len(ROWS) == 39
    assert all((folder / row["staged_file"]).is_file() for row in ROWS)


@pytest.mark.parametrize("row", READABLE, ids=by_name(READABLE))
def test_staged_feed_gives_absolute_entries_close_to_the_index(row):
    content = staged(row["staged_file"])
    expected = expected_entries(row, content)
    entries = parsed_staged(row["staged_file"]).entries
    assert abs(len(entries) - expected) <= max(1, expected // 10)
    for entry in entries:
        parts = urlsplit(entry.url)
        assert parts.scheme in ("http", "https") and parts.netloc, entry.url
        assert isinstance(entry.title, str)


@pytest.mark.parametrize("row", UNREADABLE, ids=by_name(UNREADABLE))
def test_staged_document_without_entries_is_refused_with_its_reason(row):
    with pytest.raises(NotAFeed, match=r"^not a readable feed \(\w+: .+\)$"):
        parse_feed(staged(row["staged_file"]), url=FEED_URL)


@pytest.mark.parametrize("row", XML_READABLE, ids=by_name(XML_READABLE))
def test_problem_is_reported_exactly_where_feedparser_found_the_document_malformed(row):
    parsed = parsed_staged(row["staged_file"], "application/xml")
    assert (parsed.problem is not None) == (row["bozo"] == "1"), parsed.problem


@pytest.mark.parametrize("row", READABLE, ids=by_name(READABLE))
def test_published_dates_are_utc_aware(row):
    for entry in parsed_staged(row["staged_file"]).entries:
        if entry.published is not None:
            assert entry.published.utcoffset() == timedelta(0), entry.published


def test_gb2312_title_is_decoded():
    assert any("盛大游戏" in title for title in titles("rss-parser/encoding-gb2312.xml"))
    assert parsed_staged("rss-parser/encoding-gb2312.xml").title == "互联网"


def test_declared_iso_8859_1_title_is_decoded():
    found = titles("rss-parser/encoding.rss")
    assert "Mãe de utente é a nova presidente da Raríssimas" in found
    assert not any("Ã" in title for title in found)


def test_undeclared_latin1_title_is_decoded():
    found = titles("rss-parser/MALFORMED_uolNoticias_latin1_no_xmldecl.rss")
    assert any("simulações de 2º turno" in title for title in found)
    assert not any("Ã" in title or "\ufffd" in title for title in found)


@pytest.mark.parametrize(
    "content",
    [RSS_WITH_RELATIVE_LINKS, ATOM_WITH_RELATIVE_LINKS, JSON_FEED_WITH_RELATIVE_LINKS],
    ids=["rss", "atom", "jsonfeed"],
)
def test_relative_links_resolve_against_the_feed_url(content):
    entries = parse_feed(content, url="https://example.org/feeds/main.xml").entries
    assert [entry.url for entry in entries] == ["https://example.org/news/1", "https://example.org/feeds/story/2?x=1"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"<!DOCTYPE html><html><head><title>News</title></head><body><p>hi</p></body></html>", ""),
        (b"\n  <html lang=en><head><title>News</title></head><body><p>hi</p></body></html>", ""),
        (b"<head><title>News</title></head><body><p>hi</p></body>", "text/html; charset=utf-8"),
    ],
    ids=["doctype", "html-tag", "declared-html"],
)
def test_html_page_is_refused_as_html(content, content_type):
    with pytest.raises(NotAFeed, match="HTML"):
        parse_feed(content, url=FEED_URL, content_type=content_type)


def test_real_article_pages_are_refused_as_html():
    pages = sorted(shared_path("data", "extraction", "scrapinghub_aeb", "html").glob("*.html.gz"))[:10]
    assert pages
    for page in pages:
        with pytest.raises(NotAFeed, match="HTML"):
            parse_feed(gzip.decompress(page.read_bytes()), url=FEED_URL)


def test_a_url_given_as_content_is_not_fetched(site):
    site.routes["/feed.xml"] = Reply(200, RSS_WITH_RELATIVE_LINKS, {"Content-Type": "application/rss+xml"})
    with pytest.raises(NotAFeed):
        parse_feed(site.url("/feed.xml").encode(), url=FEED_URL)
    with pytest.raises(NotAFeed):
        parse_feed(b"http://127.0.0.1:9/feed.xml", url=FEED_URL)
    assert site.requests == []


def test_a_path_given_as_content_is_not_read(tmp_path):
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(RSS_WITH_RELATIVE_LINKS)
    for content in (str(feed_file).encode(), b"/etc/passwd"):
        with pytest.raises(NotAFeed):
            parse_feed(content, url=FEED_URL)


def test_rss_dates_with_offsets_become_utc():
    entry = parse_feed(rss_with_item_date("Tue, 17 Feb 2026 20:19:37 -0500"), url=FEED_URL).entries[0]
    assert entry.published.isoformat() == "2026-02-18T01:19:37+00:00"


def test_unparseable_date_gives_none():
    assert parse_feed(rss_with_item_date("Seg, 24 Set 2018 19:42:40 -0300"), url=FEED_URL).entries[0].published is None


def test_empty_feed_with_xml_content_type_is_an_empty_feed():
    parsed = parse_feed(EMPTY_RSS, url=FEED_URL, content_type="application/rss+xml")
    assert parsed.entries == [] and parsed.title == "Quiet" and parsed.problem is None


def test_empty_body_is_not_a_feed():
    with pytest.raises(NotAFeed):
        parse_feed(b"", url=FEED_URL, content_type="application/rss+xml")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/rss+xml",
        "",
        "text/xml",
    ],
)
def test_well_formed_feed_reports_no_problem(content_type):
    parsed = parsed_staged("fastfeedparser/bbc_news_world.rss.xml", content_type)
    assert parsed.problem is None


def test_empty_feed_without_content_type_is_an_empty_feed():
    assert parse_feed(EMPTY_RSS, url=FEED_URL).entries == []


def test_json_feed_utc_date_is_utc_aware():
    content = json_feed_with_item(id="1", url="/a", title="A", date_published="2026-02-16T10:00:00Z")
    entry = parse_feed(content, url=FEED_URL).entries[0]
    assert entry.published.isoformat() == "2026-02-16T10:00:00+00:00"


@pytest.mark.parametrize("date", ["2026-02-16T15:00:00+05:00", "2026-02-16T10:00:00"], ids=["offset", "no-offset"])
def test_json_feed_dates_become_utc(date):
    entry = parse_feed(json_feed_with_item(id="1", url="/a", title="A", date_published=date), url=FEED_URL).entries[0]
    assert entry.published.utcoffset() == timedelta(0)
    assert entry.published.isoformat() == "2026-02-16T10:00:00+00:00"


@pytest.mark.parametrize(
    "content",
    [
        json_feed_with_item(id="1", url="/a", title=5),
        json.dumps({"version": "https://jsonfeed.org/version/1", "items": ["https://example.org/a"]}).encode(),
    ],
    ids=["title-not-a-string", "item-not-an-object"],
)
def test_malformed_json_feed_items_do_not_crash(content):
    try:
        parse_feed(content, url=FEED_URL)
    except NotAFeed:
        pass


def test_json_feed_without_items_is_not_a_feed():
    with pytest.raises(NotAFeed, match="JSON Feed without items"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": []}', url=FEED_URL)


AUTHORS_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Bylines</title>
<item><title>Creator</title><link>https://example.org/1</link><dc:creator>Jane Reporter</dc:creator></item>
<item><title>Mailbox</title><link>https://example.org/2</link><author>desk@example.org (Sam Writer)</author></item>
<item><title>Nobody</title><link>https://example.org/3</link></item>
</channel></rss>"""


def test_entry_authors_are_read_from_rss_atom_and_json_feed():
    assert [e.author for e in parse_feed(AUTHORS_RSS, url=FEED_URL).entries] == ["Jane Reporter", "Sam Writer", None]
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
    <entry><title>T</title><link href="https://example.org/1"/><id>urn:x:1</id><author><name>Ann Atom</name></author></entry></feed>"""
    assert parse_feed(atom, url=FEED_URL).entries[0].author == "Ann Atom"
    items = [
        {"id": "1", "url": "https://example.org/1", "authors": [{"url": "https://example.org/me"}, {"name": " Jo Json "}]},
        {"id": "2", "url": "https://example.org/2", "author": {"name": "Old Style"}},
        {"id": "3", "url": "https://example.org/3", "authors": "not a list"},
    ]
    document = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": items}).encode()
    assert [e.author for e in parse_feed(document, url=FEED_URL).entries] == ["Jo Json", "Old Style", None]
