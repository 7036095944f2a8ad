"""Article pages (bytes) to clean text and metadata with trafilatura."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

import trafilatura
from trafilatura.settings import set_date_params
from dateutil import parser as dateparser

from monitor.domain import Extracted

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 200
# One extraction at a time in a process. trafilatura and htmldate parse with module-level lxml parsers shared by every
# thread, and concurrent extract() calls crash the process now and then (SIGSEGV; trafilatura issues #840 and #925,
# still open for 2.2); a bench's `monitor run --once` over real pages died so once, after an lxml "unknown error".
# Extraction holds the GIL for most of its time anyway: serialised, a pass over real pages was no slower.
_ONE_AT_A_TIME = threading.Lock()


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = dateparser.isoparse(value)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def extract(page: bytes | str, *, url: str | None = None, thorough_date: bool = True) -> Extracted | None:
    """The main text of a page and its metadata, or None when no article text is found.

    thorough_date=False reads the page's date from its markup only (meta tags, JSON-LD, time elements, the URL), not
    from its free text through dateparser: a quarter of the extraction's time on real news pages, worth it only when
    the feed gave no date.
    """
    try:
        with _ONE_AT_A_TIME:
            doc = trafilatura.bare_extraction(
                page,
                url=url,
                with_metadata=True,
                include_comments=False,
                include_tables=True,
                include_images=False,
                include_links=False,
                deduplicate=False,
                fast=True,
                date_extraction_params=set_date_params(thorough_date),
            )
    except Exception as exc:  # trafilatura raises many kinds on hostile input; one bad page must not stop the run
        log.warning("extraction failed for %s: %s", url, exc)
        return None
    if doc is None or not (doc.text or "").strip():
        return None
    return Extracted(
        text=doc.text.strip(),
        title=doc.title or None,
        author=doc.author or None,
        published=_date(doc.date),
        language=doc.language or None,
        site_name=doc.sitename or None,
    )
