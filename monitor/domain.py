"""The plain data every layer shares: the specs read from feeds.yaml, and what passes between the stages."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

LINK_SCHEMES = ("http", "https")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
HTTP_URL = re.compile(r"^https?://[^\s/]+")
MIN_INTERVAL = 60
MAX_INTERVAL = 30 * 86400
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


def parse_duration(value: Any) -> int:
    """Seconds from 30m, 1h30m, 90s, 2d or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 1h or 900")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and DURATION_PART.sub("", text).strip() == "":
            seconds = sum(float(n) * DURATION_UNITS[u.lower()] for n, u in DURATION_PART.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration such as 30m, 1h or 900")
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:  # also refuses .inf and .nan
        raise ValueError("an interval must be between 1 minute and 30 days")
    return int(seconds)


def span(seconds: float) -> str:
    """A duration as a reader says it: "45 s", "40 min", "1 h 52 min", "2 d 3 h"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


class FeedSpec(BaseModel):
    """A feed to poll, as feeds.yaml names it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: str
    interval: int = 1800  # where polling starts; kept when adaptive polling is off
    min_interval: int | None = None  # bounds of the adaptive interval; default: MONITOR_POLL_MIN/MAX_INTERVAL
    max_interval: int | None = None
    language: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not HTTP_URL.match(value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("interval", "min_interval", "max_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int | None:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _within_bounds(self) -> FeedSpec:
        low, high = self.min_interval, self.max_interval
        if low is not None and high is not None and low > high:
            raise Misplaced(f"min_interval {span(low)} is longer than max_interval {span(high)}", ("min_interval",))
        if "interval" in self.model_fields_set and low is not None and self.interval < low:
            raise Misplaced(f"interval {span(self.interval)} is shorter than min_interval {span(low)}", ("interval",))
        if "interval" in self.model_fields_set and high is not None and self.interval > high:
            raise Misplaced(f"interval {span(self.interval)} is longer than max_interval {span(high)}", ("interval",))
        return self


class TopicSpec(BaseModel):
    """A watched topic: what it is about and the words that show it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str | None = Field(None, description="What readers see in the digest, Slack and the archive; default: the name in words.")
    description: str
    threshold: float | None = Field(None, ge=0, le=1)
    examples: list[str] = Field(default_factory=list)
    negative_examples: list[str] = Field(default_factory=list)
    vendors: dict[str, list[str]] = Field(default_factory=dict)
    countries: dict[str, list[str]] = Field(default_factory=dict)
    actions: dict[str, list[str]] = Field(default_factory=dict)
    subjects: list[str] = Field(default_factory=list)
    training: list[Path] = Field(default_factory=list)  # labelled JSON Lines; config.load_config checks they exist


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day such as 07:00") from None


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone such as Europe/London or UTC") from None
    return name


ClockTime = Annotated[time, BeforeValidator(_clock_time)]
TimeZone = Annotated[str, AfterValidator(_zone)]


SUBJECT_FIELDS = ("count", "stories", "topic", "day", "articles", "countries")
DEFAULT_SUBJECT = "{stories} on {topic}, {day:%d %b %Y}"


def check_subject_template(template: str) -> str:
    """The template back when str.format can fill it with the digest's fields; else ValueError saying what is wrong.

    Fields: {count} (a number), {stories} ("1 story", "7 stories"), {topic}, {day} (a date: {day:%d %b} works),
    {articles}, {countries}.
    """
    allowed = ", ".join("{" + name + "}" for name in SUBJECT_FIELDS)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"subject template {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name in fields:
        if name not in SUBJECT_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            raise ValueError(f"subject template {template!r}: unknown field {shown}; use {allowed}")
    try:
        template.format(count=7, stories="7 stories", topic="topic", day=dt.date(2026, 1, 1), articles=19, countries=3)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"subject template {template!r}: {exc}") from None
    return template


class QuietHours(BaseModel):
    """A daily window in which alerts are held, then sent as one message when it ends."""

    model_config = ConfigDict(extra="forbid")

    start: ClockTime
    end: ClockTime
    timezone: TimeZone = "UTC"

    def release_time(self, now: datetime) -> datetime | None:
        """When an alert made at `now` may go out: None when now is outside the window."""
        local = now.astimezone(ZoneInfo(self.timezone))
        start, end = self.start, self.end
        clock = local.time().replace(tzinfo=None)
        inside = start <= clock < end if start < end else (clock >= start or clock < end)
        if not inside or start == end:
            return None
        release = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
        if release <= local:
            release += timedelta(days=1)
        return release.astimezone(now.tzinfo)


class SlackRoute(BaseModel):
    """Where a topic's alerts go: a webhook named by the environment variable that holds its URL."""

    model_config = ConfigDict(extra="forbid")

    webhook: str = Field("MONITOR_SLACK_WEBHOOK_URL", pattern=r"^[A-Z_][A-Z0-9_]*$")
    name: str = ""
    topics: list[str] = Field(default_factory=list)  # empty: every topic
    min_score: float = Field(0.0, ge=0, le=1)
    quiet_hours: QuietHours | None = None

    @model_validator(mode="after")
    def _named(self) -> SlackRoute:
        self.name = self.name or self.webhook
        return self

    def wants(self, topic: str, score: float) -> bool:
        return (not self.topics or topic in self.topics) and score >= self.min_score


class DigestSpec(BaseModel):
    """The daily email: when, to whom, and how its subject reads."""

    model_config = ConfigDict(extra="forbid")

    time: ClockTime = Field(default_factory=lambda: dt.time(7, 0))
    timezone: TimeZone = "UTC"
    recipients: list[str] = Field(default_factory=list)
    subject: str = DEFAULT_SUBJECT
    when_empty: Literal["send", "skip"] = "send"
    topics: list[str] = Field(default_factory=list)  # empty: every topic

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return check_subject_template(value)


class Outputs(BaseModel):
    """Where alerts and digests go."""

    model_config = ConfigDict(extra="forbid")

    slack: list[SlackRoute] = Field(default_factory=lambda: [SlackRoute()])
    digest: DigestSpec = Field(default_factory=DigestSpec)
    archive_url: str | None = None  # where `monitor serve` is reachable by readers: links in alerts and digests

    @field_validator("archive_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value and not HTTP_URL.match(value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else None


class Misplaced(ValueError):
    """A model-level error that knows the field it is about, so the error names that field's line."""

    def __init__(self, message: str, loc: tuple) -> None:
        super().__init__(message)
        self.loc = loc


class Config(BaseModel):
    """The whole of feeds.yaml, validated."""

    model_config = ConfigDict(extra="forbid")

    feeds: list[FeedSpec] = Field(default_factory=list)
    topics: list[TopicSpec] = Field(min_length=1)
    outputs: Outputs = Field(default_factory=Outputs)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (("feed", [f.name for f in self.feeds]), ("topic", [t.name for t in self.topics])):
            seen: dict[str, int] = {}
            for index, name in enumerate(names):
                if name in seen:
                    raise Misplaced(f"two {kind}s are named {name!r} ({kind}s.{seen[name]} and this one)", (f"{kind}s", index, "name"))
                seen[name] = index
        known = {topic.name for topic in self.topics}
        routed = [t for route in self.outputs.slack for t in route.topics] + self.outputs.digest.topics
        for name in routed:
            if name not in known:
                raise ValueError(f"outputs name the topic {name!r}, which is not defined; known: {', '.join(sorted(known))}")
        return self

    def topic(self, name: str | None) -> TopicSpec:
        if name is None:
            return self.topics[0]
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"no topic named {name!r}; known: {', '.join(t.name for t in self.topics)}")
