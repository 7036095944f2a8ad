"""The archive's filters as conditions on stories, and their facet counts: each value with the number of stories a search finds."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import JSON, Integer, and_, case, cast, distinct, exists, func, literal, or_, select, true, union_all
from sqlalchemy.orm import Session

from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.store.terms import clean

log = logging.getLogger(__name__)

FACETS = ("vendors", "countries", "actions", "sources")
OUTLET_INDEX = "ix_articles_outlet"  # migration 0015: articles (lower(site_name), story_id)
TAG_COLUMNS = {"vendors": Story.vendors, "countries": Story.countries, "actions": Story.actions}

@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    mode: str = "hybrid"  # words | meaning | hybrid
    topic: str = "china-surveillance-bans"
    relevant: bool = True  # only stories relevant to the topic
    vendors: tuple[str, ...] = ()  # canonical vendor names as stored in tags; case does not matter
    countries: tuple[str, ...] = ()  # ISO alpha-2 / "EU"
    actions: tuple[str, ...] = ()  # ban, removal, blacklist, ...
    sources: tuple[str, ...] = ()  # outlet names (as outlet_name() gives them) or feed names
    since: date | None = None
    until: date | None = None  # inclusive
    sort: str = "best"  # best | newest (an empty q lists newest first)
    page: int = 1
    per_page: int = 20


Facets = dict[str, list[tuple[str, int]]]  # facet -> (value, stories), most stories first


def story_date():
    return func.coalesce(Story.published_at, Story.first_seen_at)


def json_elements(tags, dialect: str):
    """The elements of a JSON list column as rows of a `value` column."""
    function = func.json_each if dialect == "sqlite" else func.json_array_elements_text
    return function(tags).table_valued("value").alias()


def one_of(column, ids: list[int], dialect: str):
    """column IN ids, the ids sent as one JSON parameter: SQLAlchemy sends a list as a parameter each, and
    preparing 12,800 of them took longer than the query."""
    payload = literal(json.dumps(ids))
    elements = json_elements(payload if dialect == "sqlite" else cast(payload, JSON), dialect)
    return column.in_(select(cast(elements.c.value, Integer)).select_from(elements))


def base_filters(query: SearchQuery, *, per_story: bool = False) -> list:
    """The conditions that are not facets: relevance to the topic and the dates.

    Relevance is an IN over every relevant story, which SQLite builds once per statement: 6x faster than a lookup
    per story where every story is read, yet a fixed cost (50 ms at 100,000 on a loaded machine) where a few
    thousand are; per_story looks each up instead, for a statement over a bounded set (a slice's word matches).
    """
    conditions = []
    if query.relevant:
        topic = (StoryTopic.topic == clean(query.topic), StoryTopic.relevant.is_(True))
        if per_story:
            conditions.append(exists().where(StoryTopic.story_id == Story.id, *topic))
        else:
            conditions.append(Story.id.in_(select(StoryTopic.story_id).where(*topic)))
    if query.since:
        conditions.append(story_date() >= datetime.combine(query.since, time.min, tzinfo=timezone.utc))
    if query.until:
        conditions.append(story_date() < datetime.combine(query.until + timedelta(days=1), time.min, tzinfo=timezone.utc))
    return conditions


def facet_filters(query: SearchQuery, dialect: str, *, per_story: bool = False) -> dict:
    """The condition of each facet with chosen values (any of them) on stories.

    Outlets: the set of their stories, built once per statement from migration 0015's index on articles' outlet
    names, which suits a statement over many stories (at a million, reading the articles of every story took most
    of a second); per_story looks up each story's articles instead, for a statement over a bounded set (a slice's
    word matches, a run of the nearest articles), where building the set would cost more than the lookups.
    """
    conditions = {}
    for name, values in (("vendors", query.vendors), ("countries", query.countries), ("actions", query.actions)):
        wanted = sorted({clean(v).strip().lower() for v in values} - {""})
        if wanted:
            elements = json_elements(TAG_COLUMNS[name], dialect)
            conditions[name] = exists(select(1).select_from(elements).where(func.lower(elements.c.value).in_(wanted)))
    names = sorted({clean(v).strip().lower() for v in query.sources} - {""})
    if names and per_story:
        named = or_(func.lower(Article.site_name).in_(names), func.lower(Feed.name).in_(names))
        conditions["sources"] = exists(select(1).select_from(Article).outerjoin(Feed, Feed.id == Article.feed_id).where(Article.story_id == Story.id, named))
    elif names:
        conditions["sources"] = Story.id.in_(_outlet_stories(names))
    return conditions


def _outlet_stories(names: list[str]):
    """The stories with an article from one of the outlets: by its page's site name or by its feed's name."""
    by_site = select(Article.story_id).where(func.lower(Article.site_name).in_(names))
    feeds = select(Feed.id).where(func.lower(Feed.name).in_(names))
    return union_all(by_site, select(Article.story_id).where(Article.feed_id.in_(feeds)))


def story_filters(query: SearchQuery, dialect: str, *, per_story: bool = False) -> list:
    """Every filter of the query as conditions on stories (correlated subqueries, so any statement over stories can use them)."""
    return [*base_filters(query, per_story=per_story), *facet_filters(query, dialect, per_story=per_story).values()]


def facet_counts(session: Session, query: SearchQuery, matching) -> Facets:
    """Every value of each facet among the topic's stories, with how many stories match it: the query (`matching`, a
    condition on stories) and every filter but the facet's own, so a count says what ticking that value would show.

    One grouped query per facet; values no story matches count 0 and stay listed, so a filter can be widened.
    """
    dialect = session.get_bind().dialect.name
    base = [matching, *base_filters(query)]
    chosen = facet_filters(query, dialect)
    scored = exists().where(StoryTopic.story_id == Story.id, StoryTopic.topic == clean(query.topic))
    counts: Facets = {}
    for name in FACETS:
        counted = and_(*base, *(condition for facet, condition in chosen.items() if facet != name))
        if name in TAG_COLUMNS:
            elements = json_elements(TAG_COLUMNS[name], dialect)
            stories = func.coalesce(func.sum(case((counted, 1), else_=0)), 0)
            statement = select(elements.c.value, stories).select_from(Story).join(elements, true()).where(scored).group_by(elements.c.value)
        else:
            outlet = func.coalesce(Article.site_name, Feed.name)
            stories = func.count(distinct(case((counted, Article.story_id))))
            statement = (
                select(outlet, stories)
                .select_from(Article)
                .outerjoin(Feed, Feed.id == Article.feed_id)
                .outerjoin(Story, Story.id == Article.story_id)
                .where(outlet.is_not(None))
                .group_by(outlet)
            )
        rows = session.execute(statement).all()
        counts[name] = sorted(((value, int(number)) for value, number in rows), key=lambda row: (-row[1], row[0].casefold()))
    return counts


def filter_options(session: Session, *, topic: str) -> dict[str, list[str]]:
    """The vendors, countries, actions and outlets present among the topic's stories, for the filter lists."""
    counts = facet_counts(session, SearchQuery(topic=topic, relevant=False), true())
    return {name: sorted((value for value, _ in values), key=str.casefold) for name, values in counts.items()}
