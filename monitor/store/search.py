"""The archive's search engine: stories found by words (FTS5 / tsvector), by meaning (in memory, or pgvector) or both fused."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from monitor.store.coverage import DailyCounts, daily_counts
from monitor.store.facets import Facets, facet_counts, filter_options
from monitor.store.filters import OUTLET_INDEX, SearchQuery, base_filters, facet_filters, one_of, story_date, story_filters
from monitor.store.hits import SearchHit, page_hits
from monitor.store.models import Article, Story
from monitor.store.terms import Terms, clean, fuse, parse_terms
from monitor.store.vectors import VECTOR_COLUMN, VECTOR_INDEX, VectorIndex, nearest_in_database
from monitor.store.word_blocks import INDEX_PREFIX as BLOCK_INDEX_PREFIX
from monitor.store.words import (
    FTS_TABLE,
    RECENT_WORDS_TABLE,
    STORY_MAP,
    TSVECTOR_COLUMN,
    TSVECTOR_INDEX,
    planned_for_words,
    ranked_words,
    story_map,
    word_matches,
)

__all__ = [
    "FIRST_DAY", "LAST_DAY", "MODES", "SORTS", "DailyCounts", "SearchError", "SearchHit", "SearchPage", "SearchQuery", "VectorIndex",
    "coverage", "filter_options", "is_search_index", "search", "similar_stories",
]  # fmt: skip

log = logging.getLogger(__name__)

MODES = ("words", "meaning", "hybrid")
SORTS = ("best", "newest")
MAX_QUERY_CHARS = 500  # of the words searched; the embedder truncates the meaning on its own
MAX_PER_PAGE = 100
MAX_PAGE = 10_000
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)  # dates searched: wide, and far from where date arithmetic overflows
CANDIDATES = 200  # per ranking, before fusion: bounds the work whatever the archive's size
ENOUGH_CANDIDATES = 50  # matches a words slice must hold to stop reading on (up to CANDIDATES taken)
MEANING_FLOOR = 0.2  # cosine below which an article shares no meaning with the query (all-MiniLM-L6-v2)
LISTED_IN_MEMORY = 2_000  # stories up to the end of a listed page taken from memory; deeper pages are listed by the store
LISTED_MARGIN = 20  # stories read past the page: those dated in the page's last second, which memory orders by id only
NARROW_STORIES = 5_000  # stories a filter lets through up to which a word search is given their ids (10,000 cost more than they saved)



class SearchError(ValueError):
    """A query that cannot be run, with a message for the person who asked."""


@dataclass(frozen=True)
class SearchPage:
    total: int  # a words search's: the stories found in the slice it ranked (monitor/store/words.py)
    results: list[SearchHit]
    query: SearchQuery
    notice: str | None = None
    facets: Facets | None = None  # asked for with facets=True: each filter's values with their numbers of stories
    total_exact: bool = True  # False: the words were ranked in the archive's most recent slice; at least total stories match


def is_search_index(name: str | None, type_: str, parent_names: dict | None = None) -> bool:
    """The objects of migrations 0004 to 0006 and 0014 to 0019 that the models do not declare (for Alembic's include_name)."""
    if not name:
        return False
    tables = type_ == "table" and (name.startswith(FTS_TABLE) or name in (STORY_MAP, RECENT_WORDS_TABLE))
    blocks = type_ == "index" and name.startswith(BLOCK_INDEX_PREFIX)
    return tables or blocks or name in (TSVECTOR_COLUMN, TSVECTOR_INDEX, VECTOR_COLUMN, VECTOR_INDEX, OUTLET_INDEX)


def search(session: Session, query: SearchQuery, *, vectors: VectorIndex, query_vector: np.ndarray | None, facets: bool = False) -> SearchPage:
    """One page of the stories that match a query, best (or newest) first; with facets, each filter's values counted.

    query_vector is the embedder's vector of query.q: None when q is empty or the mode is words.
    """
    _validate(query)
    dialect = session.get_bind().dialect.name
    text, terms, notices = _parse(query)
    vector = query_vector if text and query.mode != "words" else None
    if text and query.mode != "words" and vector is None:
        notices.append("no meaning search: the query has no vector")
    offset, limit = (query.page - 1) * query.per_page, query.per_page
    newest = query.sort == "newest" or not text
    matched: dict[int, str] = {}
    similarity: dict[int, float] = {}
    exact = True
    matching = true()  # the stories the query finds, before any facet filter: what facet counts count
    matched_ids: list[int] | None = None  # the same as ids where the query found a bounded set (None: every story)
    held = vectors.holds
    if held and (facets or not text):
        vectors.refresh(session)  # what is held serves the listing and the counts: brought up to date once
    if not text:
        listed = _listed_in_memory(session, query, vectors, offset, limit) if held and offset + limit <= LISTED_IN_MEMORY else None
        if listed is None:
            filters = story_filters(query, dialect)
            total = session.scalar(select(func.count()).select_from(Story).where(*filters))
            newest_first = select(Story.id).where(*filters).order_by(story_date().desc(), Story.id.desc())
            listed = total, list(session.scalars(newest_first.limit(limit).offset(offset)))
        total, rows = listed[0], [(story_id, None, 0.0) for story_id in listed[1]]
    elif query.mode == "words" and terms is not None:
        per_story = story_filters(query, dialect, per_story=True)
        among = _narrow_stories(session, query, vectors)
        rows, total, part = ranked_words(
            session, terms, per_story, since=query.since, until=query.until, limit=limit, offset=offset, newest=newest, among=among
        )
        exact = part.complete
        matched = dict.fromkeys((row[0] for row in rows), "words")
        if facets and held:  # facets count what the total counts
            with planned_for_words(session):
                matched_ids = list(session.scalars(word_matches(dialect, terms, part)))
        elif facets:
            matching = Story.id.in_(word_matches(dialect, terms, part))
    else:
        words, meaning = _candidates(session, query, terms, vector, vectors)
        ranked = _fused(words, meaning) if words and meaning else words or meaning
        if facets:
            chosen = facet_filters(query, dialect)
            unfaceted = _candidates(session, query, terms, vector, vectors, faceted=False) if chosen else (words, meaning)
            matched_ids = sorted({row[0] for found in unfaceted for row in found})
            matching = Story.id.in_(matched_ids)
        by_words, similarity = {row[0] for row in words}, {row[0]: row[2] for row in meaning}
        matched = {row[0]: "both" if row[0] in by_words and row[0] in similarity else "words" if row[0] in by_words else "meaning" for row in ranked}
        if newest:
            dates = _story_dates(session, [row[0] for row in ranked])
            ranked.sort(key=lambda row: (dates.get(row[0]) or datetime.min.replace(tzinfo=timezone.utc), row[0]), reverse=True)
        total, rows = len(ranked), ranked[offset : offset + limit]
        unknown = [row[0] for row in rows if row[0] not in similarity]
        if vector is not None and unknown:
            similarity |= _similarities(session, unknown, vector)
    hits = page_hits(session, dialect, rows, terms, query.topic, matched=matched, similarity=similarity)
    counts = None
    if facets and held:
        counts = vectors.stories.counts(query, filter_options(session), among=matched_ids)
    elif facets:
        counts = facet_counts(session, query, matching, per_story=bool(text))  # a query's matches are a bounded set
    return SearchPage(total=total, results=hits, query=query, notice="; ".join(notices) or None, facets=counts, total_exact=exact)


def coverage(session: Session, query: SearchQuery, *, split: str, vectors: VectorIndex, query_vector: np.ndarray | None) -> DailyCounts:
    """Stories per day of everything the query finds (not one page: every match, every filter applied), split by a tag."""
    _validate(query)
    dialect = session.get_bind().dialect.name
    text, terms, _ = _parse(query)
    filters = story_filters(query, dialect)
    if not text:
        found = true()
    elif query.mode == "words" and terms is not None:
        found = Story.id.in_(word_matches(dialect, terms))
    else:
        words, meaning = _candidates(session, query, terms, query_vector if query.mode != "words" else None, vectors)
        found = Story.id.in_(sorted({row[0] for rows in (words, meaning) for row in rows}))
    return daily_counts(session, and_(found, *filters), split=split)


def _parse(query: SearchQuery) -> tuple[str, Terms | None, list[str]]:
    """The query's text (cut to MAX_QUERY_CHARS), its word terms (None when words take no part), and notices for the reader."""
    notices = []
    text = " ".join(clean(query.q).split())
    if len(text) > MAX_QUERY_CHARS:
        text = text[:MAX_QUERY_CHARS]
        notices.append(f"the query was cut to {MAX_QUERY_CHARS} characters")
    terms = parse_terms(text) if text and query.mode != "meaning" else None
    if terms is not None and not terms.include:
        notices.append(f"no words to search for in “{_shorten(text)}”")
        terms = None
    return text, terms, notices


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
    similarity = {row[0]: row[2] for row in ranked}
    return page_hits(session, session.get_bind().dialect.name, ranked, None, topic, matched={}, similarity=similarity)


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


def _candidates(
    session: Session, query: SearchQuery, terms: Terms | None, vector: np.ndarray | None, vectors: VectorIndex, *, faceted: bool = True
) -> tuple[list, list]:
    """The best CANDIDATES stories by words and by meaning, each (story id, article id, rank), for fusion; without
    faceted, the facets' filters left out (what facet counts count)."""
    chosen = list(facet_filters(query, session.get_bind().dialect.name, per_story=True).values()) if faceted else []
    words = []
    if terms:
        filters = [*base_filters(query, per_story=True), *chosen]
        among = _narrow_stories(session, query, vectors, facets=faceted)
        words, _total, _slice = ranked_words(
            session, terms, filters, since=query.since, until=query.until, limit=CANDIDATES, offset=0, newest=False, enough=ENOUGH_CANDIDATES, among=among
        )
    meaning = _meaning(session, query, chosen, vectors, vector) if vector is not None else []
    return words, meaning


def _narrow_stories(session: Session, query: SearchQuery, vectors: VectorIndex, *, facets: bool = True) -> list[int] | None:
    """The ids of the stories a word search's filters let through, where the vector index holds the stories' filters
    and they let few through (asked again once it is brought up to date); None otherwise (no filter included). Every match in a slice is
    tested, and a narrow filter widens the slices, so testing each match's story against the ids' set (built once per
    statement) spares reading the story's row (Dahua in the US at a million: 102 ms of a hybrid search's words half)."""
    if not vectors.holds or not _narrow(vectors.stories.passing(query, facets=facets)):
        return None
    vectors.refresh(session)  # only now: a wide filter's search would pay for it and gain nothing
    stories = vectors.stories.passing(query, facets=facets)
    return np.flatnonzero(stories).tolist() if _narrow(stories) else None


def _listed_in_memory(session: Session, query: SearchQuery, vectors: VectorIndex, offset: int, limit: int) -> tuple[int, list[int]] | None:
    """The number of stories that pass the filters and a page of them, newest first, from what is held; the store
    checks the page's stories and orders them by their dates (held to the second only). None where the store turns
    away so many that the page cannot be made (what is held is behind it): the store then lists them itself."""
    dialect = session.get_bind().dialect.name
    wanted = offset + limit + LISTED_MARGIN
    ids, total = vectors.stories.newest(query, wanted)
    checked = select(Story.id, story_date()).where(one_of(Story.id, ids.tolist(), dialect), *story_filters(query, dialect, per_story=True))
    dates = dict(session.execute(checked).all())
    if len(dates) < offset + limit and len(ids) == wanted:  # the page needs stories past those read
        return None
    newest_first = sorted(dates, key=lambda story_id: (dates[story_id], story_id), reverse=True)
    return total - (len(ids) - len(dates)), newest_first[offset : offset + limit]


def _narrow(stories: np.ndarray | None) -> bool:
    return stories is not None and np.count_nonzero(stories) <= NARROW_STORIES


def _meaning(session: Session, query: SearchQuery, chosen: list, vectors: VectorIndex, vector: np.ndarray) -> list[tuple]:
    """(story id, nearest article id, cosine) of the stories nearest in meaning, among those the filters let through."""
    if vectors.in_database(session):
        nearest = nearest_in_database(session, vector, CANDIDATES, [*base_filters(query), *chosen])
    else:
        nearest = _nearest_passing(session, query, chosen, vectors, vector)
    nearest = [(article_id, cosine) for article_id, cosine in nearest if cosine >= MEANING_FLOOR]
    return _by_story(session, nearest)


def _nearest_passing(session: Session, query: SearchQuery, chosen: list, vectors: VectorIndex, vector: np.ndarray) -> list[tuple[int, float]]:
    """Up to CANDIDATES of the articles nearest in memory that the filters let through.

    Where to look comes from the stories' filters held beside the vectors, for every story at once (asking the
    store took 150 to 450 ms at a million for a narrow filter); what is held may be behind the store, so the store
    has the last word on the articles found, and the few it turns away are dropped.
    """
    stories = vectors.stories.passing(query, facets=bool(chosen))
    if stories is None:
        return vectors.nearest(vector, CANDIDATES)
    nearest = vectors.nearest(vector, CANDIDATES, stories=stories)
    dialect = session.get_bind().dialect.name
    passing = set(session.scalars(_passing(dialect, [article_id for article_id, _ in nearest], [*base_filters(query, per_story=True), *chosen])))
    return [(article_id, cosine) for article_id, cosine in nearest if article_id in passing]


def _passing(dialect: str, article_ids: list[int], filters: list):
    """Which of these articles the filters let through. On SQLite through the narrow map of articles to stories:
    reading an article's story_id from its own row reads past its text (a third slower at a million)."""
    article_id, story_id = (story_map.c.article_id, story_map.c.story_id) if dialect == "sqlite" else (Article.id, Article.story_id)
    return select(article_id).join(Story, Story.id == story_id).where(one_of(article_id, article_ids, dialect), *filters)


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


def _similarities(session: Session, story_ids: list[int], vector: np.ndarray) -> dict[int, float]:
    """Cosine of the query and each story's nearest article, for a page's stories that the meaning ranking did not reach."""
    vector = np.asarray(vector, dtype=np.float32)
    vector = vector / (np.linalg.norm(vector) or 1.0)
    best: dict[int, float] = {}
    rows = session.execute(select(Article.story_id, Article.embedding).where(Article.story_id.in_(story_ids), Article.embedding.is_not(None)))
    for story_id, blob in rows:
        article = np.frombuffer(blob, dtype=np.float32)
        if article.shape == vector.shape:
            cosine = float(article @ vector / (np.linalg.norm(article) or 1.0))
            best[story_id] = max(cosine, best.get(story_id, -1.0))
    return best


def _story_dates(session: Session, story_ids: list[int]) -> dict[int, datetime]:
    return dict(session.execute(select(Story.id, story_date()).where(Story.id.in_(story_ids))).all()) if story_ids else {}
