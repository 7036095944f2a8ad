"""The daily digest: stories ranked and grouped, rendered as text and HTML with Jinja2, and made an email. Pure: no SMTP, no database."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone as utc_zone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from monitor.domain import DEFAULT_SUBJECT, StoryView, check_subject_template, http_link
from monitor.labels import (
    action_heading,
    action_weight,
    as_utc,
    evidence,
    plural,
    short_time,
    shorten,
    tag_labels,
    topic_title,
)

log = logging.getLogger(__name__)

SUMMARY_CHARS = 220  # about two lines of the email at 640 px
OUTLET_WEIGHT = 0.1  # per doubling of the outlets that carry a story
RECENCY_WEIGHT = 0.1  # for a story published now; halves every RECENCY_HALF_LIFE hours
RECENCY_HALF_LIFE = 24.0


@dataclass(frozen=True)
class Digest:
    subject: str
    text: str
    html: str
    stories: int
    articles: int
    countries: int


@dataclass(frozen=True)
class SourceLine:
    outlet: str
    title: str
    url: str  # empty when the source has no http(s) link
    when: str


@dataclass(frozen=True)
class Item:
    """One story as the templates show it: every value already a readable string."""

    number: int
    title: str
    url: str  # empty when the story has no http(s) link
    outlet: str
    when: str
    summary: str
    tags: list[str]
    score: str
    why: str
    sources: list[SourceLine]  # empty when the one source is the story's own line
    archive: str | None


@dataclass(frozen=True)
class Group:
    heading: str
    items: list[Item]


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("monitor.notify", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )


def importance(story: StoryView, *, now: datetime) -> float:
    """score + 0.1·log2(outlets) + 0.1·2^(−age_hours/24): the score leads; breadth of coverage and freshness break near-ties.

    Eight outlets add 0.3; a story published now adds 0.1, one a day old 0.05. Age counts from publication
    (or first sighting when the date is unknown).
    """
    outlets = max(1, len({source.outlet for source in story.sources}))
    seen = as_utc(story.published or story.first_seen)
    age_hours = max(0.0, (as_utc(now) - seen).total_seconds() / 3600)
    return story.score + OUTLET_WEIGHT * math.log2(outlets) + RECENCY_WEIGHT * 2 ** (-age_hours / RECENCY_HALF_LIFE)


def rank_stories(stories: list[StoryView], *, now: datetime) -> list[StoryView]:
    """Most important first (see `importance`); ties go to the newer story, then the lower id, so the order is stable."""
    return sorted(
        stories,
        key=lambda story: (-importance(story, now=now), -as_utc(story.published or story.first_seen).timestamp(), story.id),
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/London)") from None


def _item(number: int, story: StoryView, zone: ZoneInfo, archive_url: str | None) -> Item:
    sources = [
        SourceLine(outlet=source.outlet, title=" ".join(source.title.split()), url=http_link(source.url) or "", when=short_time(source.published, zone))
        for source in story.sources
    ]
    if len(sources) == 1 and sources[0].url == (http_link(story.url) or ""):
        sources = []  # it would repeat the outlet and time under the headline
    return Item(
        number=number,
        title=" ".join(story.title.split()) or story.url,
        url=http_link(story.url) or "",
        outlet=story.outlet,
        when=short_time(story.published or story.first_seen, zone),
        summary=shorten(story.summary, SUMMARY_CHARS),
        tags=tag_labels(story.vendors, story.countries, story.actions),
        score=f"{story.score:.2f}",
        why=evidence(story.why),
        sources=sources,
        archive=f"{archive_url}/stories/{story.id}" if archive_url else None,
    )


def group_stories(ranked: list[StoryView]) -> list[tuple[str, list[StoryView]]]:
    """By each story's main action, the weightiest first (labels.ACTION_ORDER: bans before calls for bans); ranked within each."""
    groups: dict[str | None, list[StoryView]] = {}
    for story in ranked:
        groups.setdefault(story.actions[0] if story.actions else None, []).append(story)
    return [(action_heading(action), groups[action]) for action in sorted(groups, key=action_weight)]


def build_digest(
    stories: list[StoryView],
    *,
    day: date,
    topic: str,
    now: datetime,
    subject_template: str = DEFAULT_SUBJECT,
    archive_url: str | None = None,
    timezone: str = "UTC",
    title: str | None = None,
    spikes: list[str] | tuple[str, ...] = (),
) -> Digest:
    """The day's email: a header with counts, the headlines, the stories grouped and ranked, every source linked; a short note when there is nothing.

    title is the topic's title from feeds.yaml (default: its name in words), used in the subject and heading; spikes are
    the sentences of the coverage spikes found since the last digest, which open it.
    """
    check_subject_template(subject_template)
    topic = topic_title(topic, title)
    zone = _zone(timezone)
    archive_url = archive_url.rstrip("/") if archive_url else None
    ranked = rank_stories(stories, now=now)
    articles = sum(max(1, len(story.sources)) for story in ranked)
    countries = len({code for story in ranked for code in story.countries})
    number = iter(range(1, len(ranked) + 1))
    groups = [Group(heading, [_item(next(number), story, zone, archive_url) for story in members]) for heading, members in group_stories(ranked)]
    headlines = [item for group in groups for item in group.items]
    subject = subject_template.format(
        count=len(ranked), stories=plural(len(ranked), "story", "stories"), topic=topic, day=day, articles=articles, countries=countries
    )
    counts = ", ".join((plural(len(ranked), "story", "stories"), plural(articles, "article"), plural(countries, "country", "countries")))
    context = {
        "subject": subject,
        "topic": topic,
        "day": f"{day:%A} {day.day} {day:%B %Y}",
        "counts": counts,
        "groups": groups,
        "headlines": headlines if len(headlines) > 1 else [],
        "archive_url": archive_url,
        "generated": short_time(now, zone),
        "timezone": timezone,
        "spikes": list(spikes),
    }
    env = _environment()
    text = env.get_template("digest.txt").render(context)
    html = env.get_template("digest.html").render(context)
    return Digest(subject=subject, text=text, html=html, stories=len(ranked), articles=articles, countries=countries)


def to_email(
    digest: Digest,
    *,
    sender: str,
    recipients: list[str],
    message_id_domain: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """multipart/alternative: the text part first, then the HTML one (mail clients show the last they can)."""
    if not recipients:
        raise ValueError("the digest has no recipients: set MONITOR_DIGEST_TO or the digest's recipients in feeds.yaml")
    message = EmailMessage()
    message["Subject"] = digest.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(as_utc(date) if date else datetime.now(utc_zone.utc))
    domain = message_id_domain or sender.rpartition("@")[2].strip(" >") or "monitor.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(digest.text, subtype="plain", charset="utf-8")
    message.add_alternative(digest.html, subtype="html", charset="utf-8")
    return message
