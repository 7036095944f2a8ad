"""Writers of exported articles: JSON Lines, CSV and Atom."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TextIO
from xml.etree import ElementTree as ET

from monitor.domain import http_link, unlinked_key
from monitor.labels import lead

FIELDS = [
    "url", "title", "source", "published", "text", "text_source", "topic", "score", "relevant",
    "story_id", "duplicate_of", "copy_kind", "vendors", "countries", "actions", "why", "label",
]
ATOM = "http://www.w3.org/2005/Atom"
SUMMARY_CHARS = 500


def write_jsonl(rows: Iterable[dict], stream: TextIO) -> None:
    for row in rows:
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(rows: Iterable[dict], stream: TextIO) -> None:
    """Lists and evidence become JSON in their cells, so nothing is lost."""
    writer = csv.DictWriter(stream, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for k, v in row.items()})


def write_atom(
    rows: Iterable[dict], stream: TextIO, *, title: str = "monitor export", feed_id: str = "urn:monitor:export", link: str | None = None
) -> None:
    """Rows with url, title, published, and optional source, tags and text; link is the feed's own address."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = title
    ET.SubElement(feed, f"{{{ATOM}}}id").text = feed_id
    if link:
        ET.SubElement(feed, f"{{{ATOM}}}link", href=link, rel="self")
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = datetime.now(timezone.utc).isoformat()
    for row in rows:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}title").text = row["title"]
        link = http_link(row["url"])
        ET.SubElement(entry, f"{{{ATOM}}}id").text = link or unlinked_key(row["url"])
        if link:
            ET.SubElement(entry, f"{{{ATOM}}}link", href=link)
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = row["published"] or datetime.now(timezone.utc).isoformat()
        if row.get("source"):
            author = ET.SubElement(entry, f"{{{ATOM}}}author")
            ET.SubElement(author, f"{{{ATOM}}}name").text = row["source"]
        for tag in row.get("vendors", []) + row.get("countries", []) + row.get("actions", []):
            ET.SubElement(entry, f"{{{ATOM}}}category", term=tag)
        ET.SubElement(entry, f"{{{ATOM}}}summary").text = lead(row.get("text") or "", SUMMARY_CHARS, title=row["title"])
    ET.ElementTree(feed).write(stream, encoding="unicode", xml_declaration=True)
    stream.write("\n")
