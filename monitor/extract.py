"""Article pages (bytes) to clean text and metadata with trafilatura."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import trafilatura
from dateutil import parser as dateparser

from monitor.domain import Extracted

log = logging.getLogger(__name__)

MIN_TEXT_CHARS = 200


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = dateparser.isoparse(value)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def extract(page: bytes | str, *, url: str | None = None) -> Extracted | None:
    """The main text of a page and its metadata, or None when no article text is found."""
    try:
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
