"""Extraction quality on real pages, against the ground truth and trafilatura 2.0.0's stored output."""

from __future__ import annotations

import gzip
import html as htmllib
import json
from datetime import date, datetime, timezone

from monitor.domain import FeedEntry
from monitor.evaluate import extraction_f1
from monitor.extract import MIN_TEXT_CHARS, extract

from .conftest import shared_path


def test_extraction_f1_is_not_below_trafilatura_reference():
    base = shared_path("data", "extraction", "scrapinghub_aeb")
    truth = json.loads((base / "ground-truth.json").read_text(encoding="utf-8"))
    reference = json.loads((base / "output" / "trafilatura.json").read_text(encoding="utf-8"))["output"]
    ours, theirs = [], []
    for key, item in truth.items():
        html = gzip.decompress((base / "html" / f"{key}.html.gz").read_bytes())
        extracted = extract(html, url=item["url"])
        ours.append((extracted.text if extracted else "", item["articleBody"]))
        theirs.append((reference[key]["articleBody"], item["articleBody"]))
    our_f1, their_f1 = extraction_f1(ours).f1, extraction_f1(theirs).f1
    assert our_f1 >= their_f1, (our_f1, their_f1)


def test_multilingual_pages_keep_their_text_and_drop_furniture():
    base = shared_path("data", "extraction", "trafilatura_eval_news")
    cases = json.loads((base / "evaldata_news_subset.json").read_text(encoding="utf-8"))
    pages = [gzip.decompress(path.read_bytes()) for path in sorted((base / "html").glob("*.gz"))]
    pages = [(page, htmllib.unescape(page.decode("utf-8", errors="replace"))) for page in pages]
    kept = dropped = total_with = total_without = 0
    for url, case in cases.items():
        html = _page_with_snippets(pages, case["with"])
        extracted = extract(html, url=url)
        text = extracted.text if extracted else ""
        kept += sum(snippet in text for snippet in case["with"])
        dropped += sum(snippet not in text for snippet in case["without"])
        total_with += len(case["with"])
        total_without += len(case["without"])
    assert kept / total_with >= 0.85
    assert dropped / total_without >= 0.85


def _page_with_snippets(pages: list[tuple[bytes, str]], snippets: list[str]) -> bytes:
    """The stored pages are named by hash, not by the file names of the snippet list: match by content."""
    return max(pages, key=lambda page: sum(snippet in page[1] for snippet in snippets))[0]


def test_hostile_input_gives_none_not_an_exception():
    assert extract(b"") is None
    assert extract(b"\x00\x01\x02\xff" * 1000) is None
    navigation_only = extract("<html><body><nav>Home</nav></body></html>")
    assert navigation_only is None or len(navigation_only.text) < MIN_TEXT_CHARS


PAGE_WITH_META = (
    "<html lang='de-AT'><head><title>Titel</title><meta name='author' content='Erika Muster'>"
    "<meta property='og:site_name' content='Beispiel Zeitung'>"
    "<meta property='article:published_time' content='2026-11-20T08:00:00+01:00'></head>"
    "<body><article><h1>Titel</h1>" + "<p>Die Regierung hat heute neue Regeln beschlossen, sagte ein Sprecher.</p>" * 8
    + "</article></body></html>"
)
PAGE_WITH_A_BYLINE_ONLY = (
    "<html><head><title>Council bans cameras</title></head><body><article><h1>Council bans cameras</h1>"
    "<p class='byline'>By <span class='author'>Jane Reporter</span></p>"
    + "<p>The council voted on Tuesday to remove the cameras from its buildings, a spokesman said.</p>" * 8
    + "<p>Published on <time>12 March 2026</time>.</p></article></body></html>"
)


def test_metadata_is_found():
    extracted = extract(PAGE_WITH_META, url="https://example.de/a")
    assert extracted.author == "Erika Muster"
    assert extracted.site_name == "Beispiel Zeitung"
    assert extracted.published == datetime(2026, 11, 20, tzinfo=timezone.utc)  # htmldate gives the day
    assert extracted.language == "de"
    assert extracted.title == "Titel"
    assert "Regierung" in extracted.text


def test_what_the_feed_gives_is_not_searched_for_in_the_page():
    alone = extract(PAGE_WITH_A_BYLINE_ONLY, url="https://example.org/a")
    assert alone.author == "Jane Reporter"  # the byline, searched for in the markup
    assert alone.published is not None and alone.published.date() == date(2026, 3, 12)  # in the free text
    assert alone.site_name == "example.org"  # no site name in the page: its address's
    entry = FeedEntry(url="https://example.org/a", title="Council bans cameras", summary="", published=datetime(2026, 3, 12, tzinfo=timezone.utc), author="J. Reporter")
    with_feed = extract(PAGE_WITH_A_BYLINE_ONLY, url="https://example.org/a", feed=entry)
    assert with_feed.text == alone.text
    assert with_feed.author is None and with_feed.published is None
    # the page's own tags are read all the same (they cost next to nothing): its author as the page spells it; its
    # title is in no tag, and the feed gives one
    tagged = extract(PAGE_WITH_META, url="https://example.de/a", feed=entry)
    assert (tagged.author, tagged.title, tagged.site_name) == ("Erika Muster", None, "Beispiel Zeitung")


PAGE_WITH_FURNITURE = (
    "<html><head><title>Cameras removed</title><style>p {color: red}</style>"
    "<script type='application/ld+json'>{\"@context\": \"https://schema.org\", \"@type\": \"NewsArticle\", \"author\": {\"name\": \"Ana Writer\"}}</script></head>"
    "<body><nav><a href='/'>Home</a> <a href='/world'>World</a></nav><article><h1>Cameras removed</h1>"
    + "<p>The ministry removed the cameras from its offices <svg><text>icon</text></svg>after a review, officials said.</p>" * 6
    + "<p>Contractors <script>track()</script>will replace them by spring.</p></article>"
    "<aside>Most read: a different story entirely</aside><footer>Copyright Example News</footer></body></html>"
)


def test_page_furniture_is_dropped_but_text_around_it_and_its_json_ld_are_kept():
    extracted = extract(PAGE_WITH_FURNITURE, url="https://example.org/b")
    assert "officials said" in extracted.text and "after a review" in extracted.text
    assert "will replace them by spring" in extracted.text  # the text after a script inside a paragraph
    assert not [furniture for furniture in ("icon", "track()", "Most read", "Copyright", "Home") if furniture in extracted.text]
    assert extracted.author == "Ana Writer"  # read from the JSON-LD before the scripts went
