"""The plain data every layer shares: what passes between the stages (the specs of feeds.yaml are in specs.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

LINK_SCHEMES = ("http", "https")
POLL_QUEUE = "monitor.polls"  # the Celery queue of feed polls in distributed mode


def http_link(url: str | None) -> str | None:
    """The URL when it is an http(s) link a reader may follow; None for javascript:, vbscript:, data:, file: and the like.

    The one rule for every link the monitor stores or shows (pages, digest, Slack, Atom).
    """
    if not url or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme.lower() in LINK_SCHEMES and parts.netloc else None


UNLINKED = "urn:sha256:"


def unlinked_key(url: str) -> str:
    """A stable name for an address that is no http(s) link: it tells items apart without being a link to anything.

    A name made here is its own key, so that a key given again stays the same.
    """
    if url.startswith(UNLINKED) and len(url) == len(UNLINKED) + 64:
        return url
    return UNLINKED + hashlib.sha256(url.strip().encode("utf-8", "replace")).hexdigest()


class Embedder(Protocol):
    """What turns texts into vectors: built once by the composition root, used by the stages and the archive."""

    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, as the feed describes it."""

    url: str
    title: str
    summary: str
    published: datetime | None
    guid: str | None = None
    author: str | None = None


@dataclass(frozen=True)
class PollHint:
    """A publisher's wish not to be polled more often than every `seconds`: RSS ttl, sy:updatePeriod, Cache-Control, Expires."""

    source: str  # what said so: "ttl", "sy:updatePeriod", "Cache-Control max-age", "Expires"
    seconds: float


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[FeedEntry]
    problem: str | None = None  # set when the document was malformed but still parsed
    hints: tuple[PollHint, ...] = ()  # the document's own (ttl, sy:updatePeriod)
    hub: str | None = None  # the WebSub hub the feed names (<link rel="hub">, atom:link in RSS)
    self_url: str | None = None  # its rel="self": the WebSub topic


@dataclass(frozen=True)
class Extracted:
    """What the extractor found in an article page."""

    text: str
    title: str | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None
    site_name: str | None = None


@dataclass
class Candidate:
    """A new article ready to embed, score and store."""

    feed_id: int
    url: str  # canonical: the article's unique key
    original_url: str
    title: str
    text: str
    text_source: str  # "page" when extracted from the article page, else "summary" or "title"
    summary: str = ""
    author: str | None = None
    published: datetime | None = None
    language: str | None = None
    site_name: str | None = None
    page_error: str | None = None


@dataclass(frozen=True)
class TopicVerdict:
    """One topic's judgement of one article."""

    topic: str
    score: float
    relevant: bool
    vendors: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    why: dict = field(default_factory=dict)


@dataclass
class FeedOutcome:
    """What one poll of one feed did, for the run summary."""

    feed: str
    ok: bool
    new_articles: int = 0
    relevant: int = 0
    not_modified: bool = False
    error: str | None = None
    page_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """One article of a story as a reader sees it: who published what, where, when."""

    article_id: int
    outlet: str
    title: str
    url: str
    published: datetime | None
    copy_kind: str | None = None  # "text" or "near" for copies of another source


@dataclass(frozen=True)
class ReaderLabel:
    """A reader's verdict on an article or a story for one topic; the newest label of a target wins over the model."""

    id: int
    topic: str
    relevant: bool
    by: str
    at: datetime
    note: str = ""
    article_id: int | None = None  # the article labelled, or None for a story's label
    story_id: int | None = None
    folded_at: datetime | None = None  # when `monitor train` took it into the topic's training


@dataclass(frozen=True)
class StoryView:
    """A story as the outputs (Slack, digest, archive) show it, through one topic's eyes."""

    id: int
    topic: str
    title: str
    url: str
    outlet: str
    published: datetime | None
    first_seen: datetime
    relevant_since: datetime | None
    score: float
    relevant: bool
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    why: dict  # the evidence of the story's best-scoring article
    summary: str  # the lead of the best article's text
    sources: list[Source]
    label: ReaderLabel | None = None  # a reader's label on the story, which its relevance follows


SPIKE_DIMENSIONS = ("topic", "vendor", "country")  # coverage spikes are counted per topic, and per vendor and country within it
CHART_SPLITS = ("vendor", "country", "action")  # the archive's coverage chart splits its days by one of these tags


WEBSUB_PATH = "/websub/"  # the archive serves each push subscription's callback at WEBSUB_PATH + its id

# The states of a push subscription: asked and awaiting the hub's verification, verified, refused or never
# verified (asked again later), or being ended.
PENDING, ACTIVE, FAILED, UNSUBSCRIBING = "pending", "active", "failed", "unsubscribing"
SUBSCRIBE, UNSUBSCRIBE, DENIED = "subscribe", "unsubscribe", "denied"  # the hub.mode values of the protocol


@dataclass(frozen=True)
class Subscription:
    """A feed's WebSub subscription as the store keeps it."""

    id: str
    feed_id: int
    hub_url: str
    topic_url: str
    secret: str
    state: str
    requested_at: datetime | None = None
    verified_at: datetime | None = None
    lease_expires_at: datetime | None = None
    last_push_at: datetime | None = None
    attempts: int = 0
    next_try_at: datetime | None = None
    last_error: str | None = None
    deferred_due: datetime | None = None
