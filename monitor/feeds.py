"""Feed documents (RSS, RDF, Atom via feedparser; JSON Feed by hand) as bytes in, entries out."""

from __future__ import annotations

import calendar
import io
import json
import logging
import re
from datetime import datetime, timezone
from urllib.parse import urljoin

import feedparser
import lxml.html
from lxml.etree import ParserError

from monitor.domain import FeedEntry, ParsedFeed, PollHint

log = logging.getLogger(__name__)

CHARACTER_REFERENCE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
REPLACEMENT_CHARACTER = b"&#xFFFD;"
# sy:updatePeriod (RSS 1.0 syndication module): the period that sy:updateFrequency updates are spread over.
UPDATE_PERIODS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}


class NotAFeed(ValueError):
    """The document holds no feed entries at all."""


def _no_impossible_characters(content: bytes) -> bytes:
    """Character references to surrogates or past U+10FFFF become U+FFFD: feedparser's loose parser crashes on them."""

    def replace(match: re.Match[bytes]) -> bytes:
        digits = match[1] or match[2]
        if len(digits) > 8:
            return REPLACEMENT_CHARACTER
        code = int(digits, 16) if match[1] else int(digits)
        return REPLACEMENT_CHARACTER if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF else match[0]

    return CHARACTER_REFERENCE.sub(replace, content)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment such as a feed summary."""
    if not fragment or "<" not in fragment:
        return (fragment or "").strip()
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (ParserError, ValueError):
        return fragment.strip()
    return " ".join(root.text_content().split())


def _when(entry: dict) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc)
    return None


def _whole(value: object) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def poll_hints(channel: dict) -> tuple[PollHint, ...]:
    """The feed's own word on how often to ask it: RSS <ttl> (minutes) and sy:updatePeriod / sy:updateFrequency
    (times per period, 1 by default). Unreadable values are left out: a hint only ever slows polling."""
    hints = []
    ttl = _whole(channel.get("ttl"))
    if ttl:
        hints.append(PollHint("ttl", ttl * 60.0))
    period = UPDATE_PERIODS.get(str(channel.get("sy_updateperiod") or "").strip().lower())
    if period:
        hints.append(PollHint("sy:updatePeriod", period / (_whole(channel.get("sy_updatefrequency")) or 1)))
    return tuple(hints)


def _parse_json_feed(content: bytes, url: str) -> ParsedFeed:
    try:
        doc = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAFeed(f"invalid JSON Feed: {exc}") from exc
    entries = []
    for item in doc.get("items") or []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url") or item.get("id")
        if not isinstance(link, str) or not link.strip():
            continue
        published = None
        for key in ("date_published", "date_modified"):
            if item.get(key):
                try:
                    published = datetime.fromisoformat(str(item[key]).replace("Z", "+00:00"))
                except ValueError:
                    break
                if published.tzinfo is None:
                    published = published.replace(tzinfo=timezone.utc)
                published = published.astimezone(timezone.utc)
                break
        summary = item.get("summary") or html_to_text(item.get("content_html") or "") or item.get("content_text") or ""
        entries.append(
            FeedEntry(
                url=urljoin(url, link.strip()),
                title=item["title"].strip() if isinstance(item.get("title"), str) else "",
                summary=summary.strip(),
                published=published,
                guid=str(item.get("id")) if item.get("id") is not None else None,
                author=_json_feed_author(item),
            )
        )
    return ParsedFeed(title=doc.get("title"), entries=entries)


def _json_feed_author(item: dict) -> str | None:
    """JSON Feed 1.1's first author's name, or 1.0's single author's."""
    authors = item.get("authors") if isinstance(item.get("authors"), list) else [item.get("author")]
    names = [author.get("name") for author in authors if isinstance(author, dict)]
    return next((name.strip() for name in names if isinstance(name, str) and name.strip()), None)


def parse_feed(content: bytes, *, url: str, content_type: str = "") -> ParsedFeed:
    """Entries of a feed document. Raises NotAFeed when nothing usable is in it."""
    head = content[:512].lstrip()
    if head.startswith(b"{") and b"jsonfeed.org" in content[:4096]:
        parsed = _parse_json_feed(content, url)
        if not parsed.entries:
            raise NotAFeed("JSON Feed without items")
        return parsed
    media_type = content_type.split(";")[0].strip().lower()
    if not media_type or (media_type == "text/xml" and "charset" not in content_type.lower()):
        # feedparser flags a missing type, and applies RFC 3023's us-ascii default to bare text/xml.
        content_type = "application/xml"
    headers = {"content-location": url, "content-type": content_type}
    # A stream, never a str or bytes: feedparser would treat those as a URL or a file name.
    doc = feedparser.parse(io.BytesIO(_no_impossible_characters(content)), response_headers=headers)
    entries = []
    for entry in doc.entries:
        link = entry.get("link") or ""
        if not link and str(entry.get("id", "")).startswith(("http://", "https://")):
            link = entry["id"]
        if not link:
            continue
        summary = entry.get("summary") or ""
        if not summary and entry.get("content"):
            summary = entry["content"][0].get("value", "")
        entries.append(
            FeedEntry(
                url=urljoin(url, link.strip()),
                title=html_to_text(entry.get("title") or ""),
                summary=html_to_text(summary),
                published=_when(entry),
                guid=entry.get("id"),
                author=(entry.get("author_detail") or {}).get("name") or None,  # a name: never a bare e-mail address
            )
        )
    problem = None
    if doc.bozo:
        problem = f"{type(doc.bozo_exception).__name__}: {doc.bozo_exception}"
    if not entries:
        if head.lower().startswith((b"<!doctype html", b"<html")) or "html" in content_type:
            raise NotAFeed("got an HTML page, not a feed")
        if problem:
            raise NotAFeed(f"not a readable feed ({problem})")
        if not doc.get("version"):
            raise NotAFeed("not a feed")
    links = {link.get("rel"): link.get("href") for link in reversed(doc.feed.get("links") or []) if link.get("href")}
    return ParsedFeed(title=doc.feed.get("title"), entries=entries, problem=problem, hints=poll_hints(doc.feed), hub=links.get("hub"), self_url=links.get("self"))
