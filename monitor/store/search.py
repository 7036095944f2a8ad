"""The archive's search engine: stories found by words (FTS5 / tsvector), by meaning (in memory, or pgvector) or both fused."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
from sqlalchemy import Integer, Text, cast, column, distinct, exists, func, literal_column, or_, select, table, true
from sqlalchemy.orm import Session

from monitor.store.models import Article, Feed, Story, StoryTopic
from monitor.store.terms import MARK_END, MARK_START, Terms, clean, fuse, parse_terms, render_snippet, unmarked
from monitor.store.vectors import VECTOR_COLUMN, VECTOR_INDEX, VectorIndex, nearest_in_database
from monitor.store.views import lead, outlet_name

__all__ = [
    "FIRST_DAY", "LAST_DAY", "MODES", "SORTS", "SearchError", "SearchHit", "SearchPage", "SearchQuery", "VectorIndex",
    "filter_options", "is_search_index", "search", "similar_stories",
]  # fmt: skip

log = logging.getLogger(__name__)

MODES = ("words", "meaning", "hybrid")
SORTS = ("best", "newest")
MAX_QUERY_CHARS = 500  # of the words searched; the embedder truncates the meaning on its own
MAX_PER_PAGE = 100
MAX_PAGE = 10_000
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)  # dates searched: wide, and far from where date arithmetic overflows
CANDIDATES = 200  # per ranking, before fusion: bounds the work whatever the archive's size
MEANING_FLOOR = 0.2  # cosine below which an article shares no meaning with the query (all-MiniLM-L6-v2)
SNIPPET_TOKENS = 24
HEADLINE_OPTIONS = f'StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "'
REGCONFIG = literal_column("'english'::regconfig")

# the search objects that migrations 0004, 0005 and 0006 add beside the models
FTS_TABLE = "articles_fts"
STORY_MAP = "article_stories"  # SQLite: (article_id, story_id), narrow, for joining word matches to stories
TSVECTOR_COLUMN = "search_vector"
TSVECTOR_INDEX = "ix_articles_search_vector"

_fts = table(FTS_TABLE, column("rowid", Integer), column("rank"))
_fts_match = literal_column(FTS_TABLE).op("MATCH")
_story_map = table(STORY_MAP, column("article_id", Integer), column("story_id", Integer))
_tsvector = literal_column(f"articles.{TSVECTOR_COLUMN}")


class SearchError(ValueError):
    """A query that cannot be run, with a message for the person who asked."""


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


@dataclass(frozen=True)
class SearchHit:
    story_id: int
    title: str
    url: str
    published: datetime | None
    score: float  # the topic score of the story
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    sources: list[str]  # outlet names, earliest first, each once
    snippet: str  # safe HTML: the text escaped, matched words in <mark>…</mark>
    article_id: int  # the best-matching article
    rank: float  # the relevance (higher better): -bm25 / ts_rank, cosine, or the fused score


@dataclass(frozen=True)
class SearchPage:
    total: int
    results: list[SearchHit]
    query: SearchQuery
    notice: str | None = None


def is_search_index(name: str | None, type_: str, parent_names: dict | None = None) -> bool:
    """The objects of migrations 0004, 0005 and 0006 that the models do not declare (for Alembic's include_name)."""
    if not name:
        return False
    tables = type_ == "table" and (name.startswith(FTS_TABLE) or name == STORY_MAP)
    return tables or name in (TSVECTOR_COLUMN, TSVECTOR_INDEX, VECTOR_COLUMN, VECTOR_INDEX)


def search(session: Session, query: SearchQuery, *, vectors: VectorIndex, query_vector: np.ndarray | None) -> SearchPage:
    """One page of the stories that match a query, best (or newest) first.

    query_vector is the embedder's vector of query.q: None when q is empty or the mode is words.
    """
    _validate(query)
    dialect = session.get_bind().dialect.name
    notices = []
    text = " ".join(clean(query.q).split())
    if len(text) > MAX_QUERY_CHARS:
        text = text[:MAX_QUERY_CHARS]
        notices.append(f"the query was cut to {MAX_QUERY_CHARS} characters")
    terms = parse_terms(text) if text and query.mode != "meaning" else None
    if terms is not None and not terms.include:
        notices.append(f"no words to search for in “{_shorten(text)}”")
        terms = None
    vector = query_vector if text and query.mode != "words" else None
    if text and query.mode != "words" and vector is None:
        notices.append("no meaning search: the query has no vector")
    filters = _story_filters(query, dialect)
    offset, limit = (query.page - 1) * query.per_page, query.per_page
    newest = query.sort == "newest" or not text
    if not text:
        total = session.scalar(select(func.count()).select_from(Story).where(*filters))
        newest_first = select(Story.id).where(*filters).order_by(_story_date().desc(), Story.id.desc())
        rows = [(story_id, None, 0.0) for story_id in session.scalars(newest_first.limit(limit).offset(offset))]
    elif query.mode == "words" and terms is not None:
        rows, total = _words(session, dialect, terms, filters, limit=limit, offset=offset, newest=newest)
        total = total if rows or not offset else _words_total(session, dialect, terms, filters)  # a page past the end
    else:
        words = _words(session, dialect, terms, filters, limit=CANDIDATES, offset=0, newest=False)[0] if terms else []
        meaning = _meaning(session, filters, vectors, vector) if vector is not None else []
        ranked = _fused(words, meaning) if words and meaning else words or meaning
        if newest:
            dates = _story_dates(session, [row[0] for row in ranked])
            ranked.sort(key=lambda row: (dates.get(row[0]) or datetime.min.replace(tzinfo=timezone.utc), row[0]), reverse=True)
        total, rows = len(ranked), ranked[offset : offset + limit]
    hits = _hits(session, dialect, rows, terms, query.topic)
    return SearchPage(total=total, results=hits, query=query, notice="; ".join(notices) or None)


def similar_stories(session: Session, story_id: int, *, topic: str, vectors: VectorIndex, k: int = 5) -> list[SearchHit]:
    """The k stories nearest to a story by meaning (the mean of its articles' vectors), nearest first."""
    blobs = session.scalars(select(Article.embedding).where(Article.story_id == story_id, Article.embedding.is_not(None))).all()
    if not blobs or len({len(blob) for blob in blobs}) != 1:
        return []
    vector = np.mean([np.frombuffer(blob, dtype=np.float32) for blob in blobs], axis=0)
    vector /= np.linalg.norm(vector) or 1.0
    if vectors.in_database(session):
        nearest = nearest_in_database(session, vector, CANDIDATES + len(blobs))
    else:
        nearest = vectors.nearest(vector, CANDIDATES + len(blobs))
    ranked = _by_story(session, nearest, skip={story_id})[:k]
    return _hits(session, session.get_bind().dialect.name, ranked, None, topic)


def filter_options(session: Session, *, topic: str) -> dict[str, list[str]]:
    """The vendors, countries, actions and outlets present among the topic's stories, for the filter lists."""
    dialect = session.get_bind().dialect.name
    scored = exists().where(StoryTopic.story_id == Story.id, StoryTopic.topic == clean(topic))
    options = {}
    for name, tags in (("vendors", Story.vendors), ("countries", Story.countries), ("actions", Story.actions)):
        elements = _json_elements(tags, dialect)
        options[name] = session.scalars(select(elements.c.value).distinct().select_from(Story).join(elements, true()).where(scored)).all()
    outlet = func.coalesce(Article.site_name, Feed.name)
    options["sources"] = session.scalars(select(outlet).distinct().outerjoin(Feed, Feed.id == Article.feed_id).where(outlet.is_not(None))).all()
    return {name: sorted(values, key=str.casefold) for name, values in options.items()}


def _validate(query: SearchQuery) -> None:
    if query.mode not in MODES:
        raise SearchError(f"mode must be one of {', '.join(MODES)}, not “{_shorten(str(query.mode))}”")
    if query.sort not in SORTS:
        raise SearchError(f"sort must be one of {', '.join(SORTS)}, not “{_shorten(str(query.sort))}”")
    if not 1 <= query.page <= MAX_PAGE:
        raise SearchError(f"page must be between 1 and {MAX_PAGE:,}")
    if not 1 <= query.per_page <= MAX_PER_PAGE:
        raise SearchError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    for name, day in (("since", query.since), ("until", query.until)):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise SearchError(f"{name} must be a day between {FIRST_DAY} and {LAST_DAY}, not {day}")
    if query.since and query.until and query.since > query.until:
        raise SearchError(f"since ({query.since}) is after until ({query.until})")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _story_date():
    return func.coalesce(Story.published_at, Story.first_seen_at)


def _json_elements(tags, dialect: str):
    """The elements of a JSON list column as rows of a `value` column."""
    function = func.json_each if dialect == "sqlite" else func.json_array_elements_text
    return function(tags).table_valued("value").alias()


def _story_filters(query: SearchQuery, dialect: str) -> list:
    """The query's filters as conditions on stories (correlated subqueries, so any statement over stories can use them)."""
    conditions = []
    if query.relevant:
        # IN, not a correlated EXISTS: SQLite builds the set of relevant stories once (6x faster at 100,000)
        relevant = select(StoryTopic.story_id).where(StoryTopic.topic == clean(query.topic), StoryTopic.relevant.is_(True))
        conditions.append(Story.id.in_(relevant))
    for tags, values in ((Story.vendors, query.vendors), (Story.countries, query.countries), (Story.actions, query.actions)):
        wanted = sorted({clean(v).strip().lower() for v in values} - {""})
        if wanted:
            elements = _json_elements(tags, dialect)
            conditions.append(exists(select(1).select_from(elements).where(func.lower(elements.c.value).in_(wanted))))
    names = sorted({clean(v).strip().lower() for v in query.sources} - {""})
    if names:
        named = or_(func.lower(Article.site_name).in_(names), func.lower(Feed.name).in_(names))
        conditions.append(exists(select(1).select_from(Article).outerjoin(Feed, Feed.id == Article.feed_id).where(Article.story_id == Story.id, named)))
    if query.since:
        conditions.append(_story_date() >= datetime.combine(query.since, time.min, tzinfo=timezone.utc))
    if query.until:
        conditions.append(_story_date() < datetime.combine(query.until + timedelta(days=1), time.min, tzinfo=timezone.utc))
    return conditions


def _words(session: Session, dialect: str, terms: Terms, filters: list, *, limit: int, offset: int, newest: bool) -> tuple[list[tuple], int]:
    """(story id, best article id, rank) of the stories whose articles hold the words, best or newest first; and their number.

    The number comes from a window over the same pass (count(*) OVER ()), not from a second query.
    """
    if dialect == "sqlite":
        hits = select(_fts.c.rowid.label("id"), (-_fts.c.rank).label("rank")).where(_fts_match(terms.fts5())).subquery()
        best = func.max(hits.c.rank)  # SQLite returns the other columns of the row holding the max
        story_id = _story_map.c.story_id
        statement = (
            select(story_id, _story_map.c.article_id, best, func.count().over())
            .select_from(hits)
            .join(_story_map, _story_map.c.article_id == hits.c.id)
            .join(Story, Story.id == story_id)
            .where(*filters)
            .group_by(story_id)
            .order_by(*((_story_date().desc(), story_id.desc()) if newest else (best.desc(), story_id)))
        )
    else:
        tsquery = func.websearch_to_tsquery(REGCONFIG, cast(terms.websearch(), Text))
        hits = (
            select(Article.story_id, Article.id, func.ts_rank(_tsvector, tsquery).label("rank"), _story_date().label("at"))
            .join(Story, Story.id == Article.story_id)
            .where(_tsvector.op("@@")(tsquery), *filters)
            .subquery()
        )
        place = func.row_number().over(partition_by=hits.c.story_id, order_by=(hits.c.rank.desc(), hits.c.id))
        best = select(hits, place.label("place")).subquery()
        statement = (
            select(best.c.story_id, best.c.id, best.c.rank, func.count().over())
            .where(best.c.place == 1)
            .order_by(*((best.c.at.desc(), best.c.story_id.desc()) if newest else (best.c.rank.desc(), best.c.story_id)))
        )
    rows = session.execute(statement.limit(limit).offset(offset)).all()
    return [tuple(row[:3]) for row in rows], rows[0][3] if rows else 0


def _words_total(session: Session, dialect: str, terms: Terms, filters: list) -> int:
    if dialect == "sqlite":
        story_id = _story_map.c.story_id
        matches = select(func.count(distinct(story_id))).select_from(_fts).join(_story_map, _story_map.c.article_id == _fts.c.rowid)
        matches = matches.where(_fts_match(terms.fts5()))
    else:
        story_id = Article.story_id
        matches = select(func.count(distinct(story_id))).where(_tsvector.op("@@")(func.websearch_to_tsquery(REGCONFIG, cast(terms.websearch(), Text))))
    return session.scalar(matches.join(Story, Story.id == story_id).where(*filters))


def _meaning(session: Session, filters: list, vectors: VectorIndex, vector: np.ndarray) -> list[tuple]:
    """(story id, nearest article id, cosine) of the stories nearest in meaning, among those the filters let through."""
    if vectors.in_database(session):
        nearest = nearest_in_database(session, vector, CANDIDATES, filters)
    else:
        among = None
        if filters:
            allowed = session.scalars(select(Article.id).join(Story, Story.id == Article.story_id).where(*filters))
            among = np.fromiter(allowed, dtype=np.int64)
        nearest = vectors.nearest(vector, CANDIDATES, among)
    nearest = [(article_id, cosine) for article_id, cosine in nearest if cosine >= MEANING_FLOOR]
    return _by_story(session, nearest)


def _by_story(session: Session, nearest: list[tuple[int, float]], skip: set[int] = frozenset()) -> list[tuple]:
    """Nearest articles folded into their stories (each story at its nearest article); vanished articles drop out."""
    story_of = dict(
        session.execute(select(Article.id, Article.story_id).where(Article.id.in_([a for a, _ in nearest]), Article.story_id.is_not(None))).all()
    )
    ranked, seen = [], set(skip)
    for article_id, cosine in nearest:
        story_id = story_of.get(article_id)
        if story_id is not None and story_id not in seen:
            seen.add(story_id)
            ranked.append((story_id, article_id, cosine))
    return ranked


def _fused(words: list[tuple], meaning: list[tuple]) -> list[tuple]:
    """Both rankings fused; a story keeps its words article (its snippet has the marks) when it has one."""
    fused = fuse([row[0] for row in words], [row[0] for row in meaning])
    article = {row[0]: row[1] for row in meaning} | {row[0]: row[1] for row in words}
    return sorted(((story, article[story], score) for story, score in fused.items()), key=lambda row: (-row[2], row[0]))


def _story_dates(session: Session, story_ids: list[int]) -> dict[int, datetime]:
    return dict(session.execute(select(Story.id, _story_date()).where(Story.id.in_(story_ids))).all()) if story_ids else {}


def _hits(session: Session, dialect: str, rows: list[tuple], terms: Terms | None, topic: str) -> list[SearchHit]:
    """The page's stories as hits: tags, topic score, outlets, and a snippet of the best article."""
    ids = [row[0] for row in rows]
    if not ids:
        return []
    stories = {
        story.id: (story, score)
        for story, score in session.execute(
            select(Story, StoryTopic.score)
            .outerjoin(StoryTopic, (StoryTopic.story_id == Story.id) & (StoryTopic.topic == clean(topic)))
            .where(Story.id.in_(ids))
        )
    }
    members = session.execute(
        select(Article.id, Article.story_id, Article.url, Article.site_name, Feed.name, func.coalesce(Article.published_at, Article.fetched_at))
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .where(Article.story_id.in_(ids))
        .order_by(func.coalesce(Article.published_at, Article.fetched_at), Article.id)
    ).all()
    outlets: dict[int, list[str]] = defaultdict(list)
    lead_article: dict[int, int] = {}
    for article_id, story_id, url, site_name, feed_name, _when in members:
        outlets[story_id].append(outlet_name(site_name, feed_name, url))
        lead_article.setdefault(story_id, article_id)
        if url == stories[story_id][0].url:
            lead_article[story_id] = article_id
    chosen = {row[0]: row[1] if row[1] is not None else lead_article.get(row[0]) for row in rows}
    snippets = _snippets(session, dialect, terms, [a for a in chosen.values() if a is not None])
    hits = []
    for story_id, _article, rank in rows:
        if story_id not in stories:
            continue
        story, score = stories[story_id]
        article_id = chosen[story_id]
        hits.append(
            SearchHit(
                story_id=story.id,
                title=story.title,
                url=story.url,
                published=story.published_at or story.first_seen_at,
                score=float(score or 0.0),
                vendors=list(story.vendors),
                countries=list(story.countries),
                actions=list(story.actions),
                sources=list(dict.fromkeys(outlets[story_id])),
                snippet=snippets.get(article_id, ""),
                article_id=article_id or 0,
                rank=float(rank),
            )
        )
    return hits


def _snippets(session: Session, dialect: str, terms: Terms | None, article_ids: list[int]) -> dict[int, str]:
    """Safe HTML snippets: the matched passage with <mark>s where the words matched, else the article's lead."""
    raw: dict[int, str] = {}
    if terms is not None and article_ids:
        if dialect == "sqlite":
            snippet = func.snippet(literal_column(FTS_TABLE), -1, MARK_START, MARK_END, "…", SNIPPET_TOKENS)
            statement = select(_fts.c.rowid, snippet).where(_fts_match(terms.fts5()), _fts.c.rowid.in_(article_ids))
        else:
            tsquery = func.websearch_to_tsquery(REGCONFIG, cast(terms.websearch(), Text))
            body = func.coalesce(func.nullif(Article.text, ""), Article.title)
            statement = select(Article.id, func.ts_headline(REGCONFIG, body, tsquery, HEADLINE_OPTIONS)).where(
                Article.id.in_(article_ids), _tsvector.op("@@")(tsquery)
            )
        raw.update((article_id, text) for article_id, text in session.execute(statement) if MARK_START in (text or ""))
    rest = [a for a in article_ids if a not in raw]
    if rest:
        for article_id, title, text, summary in session.execute(select(Article.id, Article.title, Article.text, Article.summary).where(Article.id.in_(rest))):
            raw[article_id] = unmarked(lead(text or summary, 200, title=title) or title)
    return {article_id: render_snippet(text) for article_id, text in raw.items()}
