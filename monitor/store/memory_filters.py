"""The search's filters over stories, held in memory beside the vectors: which stories a filtered search may
return, answered for every story at once.

Asking the store, at a million articles, took 150 to 450 ms for a narrow filter (every id it lets through read)
or about 8 µs an article for the nearest ones; here it is one pass over arrays indexed by story id, under a
millisecond. What is held can be behind the store: each refresh reads the stories that are new or marked
updated since the last (with a margin for writers' clocks); the rest (an article moved to another story, a
story deleted) waits for the hourly full reload. So the search asks the store about what it returns
(monitor/store/search.py): what is held here decides only where to look.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import BigInteger, bindparam, cast, func, select, true
from sqlalchemy.orm import Session

from monitor.store.filters import TAG_COLUMNS, SearchQuery, chosen_values, date_span, json_elements, one_of, story_date
from monitor.store.models import Story, StoryTopic
from monitor.store.terms import clean

CLOCK_MARGIN = timedelta(minutes=10)  # stories updated this long before the newest update seen are read again
# what a refresh asks at every search that holds its filters, built once (building cost more than running)
_STORED_AFTER = select(Story.id).where(Story.id > bindparam("after"))
_UPDATED_SINCE = select(Story.id, Story.last_updated_at).where(Story.last_updated_at >= bindparam("since", type_=Story.__table__.c.last_updated_at.type))


def epoch_seconds(column, dialect: str):
    """A UTC datetime column as whole seconds since 1970, computed in the store (1M rows decoded in Python took seconds)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    return cast(func.extract("epoch", column), BigInteger)


@dataclass
class _Held:
    """The arrays of one load; a refresh makes a new one, so a search reads one consistent set."""

    dates: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # by story id: seconds since 1970
    relevant: dict[str, np.ndarray] = field(default_factory=dict)  # topic -> bool by story id
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: {name: {} for name in (*TAG_COLUMNS, "sources")})  # facet -> value -> story ids


class StoryFilters:
    """Which stories pass a query's filters, from arrays indexed by story id; refreshed incrementally from the store."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._held = _Held()
        self._last_story = 0
        self._updated_mark: datetime | None = None  # the latest last_updated_at when stories were last read
        self._read_at: dict[int, datetime] = {}  # the stories read within CLOCK_MARGIN of that mark: the update read

    @property
    def nbytes(self) -> int:
        held = self._held
        arrays = [held.dates, *held.relevant.values(), *(ids for values in held.values.values() for ids in values.values())]
        return sum(array.nbytes for array in arrays)

    def refresh(self, session: Session, articles: list[tuple[str | None, str | None, int | None]], *, full: bool = False) -> None:
        """Read the stories that are new or updated (tags, date, relevance: repository.place_article and
        feedback.settle_stories mark them) since the last call, every story when full; and take the outlets of the
        articles stored since, as (site name, feed name, story id), which the vector index reads in its own pass
        over them (reading the articles' rows again took 10 s at a million)."""
        if full:
            self._reset()
        dialect, held = session.get_bind().dialect.name, self._held
        if self._updated_mark is None:
            held = self._read_stories(session, dialect, None)
        elif changed := self._changed(session):
            held = self._read_stories(session, dialect, sorted(changed))
        named = [(name.lower(), story_id) for site, feed, story_id in articles if story_id for name in {site, feed} if name]
        self._held = replace(held, values=held.values | {"sources": _extended(held.values["sources"], named)})

    def _changed(self, session: Session) -> set[int]:
        """The stories stored or updated since the last call: updated ones a margin earlier, for writers' clocks, less
        those whose update was read already (reading them again at every search cost 5 ms at a million). An update
        is known by its moment, to the microsecond: each storing transaction reads the clock once."""
        changed = set(session.scalars(_STORED_AFTER, {"after": self._last_story}))
        updated = session.execute(_UPDATED_SINCE, {"since": self._updated_mark - CLOCK_MARGIN})
        return changed | {story_id for story_id, at in updated if self._read_at.get(story_id) != at}

    def _read_stories(self, session: Session, dialect: str, ids: list[int] | None) -> _Held:
        """The held arrays with these stories (every story, for None) read again; the old arrays are left to readers."""
        held = self._held
        mark = session.scalar(select(func.max(Story.last_updated_at)))  # before reading: an update meanwhile is read next time
        among = [] if ids is None else [one_of(Story.id, ids, dialect)]
        rows = session.execute(select(Story.id, epoch_seconds(story_date(), dialect), Story.last_updated_at).where(*among)).all()
        if not rows:
            return held
        read = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        dates = _grown(held.dates, int(read.max()) + 1)
        dates[read] = [row[1] or 0 for row in rows]
        self._last_story, self._updated_mark = max(self._last_story, int(read.max())), mark
        since = mark - CLOCK_MARGIN if mark else None
        fresh = {row[0]: row[2] for row in rows if since and row[2] and row[2] >= since}
        self._read_at = {story_id: at for story_id, at in (self._read_at | fresh).items() if since and at >= since}
        relevant = {topic: _grown(flags, len(dates)) for topic, flags in held.relevant.items()}
        for flags in relevant.values():
            flags[read] = False
        # a few stories: looked up by id, relevance read with them (with it in the condition, SQLite took the index
        # on relevance and read every relevant story)
        topics = select(StoryTopic.story_id, StoryTopic.topic, StoryTopic.relevant)
        topics = topics.where(one_of(StoryTopic.story_id, ids, dialect)) if ids is not None else topics.where(StoryTopic.relevant.is_(True))
        for story_id, topic, is_relevant in session.execute(topics):
            if is_relevant:
                relevant.setdefault(topic, np.zeros(len(dates), dtype=bool))[story_id] = True
        values = dict(held.values)
        for facet, column in TAG_COLUMNS.items():
            elements = json_elements(column, dialect)
            pairs = session.execute(select(func.lower(elements.c.value), Story.id).select_from(Story).join(elements, true()).where(*among))
            values[facet] = _extended(values[facet], pairs)  # tags only grow (repository.place_article): a story's old values stand
        return _Held(dates, relevant, values)

    def passing(self, query: SearchQuery, *, facets: bool = True) -> np.ndarray | None:
        """A bool per story id: whether the story passes the query's filters (without facets: relevance and dates
        only), as far as what is held knows; None when the query has no filter."""
        held, wanted = self._held, chosen_values(query) if facets else {}
        if not (query.relevant or query.since or query.until or wanted):
            return None
        ok = np.ones(len(held.dates), dtype=bool)
        ok[0] = False  # no story has id 0
        if query.relevant:
            ok &= held.relevant.get(clean(query.topic), np.zeros(len(ok), dtype=bool))
        start, end = date_span(query)
        if start:
            ok &= held.dates >= int(start.timestamp())
        if end:
            ok &= held.dates < int(end.timestamp())
        for name, values in wanted.items():
            having = np.zeros(len(ok), dtype=bool)
            for value in set(values) & held.values[name].keys():
                having[held.values[name][value]] = True
            ok &= having
        return ok

    def newest(self, query: SearchQuery, count: int) -> tuple[np.ndarray, int]:
        """The ids of up to count stories that pass the query's filters, newest first (then highest id, as the store
        orders them), and how many pass in all, as far as what is held knows."""
        held = self._held
        ok = self.passing(query)
        ok = held.dates != 0 if ok is None else ok  # no filter: every story held (none has date 0: 1970)
        ids = np.flatnonzero(ok)
        if len(ids) > count:
            ids = ids[np.argpartition(-held.dates[ids], count - 1)[:count]]
        ids = ids[np.lexsort((-ids, -held.dates[ids]))]
        return ids, int(np.count_nonzero(ok))

    def counts(self, query: SearchQuery, listed: dict[str, list[str]], among: list[int] | None = None) -> dict[str, list[tuple[str, int]]]:
        """Each listed value of each facet with how many stories it would show: those among the query's matches (every
        story for None) that pass the query's other filters and have the value, as the store's facet_counts counts
        them (monitor/store/facets.py) but from what is held: at a million, counting every relevant story in the
        store took a second, most of it outlets read from the article rows."""
        held, wanted = self._held, chosen_values(query)
        matching = None
        if among is not None:
            matching = np.zeros(len(held.dates), dtype=bool)
            ids = np.asarray(among, dtype=np.int64)
            matching[ids[(ids > 0) & (ids < len(matching))]] = True
        counts = {}
        for facet, values in listed.items():
            others = replace(query, **{facet: ()}) if facet in wanted else query  # a facet's own choice leaves its counts alone
            ok = self.passing(others)
            ok = np.ones(len(held.dates), dtype=bool) if ok is None else ok
            ok = ok if matching is None else ok & matching
            found = {value: _stories_passing(held.values[facet].get(value.lower()), ok) for value in values}
            counts[facet] = sorted(found.items(), key=lambda row: (-row[1], row[0].casefold()))
        return counts


def _stories_passing(ids: np.ndarray | None, ok: np.ndarray) -> int:
    """How many distinct stories of ids (a value's, with repeats: an outlet's articles) pass."""
    if ids is None or not len(ids):
        return 0
    ids = ids[ids < len(ok)]
    return len(np.unique(ids[ok[ids]]))


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """A copy at least size long, the new places zero (readers keep the old array)."""
    grown = np.zeros(max(size, len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _extended(values: dict[str, np.ndarray], pairs) -> dict[str, np.ndarray]:
    """The values' story ids with (value, story id) pairs added: a new dict, a new array for each value touched."""
    found: dict[str, list[int]] = defaultdict(list)
    for value, story_id in pairs:
        if value is not None:
            found[str(value)].append(story_id)
    extended = dict(values)
    for value, ids in found.items():
        extended[value] = np.concatenate([values.get(value, np.zeros(0, dtype=np.int64)), np.asarray(ids, dtype=np.int64)])
    return extended
