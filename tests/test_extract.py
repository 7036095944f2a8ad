"""Extraction quality on real pages, against the ground truth and trafilatura 2.0.0's stored output."""

from __future__ import annotations

import gzip
import html as htmllib
import json

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


def test_metadata_is_found():
    html = (
        "<html lang='de'><head><title>Titel</title><meta name='author' content='Erika Muster'>"
        "<meta property='og:site_name' content='Beispiel Zeitung'>"
        "<meta property='article:published_time' content='2026-11-20T08:00:00+01:00'></head>"
        "<body><article><h1>Titel</h1>" + "<p>Die Regierung hat heute neue Regeln beschlossen, sagte ein Sprecher.</p>" * 8
        + "</article></body></html>"
    )
    extracted = extract(html, url="https://example.de/a")
    assert extracted.author == "Erika Muster"
    assert extracted.site_name == "Beispiel Zeitung"
    assert extracted.published is not None and extracted.published.year == 2026
    assert "Regierung" in extracted.text
    # the markup's date is read without the search of the free text that a feed's own date makes needless
    assert extract(html, url="https://example.de/a", thorough_date=False).published == extracted.published
