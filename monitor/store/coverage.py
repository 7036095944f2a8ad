"""Counts of stories over time: a topic's new stories by vendor and country between two instants (spikes), and any
search's stories per day split by a tag (the archive's chart). Both stores, one grouped query per tag."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import distinct, func, select, true
from sqlalchemy.orm import Session

from monitor.store.filters import json_elements, story_date
from monitor.store.models import Story, StoryTopic
from monitor.store.terms import clean

log = logging.getLogger(__name__)

SPIKE_TAGS = {"vendor": Story.vendors, "country": Story.countries}
CHART_TAGS = {"vendor": Story.vendors, "country": Story.countries, "action": Story.actions}


@dataclass(frozen=True)
class DailyCounts:
    """Stories per UTC day (days without any are absent), in all and per value of the chosen tag."""

    total: dict[date, int] = field(default_factory=dict)
    by_value: dict[str, dict[date, int]] = field(default_factory=dict)


def first_story_seen(session: Session) -> datetime | None:
    """When the monitor first saw a story: the start of its history."""
    return session.scalar(select(func.min(Story.first_seen_at)))


def coverage_counts(session: Session, *, topic: str, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """New stories relevant to the topic dated in [start, end), keyed ("topic", name), ("vendor", V) and ("country", C).

    A story's date is the search's: its publication, else when it was first seen.
    """
    dialect = session.get_bind().dialect.name
    relevant = select(StoryTopic.story_id).where(StoryTopic.topic == clean(topic), StoryTopic.relevant.is_(True))
    when = story_date()
    conditions = (Story.id.in_(relevant), when >= start, when < end)
    counts: dict[tuple[str, str], int] = {}
    total = session.scalar(select(func.count()).select_from(Story).where(*conditions)) or 0
    if total:
        counts[("topic", topic)] = total
    for dimension, column in SPIKE_TAGS.items():
        elements = json_elements(column, dialect)
        rows = session.execute(
            select(elements.c.value, func.count(distinct(Story.id))).select_from(Story).join(elements, true()).where(*conditions).group_by(elements.c.value)
        )
        counts.update({(dimension, value): int(number) for value, number in rows if value})
    return counts


def _utc_day(moment, dialect: str):
    """The UTC calendar day of a stored instant (SQLite keeps UTC text; PostgreSQL's date() would follow the session's zone)."""
    return func.date(moment) if dialect == "sqlite" else func.date(func.timezone("UTC", moment))


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def daily_counts(session: Session, condition, *, split: str) -> DailyCounts:
    """Stories per UTC day among those meeting `condition` (a condition on stories), and per value of the `split` tag:
    a story with two vendors counts once in the total and once for each vendor."""
    dialect = session.get_bind().dialect.name
    day = _utc_day(story_date(), dialect)
    total = {_as_date(d): int(n) for d, n in session.execute(select(day, func.count()).select_from(Story).where(condition).group_by(day))}
    elements = json_elements(CHART_TAGS[split], dialect)
    by_value: dict[str, dict[date, int]] = {}
    rows = session.execute(
        select(day, elements.c.value, func.count(distinct(Story.id))).select_from(Story).join(elements, true()).where(condition).group_by(day, elements.c.value)
    )
    for d, value, number in rows:
        if value:
            by_value.setdefault(value, {})[_as_date(d)] = int(number)
    return DailyCounts(total=total, by_value=by_value)
