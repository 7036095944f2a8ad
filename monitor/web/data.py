"""One data builder per view: plain JSON-ready dicts that the pages and the API both render."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
from fastapi import HTTPException
from fastapi.encoders import jsonable_encoder
from sqlalchemy.orm import Session, sessionmaker

from monitor.config import Settings
from monitor.domain import Embedder
from monitor.specs import Config
from monitor.store import feedback
from monitor.store import search as engine
from monitor.store.views import article_view, story_views
from monitor.web.chart import coverage_series
from monitor.web.params import SearchParams

log = logging.getLogger(__name__)

EXPORT_CAP = 10_000
EXPORT_PAGE = 100
HIT_FIELDS = ("story_id", "title", "url", "published", "score", "vendors", "countries", "actions", "sources", "snippet")
TAG = re.compile(r"<[^>]+>")
QUERY_VECTORS = 256  # the most recent queries whose vectors are kept


@dataclass
class Archive:
    """What every view reads: the store, the embedder for meaning queries, the vector index, the topics."""

    sessions: sessionmaker[Session]
    embedder: Embedder
    config: Config
    settings: Settings
    vectors: engine.VectorIndex
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))  # when a reader's label is given

    def __post_init__(self) -> None:
        self.query_vector = lru_cache(maxsize=QUERY_VECTORS)(self._embedded)

    def _embedded(self, text: str) -> np.ndarray:
        """A query's vector, kept (read-only) for the next time it is asked: a search page asks it for its results and
        again for its chart, and each refinement of a search (a filter ticked, the next page) asks it again."""
        vector = self.embedder.embed([text])[0]
        vector.setflags(write=False)
        return vector


def hit_dict(hit: engine.SearchHit) -> dict:
    """A search result in the API's contract shape (DESIGN.md), plus the best article's id and how the query found it."""
    row = {name: getattr(hit, name) for name in HIT_FIELDS}
    row["published"] = hit.published.isoformat() if hit.published else None
    row.update(article_id=hit.article_id, matched=hit.matched, similarity=hit.similarity)
    return row


def plain(snippet: str) -> str:
    """A snippet's text without its <mark> tags, for CSV and feeds."""
    return html.unescape(TAG.sub("", snippet))


def _query(archive: Archive, params: SearchParams, **changes) -> engine.SearchQuery:
    try:
        return params.to_query(archive.config, **changes)
    except KeyError as exc:
        raise HTTPException(422, str(exc.args[0])) from exc


def _vector(archive: Archive, session: Session, query: engine.SearchQuery):
    """The query's vector, only when meaning takes part (the vector index brought up to date for it)."""
    if not query.q.strip() or query.mode == "words":
        return None
    archive.vectors.refresh(session)
    return archive.query_vector(query.q)


def _run(archive: Archive, session: Session, query: engine.SearchQuery, *, facets: bool = False) -> engine.SearchPage:
    """Embeds the query only when meaning takes part; a query the engine refuses is a 422 with its reason."""
    vector = _vector(archive, session, query)
    try:
        return engine.search(session, query, vectors=archive.vectors, query_vector=vector, facets=facets)
    except engine.SearchError as exc:
        raise HTTPException(422, str(exc)) from exc


def search_data(archive: Archive, params: SearchParams, *, facets: bool = False, **changes) -> dict:
    """A page of results; with facets (or params.facets), every filter value with the number of stories it would show."""
    query = _query(archive, params, **changes)
    with archive.sessions() as session:
        page = _run(archive, session, query, facets=facets or params.facets)
    pages = max(1, -(-page.total // query.per_page)) + (0 if page.total_exact else 1)  # a total at least: a next page to widen into
    counted = page.facets
    return {
        "total": page.total,
        "total_exact": page.total_exact,
        "results": [hit_dict(hit) for hit in page.results],
        "notice": page.notice,
        "page": query.page,
        "per_page": query.per_page,
        "pages": pages,
        "topic": query.topic,
        "sort": query.sort,
        "facets": {name: [{"value": value, "count": count} for value, count in values] for name, values in counted.items()} if counted else None,
    }


def coverage_data(archive: Archive, params: SearchParams, split: str) -> dict:
    """Stories per day (week, month) of everything the search finds, in all and for its most covered vendors, countries or actions."""
    query = _query(archive, params)
    with archive.sessions() as session:
        try:
            counts = engine.coverage(session, query, split=split, vectors=archive.vectors, query_vector=_vector(archive, session, query))
        except engine.SearchError as exc:
            raise HTTPException(422, str(exc)) from exc
    return {"topic": query.topic, **coverage_series(counts, split=split, since=query.since, until=query.until)}


def export_rows(archive: Archive, params: SearchParams) -> Iterator[dict]:
    """Every matching story (up to EXPORT_CAP) page by page, so a large export streams.

    The first page is searched before this returns: a bad query is a 422 before any byte is sent, never a cut-off body.
    """
    query = _query(archive, params, page=1, per_page=EXPORT_PAGE)
    with archive.sessions() as session:
        first = _run(archive, session, query)
    return _export_pages(archive, query, first)


def _export_pages(archive: Archive, query: engine.SearchQuery, first: engine.SearchPage) -> Iterator[dict]:
    page, sent = first, 0
    with archive.sessions() as session:
        for number in range(1, EXPORT_CAP // EXPORT_PAGE + 1):
            if number > 1:
                page = _run(archive, session, engine.SearchQuery(**{**asdict(query), "page": number}))
            for hit in page.results[: EXPORT_CAP - sent]:
                sent += 1
                yield hit_dict(hit)
            if len(page.results) < EXPORT_PAGE or sent >= EXPORT_CAP:
                return


def story_data(archive: Archive, story_id: int, *, topic: str | None = None) -> dict:
    """A story with all its sources (the timeline, earliest first), its evidence and the nearest other stories."""
    topic = topic_name(archive, topic)
    with archive.sessions() as session:
        views = story_views(session, [story_id], topic=topic)
        if not views:
            raise HTTPException(404, f"no story {story_id}")
        archive.vectors.refresh(session)
        similar = engine.similar_stories(session, story_id, topic=topic, vectors=archive.vectors)
    story = jsonable_encoder(asdict(views[0]))
    return {"story": story, "similar": [hit_dict(hit) for hit in similar]}


def article_data(archive: Archive, article_id: int, *, topic: str | None = None) -> dict:
    topic = topic_name(archive, topic)
    with archive.sessions() as session:
        view = article_view(session, article_id, topic=topic)
    if view is None:
        raise HTTPException(404, f"no article {article_id}")
    return {"article": jsonable_encoder(asdict(view))}


def options_data(archive: Archive) -> dict[str, list[str]]:
    """The values present in the store for each filter."""
    with archive.sessions() as session:
        return engine.filter_options(session)


def topic_name(archive: Archive, name: str | None) -> str:
    try:
        return archive.config.topic(name or None).name
    except KeyError as exc:
        raise HTTPException(422, str(exc.args[0])) from exc


def label_data(
    archive: Archive, *, relevant: bool, by: str, note: str, topic: str | None, story_id: int | None = None, article_id: int | None = None
) -> dict:
    """A reader's label stored and applied (the story's relevance follows it at once); 404 when there is no such story
    or article. Answers the label and the relevance of its story afterwards."""
    topic = topic_name(archive, topic)
    with archive.sessions.begin() as session:
        if article_id is not None:
            target = feedback.article_target(session, article_id=article_id)
        else:
            target = feedback.story_target(session, story_id) if story_id is not None else None
        if target is None:
            raise HTTPException(404, f"no article {article_id}" if article_id is not None else f"no story {story_id}")
        label, settled = feedback.add_label(session, target, topic=topic, relevant=relevant, by=by, note=note, now=archive.clock())
        views = story_views(session, [target.story_id], topic=topic) if target.story_id is not None else []
    return {
        "label": jsonable_encoder(asdict(label)),
        "story_id": target.story_id,
        "story_relevant": views[0].relevant if views else None,
        "withdrawn": settled.withdrawn,
    }
