"""Article pages (bytes) to clean text and metadata with trafilatura."""

from __future__ import annotations

import html
import logging
import re
import threading
from datetime import datetime, timezone

import trafilatura
from dateutil import parser as dateparser
from htmldate import find_date
from lxml.html import HtmlElement
from trafilatura.metadata import META_URL, examine_meta, extract_author, extract_meta_json, extract_sitename, extract_title
from trafilatura.settings import set_date_params
from trafilatura.utils import line_processing, load_html

from monitor.domain import Extracted, FeedEntry

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 200
# One extraction at a time in a process. trafilatura and htmldate parse with module-level lxml parsers shared by every
# thread, and concurrent extract() calls crash the process now and then (SIGSEGV; trafilatura issues #840 and #925,
# still open for 2.2); a bench's `monitor run --once` over real pages died so once, after an lxml "unknown error".
# Extraction holds the GIL for most of its time anyway: serialised, a pass over real pages was no slower.
_ONE_AT_A_TIME = threading.Lock()
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?=$|[-_])")
# Elements trafilatura's own cleaning deletes whole (its MANUALLY_CLEANED), but only after its pruning expressions have
# tested every element of the raw page and it has copied the page three times: dropped first, once the metadata is
# read, the same text costs a sixth fewer instructions (cachegrind, 56 real pages). JSON-LD stays: trafilatura reads
# it to tell a forum thread. Its measure of the page's text for a retry no longer counts menus and footers, which
# kept a little more of the articles (F1 on the scrapinghub pages 0.9577 against 0.9575; 265 snippets of 291 kept
# against 262).
_FURNITURE = ("aside", "footer", "iframe", "nav", "noscript", "script", "style", "svg")


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = dateparser.isoparse(value)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def extract(page: bytes | str, *, url: str | None = None, feed: FeedEntry | None = None) -> Extracted | None:
    """The main text of a page and its metadata, or None when no article text is found.

    What the feed's entry gives (its title, author, date) is not searched for in the page's markup: on real news
    pages the search for a byline, with trafilatura's categories, tags and licence that the monitor does not keep,
    was a seventh of the extraction's work, and the date's search in the page's free text a quarter of it.
    """
    try:
        with _ONE_AT_A_TIME:
            tree = load_html(page)
            if tree is None:
                return None
            found = _metadata(tree, url, feed)
            _drop_furniture(tree)
            doc = trafilatura.bare_extraction(
                tree,
                url=url,
                include_comments=False,
                include_tables=True,
                include_images=False,
                include_links=False,
                deduplicate=False,
                fast=True,
            )
    except Exception as exc:  # trafilatura raises many kinds on hostile input; one bad page must not stop the run
        log.warning("extraction failed for %s: %s", url, exc)
        return None
    if doc is None or not (doc.text or "").strip():
        return None
    return Extracted(text=doc.text.strip(), **found)


def _metadata(tree: HtmlElement, url: str | None, feed: FeedEntry | None) -> dict:
    """trafilatura's metadata sequence (trafilatura.metadata.extract_metadata) for the fields the monitor keeps:
    the page's meta tags and JSON-LD first, its markup searched only for what neither they nor the feed give."""
    meta = examine_meta(tree)
    if meta.author and " " not in meta.author:
        meta.author = None  # a lone word in an author tag is a handle, not a byline (as trafilatura has it)
    meta = extract_meta_json(tree, meta)
    title = meta.title or (None if feed and feed.title else extract_title(tree))
    author = meta.author or (None if feed and feed.author else extract_author(tree))
    published = None
    if not (feed and feed.published):
        published = _date(find_date(tree, **{**set_date_params(True), "url": meta.url or url}))
    site_name = (meta.sitename or extract_sitename(tree) or "").lstrip("@")
    if site_name and "." not in site_name and not site_name[0].isupper():
        site_name = site_name.title()
    if not site_name and (match := META_URL.match(meta.url or url or "")):
        site_name = match[1]
    language = _LANGUAGE.match(tree.get("lang") or "")
    return {
        "title": _clean(title),
        "author": _clean(author),
        "published": published,
        "language": language[0].lower() if language else None,
        "site_name": _clean(site_name),
    }


def _drop_furniture(tree: HtmlElement) -> None:
    for element in list(tree.iter(*_FURNITURE)):
        kept = element.tag == "script" and "ld+json" in (element.get("type") or "")
        if not kept and element.getparent() is not None:
            element.drop_tree()  # its tail, text between elements, stays


def _clean(value: str | None) -> str | None:
    return (line_processing(html.unescape(value)) or None) if value else None
