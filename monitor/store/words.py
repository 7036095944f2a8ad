"""Search by words with bounded work: the matches ranked within the most recent slice of the archive that holds enough.

Ranking every matching article (bm25 in FTS5, ts_rank over each match's tsvector) costs what the archive holds
matches: a common word matches a tenth of a year's million articles, and grows with every year kept. So the words
are ranked within a slice: the articles stored in the archive's last 7 days, widened to 30, 120 and 365 days, then
to everything, only while the slice holds fewer matching stories (the filters applied) than the page needs (or
hybrid's candidates), and then straight to the slice that the matches' rate in the narrower one says will hold
enough. A common word stops at the first slice; a rare one widens cheaply, having few matches in any.
A news archive's best matches are mostly its recent ones, and sort=newest is exact: the newest matches are the
slice's. A slice is a range of article ids (ids grow as articles are stored; its ends come from the index on
fetched_at), which FTS5 serves from its rowids and PostgreSQL from its primary key's btree ANDed with the GIN index.
A slice within the archive's last RECENT is ranked in a word index of those weeks alone: on SQLite (migration 0014),
bm25 counts each word's articles across the index it ranks in, which at a million cost more than the ranking; on
PostgreSQL (0017), the GIN index yields every match of the index it reads before the slice's id range cuts them.
An older slice within at most MAX_BLOCKS blocks of ids is ranked in those blocks' indexes (monitor/store/word_blocks.py),
each with its own counts; one reaching further, in the whole archive's.
The total is the slice's count, exact once the slice is the whole archive (or all a date filter allows), else a
lower bound: counting every match of a common word costs what ranking them did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import BigInteger, Integer, Text, bindparam, case, cast, column, func, literal_column, select, table, text, union, union_all
from sqlalchemy.orm import Session

from monitor.store.filters import one_of, story_date
from monitor.store.models import Article, Story
from monitor.store.terms import Terms
from monitor.store.word_blocks import BLOCK, blocks_made, bounds, table_name

# the search objects that migrations 0004 and 0005 add beside the models
FTS_TABLE = "articles_fts"
RECENT_FTS_TABLE = "articles_fts_recent"  # SQLite: the articles from the id in RECENT_FLOOR on (migration 0014)
RECENT_WORDS_TABLE = "articles_recent_words"  # PostgreSQL: their ids, stories and tsvectors, GIN-indexed (migrations 0017, 0018)
RECENT_FLOOR = "articles_fts_recent_floor"  # both stores
STORY_MAP = "article_stories"  # SQLite: (article_id, story_id), narrow, for joining word matches to stories
TSVECTOR_COLUMN = "search_vector"
TSVECTOR_INDEX = "ix_articles_search_vector"
REGCONFIG = literal_column("'english'::regconfig")

WINDOWS = (timedelta(days=7), timedelta(days=30), timedelta(days=120), timedelta(days=365))  # the slices before the whole archive
MARGIN = timedelta(days=7)  # a date filter's slice reaches this far past its days: an article's fetch and its story's date differ
RECENT = WINDOWS[2] + timedelta(days=1)  # what the recent word index keeps: the 120-day slice, and a day for the clock's drift
MAX_BLOCKS = 3  # blocks of ids a slice is ranked in, at most, rather than in the whole archive's index


def _fts(name: str):
    return table(name, column("rowid", Integer), column("rank"))


fts = _fts(FTS_TABLE)
fts_match = literal_column(FTS_TABLE).op("MATCH")
recent_fts = _fts(RECENT_FTS_TABLE)
recent_fts_match = literal_column(RECENT_FTS_TABLE).op("MATCH")
recent_floor = table(RECENT_FLOOR, column("id", Integer))
recent_words = table(RECENT_WORDS_TABLE, column("id", Integer), column("story_id", Integer), column(TSVECTOR_COLUMN))
story_map = table(STORY_MAP, column("article_id", Integer), column("story_id", Integer))
tsvector = literal_column(f"articles.{TSVECTOR_COLUMN}")


@dataclass(frozen=True)
class Slice:
    """The articles searched: ids from floor (inclusive) to ceiling (exclusive), None for no end."""

    floor: int | None = None
    ceiling: int | None = None
    complete: bool = True  # every article the date filters allow: its count of matches is the total
    recent: bool = False  # within the recent word index
    blocks: tuple[int, ...] = ()  # else within these blocks' indexes (none: the whole archive's)

    def indexes(self) -> list[tuple]:
        """The FTS5 tables that rank this slice's words, each with its MATCH operator."""
        if self.recent:
            return [(recent_fts, recent_fts_match)]
        if self.blocks:
            return [(_fts(table_name(block)), literal_column(table_name(block)).op("MATCH")) for block in self.blocks]
        return [(fts, fts_match)]


def tsquery(terms: Terms):
    return func.websearch_to_tsquery(REGCONFIG, cast(terms.websearch(), Text))


def ranked_words(
    session: Session,
    terms: Terms,
    filters: list,
    *,
    since: date | None,
    until: date | None,
    limit: int,
    offset: int,
    newest: bool,
    enough: int | None = None,
    among: list[int] | None = None,
) -> tuple[list[tuple], int, Slice]:
    """(story id, best article id, rank) of a page of the stories whose articles hold the words, best or newest first;
    their number in the slice searched (a lower bound unless the slice is complete); and the slice.

    A slice holding `enough` stories (the whole page when None) ends the widening; the page is taken from it. among:
    the ids of the only stories the filters can let through, where they are known and few, tested on each match's
    story id as it is read, before the story's own row (Dahua in the US at a million: 25-26 against 35-37 ms a search).
    """
    dialect = session.get_bind().dialect.name
    parts = slices(session, since, until)
    with planned_for_words(session):
        n = 0
        while True:
            part, wanted = parts[n], enough or offset + limit
            inner = [p.floor for p in parts[:n]]
            rows, total = _ranked(session, dialect, terms, filters, part, inner, among, limit=limit, offset=offset, newest=newest)
            if total >= wanted or part.complete:
                if part.complete and not rows and offset:  # a page past the end: the count without the rows
                    found = word_matches(dialect, terms, part).subquery()
                    total = session.scalar(select(func.count()).select_from(found).join(Story, Story.id == found.c.story_id).where(*filters))
                return rows, total, part
            # the next slice whose span, at the matches' rate in this one, would hold enough (those between skipped)
            span = WINDOWS[n] * wanted / (total + 1)  # + 1: a rate read off a few matches, taken low
            n = next((m for m in range(n + 1, len(parts)) if parts[m].complete or WINDOWS[m] >= span), len(parts) - 1)


# One statement each way (four before, a millisecond of a search in SQLAlchemy and round trips): the settings read
# first (OFFSET 0 keeps that subquery apart, evaluated before the outer list sets them), restored for this transaction.
_SCANS_OFF = text(
    "SELECT before.*, set_config('enable_indexscan', 'off', true), set_config('enable_seqscan', 'off', true) FROM "
    "(SELECT current_setting('enable_indexscan') AS indexscan, current_setting('enable_seqscan') AS seqscan OFFSET 0) AS before"
)
_SCANS_BACK = text("SELECT set_config('enable_indexscan', :indexscan, true), set_config('enable_seqscan', :seqscan, true)")


@contextmanager
def planned_for_words(session: Session) -> Iterator[None]:
    """Statements that read a slice's word matches, planned to read only the matches on PostgreSQL.

    Its planner counts no cost for reading each tsvector out of TOAST, so on a slice it walks the primary key and tests
    every article's; ANDing the GIN index's bitmap with the key range's reads only the matches: 5x to 20x faster
    (EXPLAIN ANALYZE at 100,000). So plain index scans are off meanwhile, and sequential ones too: over the recent
    words (a sixth of a million rows) it read every tsvector instead, 280 ms for a rare pair of words against a few ms
    through the GIN index.
    """
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    before = session.execute(_SCANS_OFF).one()
    try:
        yield
    finally:
        session.execute(_SCANS_BACK, {"indexscan": before.indexscan, "seqscan": before.seqscan})


def slices(session: Session, since: date | None, until: date | None) -> list[Slice]:
    """The slices to search, narrowest first, the last complete: two statements, each bound an index's lookup.

    The windows end at the newest article stored (or at until); a week before since and a week after until bound every slice.
    """
    newest, first, top, recent_from, made = session.execute(_ARCHIVE_ENDS).one()
    if newest is None:
        return [Slice()]
    end, stop = newest, None  # the windows end at the newest article or at until; the slices stop a week after until
    if until:
        end = min(newest, _day_start(until + timedelta(days=1)))
        stop = end + MARGIN if end + MARGIN < newest else None
    moments = {f"window_{n}": end - window for n, window in enumerate(WINDOWS)}
    moments |= ({"since": _day_start(since) - MARGIN} if since else {}) | ({"stop": stop} if stop else {})
    *starts, floor, ceiling = session.execute(_first_ids(since is not None, stop is not None), moments).one()
    if since:  # nothing fetched since: a floor above every id
        floor = top + 1 if floor is None else floor
    found = []
    for start in starts:
        if start is None or start <= first or (floor is not None and start <= floor):
            break
        found.append(_slice(start, ceiling, False, first, top, recent_from, made))
    return [*found, _slice(floor, ceiling, True, first, top, recent_from, made)]


def _slice(floor: int | None, ceiling: int | None, complete: bool, first: int, top: int, recent_from: int | None, made: int | None) -> Slice:
    """The slice with the indexes that rank it: the recent one where it holds the slice (on PostgreSQL its rows, which
    carry their stories, beat the newest block's: 15.8 against 19.8 ms for "camera ban" in Hikvision's last week at
    a million); else the blocks it spans where they are few (and not every block the archive spans: its whole index is
    then as small); else the whole archive's."""
    if floor is not None and recent_from is not None and floor >= recent_from:
        return Slice(floor, ceiling, complete, recent=True)
    spanned = range((first if floor is None else floor) // BLOCK, (top if ceiling is None else ceiling - 1) // BLOCK + 1)
    stored = range(first // BLOCK, top // BLOCK + 1)
    within = made is not None and spanned and spanned[-1] <= made and len(spanned) <= MAX_BLOCKS and spanned != stored
    return Slice(floor, ceiling, complete, blocks=tuple(spanned) if within else ())


def keep_recent(session: Session, now: datetime) -> None:
    """Move the recent word index's floor up to the first article fetched within RECENT of now, dropping those before.

    On SQLite they are dropped one by one ('delete' reads each article again) when fewer go than stay, else the index
    is rebuilt from those that stay.
    """
    asked = (select(recent_floor.c.id).scalar_subquery(), select(func.max(Article.id)).scalar_subquery(), _first_fetched(now - RECENT))
    floor, newest_id, kept_from = session.execute(select(*asked)).one()  # one statement: it runs at every store
    newest_id = newest_id or 0
    kept_from = newest_id + 1 if kept_from is None else kept_from
    if floor is None or kept_from <= floor:
        return
    name = RECENT_FTS_TABLE
    if session.get_bind().dialect.name == "postgresql":
        session.execute(recent_words.delete().where(recent_words.c.id < kept_from))
    elif kept_from - floor > newest_id + 1 - kept_from:
        session.execute(text(f"INSERT INTO {name}({name}) VALUES ('delete-all')"))
        session.execute(text(f"INSERT INTO {name}(rowid, title, text) SELECT id, title, text FROM articles WHERE id >= :id"), {"id": kept_from})
    else:
        dropped = f"INSERT INTO {name}({name}, rowid, title, text) SELECT 'delete', id, title, text FROM articles WHERE id >= :floor AND id < :id"
        session.execute(text(dropped), {"floor": floor, "id": kept_from})
    session.execute(recent_floor.update().values(id=kept_from))


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _first_fetched(at):
    """The id of the first article fetched at or after a moment (ids grow with fetches, so a slice's floor)."""
    return select(Article.id).where(Article.fetched_at >= at).order_by(Article.fetched_at).limit(1).scalar_subquery()


def _moment(name: str):
    return bindparam(name, type_=Article.__table__.c.fetched_at.type)


# slices' statements, built once (a search's two of them cost 2 ms to build on this 2-core VM, more than to run): the
# archive's newest fetch, first and last ids, recent words' floor and newest block, then the first id fetched at each
# window's start and since (NULL without), and the first past stop (NULL without)
_ARCHIVE_ENDS = select(
    *(
        select(value).scalar_subquery()
        for value in (func.max(Article.fetched_at), func.min(Article.id), func.max(Article.id), recent_floor.c.id, func.max(blocks_made.c.block))
    )
)


@cache
def _first_ids(since: bool, stop: bool):
    floors = [_first_fetched(_moment(f"window_{n}")) for n in range(len(WINDOWS))]
    floors.append(_first_fetched(_moment("since")) if since else literal_column("NULL"))
    ceiling = select(Article.id).where(Article.fetched_at > _moment("stop")).order_by(Article.fetched_at).limit(1).scalar_subquery()
    return select(*floors, ceiling if stop else literal_column("NULL"))


def _postgresql_words(part: Slice) -> tuple:
    """(what to read from, the tsvector, the article id, its story id) for a slice on PostgreSQL: its recent words
    where it lies within them, which carry the story id, so that no match reads its article's row for it."""
    if part.recent:
        return recent_words, recent_words.c[TSVECTOR_COLUMN], recent_words.c.id, recent_words.c.story_id
    return Article.__table__, tsvector, Article.id, Article.story_id


def _within(ids, part: Slice) -> list:
    return ([ids >= part.floor] if part.floor is not None else []) + ([ids < part.ceiling] if part.ceiling is not None else [])


def _tier(article_id, inner: list[int]) -> list:
    """Which of the narrower slices (0: the narrowest) holds an article, len(inner) for none: a widened slice ranks the
    stories of the narrower ones first (searched or skipped), so its pages continue the pages a narrower one answered."""
    return [case(*((article_id >= floor, n) for n, floor in enumerate(inner)), else_=len(inner))] if inner else []


def _ranked(
    session: Session,
    dialect: str,
    terms: Terms,
    filters: list,
    part: Slice,
    inner: list[int],
    among: list[int] | None,
    *,
    limit: int,
    offset: int,
    newest: bool,
) -> tuple[list[tuple], int]:
    """A page of the stories matching the words within a slice, and their number there (count(*) OVER (): the same pass)."""
    if dialect == "sqlite":
        hits = _sqlite_matches(terms, part, ranked=True)
        best = func.max(hits.c.rank)  # SQLite returns the other columns of the row holding the max
        story_id = story_map.c.story_id
        if among is not None:
            filters = [one_of(story_id, among, dialect), *filters]
        statement = (
            select(story_id, story_map.c.article_id, best, func.count().over())
            .select_from(hits)
            .join(story_map, story_map.c.article_id == hits.c.id)
            .join(Story, Story.id == story_id)
            .where(*filters)
            .group_by(story_id)
            .order_by(*((story_date().desc(), story_id.desc()) if newest else (*_tier(story_map.c.article_id, inner), best.desc(), story_id)))
        )
    else:
        query = tsquery(terms)
        source, words, ids, story_id = _postgresql_words(part)
        if among is not None:
            filters = [one_of(story_id, among, dialect), *filters]
        arms = [
            select(story_id, ids, func.ts_rank(words, query).label("rank"), story_date().label("at"))
            .select_from(source)
            .join(Story, Story.id == story_id)
            .where(words.op("@@")(query), *bounded, *filters)
            for bounded in _postgresql_ranges(ids, part)
        ]
        hits = (arms[0] if len(arms) == 1 else union_all(*arms)).subquery()
        place = func.row_number().over(partition_by=hits.c.story_id, order_by=(hits.c.rank.desc(), hits.c.id))
        best = select(hits, place.label("place")).subquery()
        statement = (
            select(best.c.story_id, best.c.id, best.c.rank, func.count().over())
            .where(best.c.place == 1)
            .order_by(*((best.c.at.desc(), best.c.story_id.desc()) if newest else (*_tier(best.c.id, inner), best.c.rank.desc(), best.c.story_id)))
        )
    rows = session.execute(statement.limit(limit).offset(offset)).all()
    return [tuple(row[:3]) for row in rows], rows[0][3] if rows else 0


def word_matches(dialect: str, terms: Terms, part: Slice = Slice()):
    """The ids of the stories whose articles within a slice hold the words (a subquery, each id once)."""
    if dialect == "sqlite":
        hits = _sqlite_matches(terms, part, ranked=False)
        return select(story_map.c.story_id).select_from(hits).join(story_map, story_map.c.article_id == hits.c.id).distinct()
    source, words, ids, story_id = _postgresql_words(part)
    arms = [
        select(story_id).select_from(source).where(words.op("@@")(tsquery(terms)), *bounded, story_id.is_not(None)).distinct()
        for bounded in _postgresql_ranges(ids, part)
    ]
    return arms[0] if len(arms) == 1 else union(*arms)


def _sqlite_matches(terms: Terms, part: Slice, *, ranked: bool):
    """The ids of a slice's matches on SQLite (with their rank, higher better), from each index that ranks it."""
    arms = [
        select(index.c.rowid.label("id"), *([(-index.c.rank).label("rank")] if ranked else [])).where(match(terms.fts5()), *_within(index.c.rowid, part))
        for index, match in part.indexes()
    ]
    return (arms[0] if len(arms) == 1 else union_all(*arms)).subquery()


def _postgresql_ranges(ids, part: Slice) -> list[list]:
    """The slice's id range as conditions on PostgreSQL, once per block ranking it, cut to the block and written as
    numbers: the planner proves from them that the block's partial index serves the range, and ANDs it with the
    primary key's range. They are bigint, unlike the index's own bounds: a condition equal to one of those counts as
    the index's, which the planner then will not AND with a primary key's range that uses it too, and it read the
    whole archive's GIN index instead (78 against 20 ms for "camera ban" in 14 days at a million)."""
    if not part.blocks:
        return [_within(ids, part)]
    cut = [(max(low, part.floor or 0), high if part.ceiling is None else min(high, part.ceiling)) for low, high in map(bounds, part.blocks)]
    return [[ids >= cast(literal_column(str(low)), BigInteger), ids < cast(literal_column(str(high)), BigInteger)] for low, high in cut]
