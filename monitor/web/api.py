"""The JSON API, the exports of a search (CSV, JSON) and its Atom feed: the JSON renderers of the data builders."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from monitor.domain import CHART_SPLITS, ReaderLabel, StoryView
from monitor.export import write_atom
from monitor.store.views import ArticleView
from monitor.web import data
from monitor.web.params import SearchParams
from monitor.web.present import query_url

log = logging.getLogger(__name__)

class Problem(BaseModel):
    """How the archive answers a request it refuses: a sentence, and for bad parameters the errors one by one."""

    detail: str
    errors: list[dict] | None = None


router = APIRouter(responses={422: {"model": Problem, "description": "A parameter is invalid, or the search cannot be run."}})
Params = Annotated[SearchParams, Query()]
StoryId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The story's id.")]
ArticleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The article's id.")]
Topic = Annotated[str | None, Query(description="Topic name (default: the first of feeds.yaml).")]
Split = Annotated[Literal[CHART_SPLITS], Query(description="The tag whose values the coverage chart draws as lines: vendor, country or action.")]
FEED_SIZE = 50
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Hit(BaseModel):
    """One story found: the best-matching article's snippet, HTML-escaped with the matched words in <mark>."""

    story_id: int
    title: str
    url: str
    published: datetime | None
    score: float
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    sources: list[str]
    snippet: str
    article_id: int
    matched: Literal["words", "meaning", "both"] | None = Field(None, description="How the query found the story; null without a query.")
    similarity: float | None = Field(None, description="Cosine of the query and the story's nearest article (0-1), when meaning took part.")


class FacetValue(BaseModel):
    value: str
    count: int = Field(description="Stories the search finds with this value, the other filters applied.")


class SearchAnswer(BaseModel):
    total: int = Field(description="Stories found; with total_exact false, at least this many (counted in the slice of the archive ranked).")
    total_exact: bool = Field(True, description="false: a words search ranked the archive's most recent slice that held enough matches; older ones uncounted.")
    results: list[Hit]
    notice: str | None = None
    page: int
    per_page: int
    pages: int
    topic: str
    sort: Literal["best", "newest"]
    facets: dict[str, list[FacetValue]] | None = Field(None, description="With facets=true: vendors, countries, actions, sources; most stories first.")


class CoverageSeries(BaseModel):
    value: str
    stories: int = Field(description="Stories with this value over the whole span.")
    counts: list[int] = Field(description="Stories with this value in each bin.")


class CoverageAnswer(BaseModel):
    topic: str
    split: Literal[CHART_SPLITS]
    unit: Literal["day", "week", "month"] = Field(description="Bins are days; weeks (from Monday) over 120 days; months over three years.")
    since: str | None = Field(description="First day charted: the search's since, else the first story's day; null when no story matches.")
    until: str | None
    bins: list[str] = Field(description="The first day of each bin, YYYY-MM-DD.")
    total: list[int] = Field(description="Stories in each bin: everything the search finds.")
    series: list[CoverageSeries] = Field(description="The six values of the split with the most stories, most first; a story with two counts for both.")
    others: int = Field(description="Values of the split not in series.")


class StoryAnswer(BaseModel):
    story: StoryView
    similar: list[Hit]


class ArticleAnswer(BaseModel):
    article: ArticleView


class LabelRequest(BaseModel):
    """A reader's verdict on one story (applying to all its articles) or one article."""

    story_id: int | None = Field(None, ge=1, le=2**31 - 1, description="The story labelled; give this or article_id.")
    article_id: int | None = Field(None, ge=1, le=2**31 - 1, description="The article labelled; give this or story_id.")
    relevant: bool = Field(description="true: relevant to the topic; false: not relevant.")
    by: str = Field("", max_length=200, description="Who says so (default: unknown).")
    note: str = Field("", max_length=2000, description="Why, in a few words.")
    topic: str | None = Field(None, description="Topic name (default: the first of feeds.yaml).")

    @model_validator(mode="after")
    def _one_target(self) -> LabelRequest:
        if (self.story_id is None) == (self.article_id is None):
            raise ValueError("give exactly one of story_id and article_id")
        return self


class LabelAnswer(BaseModel):
    label: ReaderLabel
    story_id: int | None = Field(description="The story of the label (an article's own story, or the story labelled).")
    story_relevant: bool | None = Field(description="Whether the story is relevant to the topic now, the label applied.")
    withdrawn: int = Field(description="Alerts still owed for the story that were dropped because it is no longer relevant.")


def _archive(request: Request) -> data.Archive:
    return request.app.state.archive


@router.get("/api/search", response_model=SearchAnswer, tags=["search"])
def api_search(request: Request, params: Params) -> dict:
    """Stories matching the query and filters, best match (or newest) first; with facets=true, each filter value's count too."""
    return data.search_data(_archive(request), params)


@router.get("/api/coverage", response_model=CoverageAnswer, tags=["search"])
def api_coverage(request: Request, params: Params, split: Split = "vendor") -> dict:
    """Stories per day of everything a search finds (every page, every filter), split by vendor, country or action: the chart of the search page."""
    return data.coverage_data(_archive(request), params, split)


@router.get("/api/search.json", tags=["search"], response_class=StreamingResponse)
def api_search_json(request: Request, params: Params) -> StreamingResponse:
    """Every matching story (up to 10,000) as one JSON array, streamed."""
    rows = data.export_rows(_archive(request), params)

    def array() -> Iterator[str]:
        yield "["
        for number, row in enumerate(rows):
            yield ("," if number else "") + "\n" + json.dumps(row, ensure_ascii=False)
        yield "\n]\n"

    return StreamingResponse(array(), media_type="application/json", headers=_attachment("search.json"))


@router.get("/api/search.csv", tags=["search"], response_class=StreamingResponse)
def api_search_csv(request: Request, params: Params) -> StreamingResponse:
    """Every matching story (up to 10,000) as CSV, streamed; tags and sources joined by '; ', the snippet as plain text."""
    rows = data.export_rows(_archive(request), params)
    columns = [*data.HIT_FIELDS, "article_id", "matched", "similarity"]

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            cells = {**row, **{k: "; ".join(v) for k, v in row.items() if isinstance(v, list)}, "snippet": data.plain(row["snippet"])}
            writer.writerow({k: _inert(v) for k, v in cells.items()})
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=_attachment("search.csv"))


@router.get("/feed.atom", tags=["search"], response_class=Response)
def feed(request: Request, params: Params) -> Response:
    """The newest relevant stories of a search as an Atom feed: subscribe to a search in any feed reader."""
    archive = _archive(request)
    found = data.search_data(archive, params, relevant=True, sort="newest", page=1, per_page=FEED_SIZE)
    rows = [
        {
            **hit,
            "source": hit["sources"][0] if hit["sources"] else None,
            "text": data.plain(hit["snippet"]),
        }
        for hit in found["results"]
    ]
    stream = io.StringIO()
    title = f"monitor: {params.q or 'newest stories'} ({found['topic']})"
    address = str(request.base_url).rstrip("/") + query_url(request)
    write_atom(rows, stream, title=title, feed_id=address, link=address)
    return Response(stream.getvalue(), media_type="application/atom+xml; charset=utf-8")


@router.get("/api/stories/{story_id}", response_model=StoryAnswer, tags=["stories"], responses={404: {"model": Problem, "description": "No such story."}})
def api_story(request: Request, story_id: StoryId, topic: Topic = None) -> dict:
    """A story: every source with outlet, time and link (earliest first), merged tags, evidence, and similar stories."""
    return data.story_data(_archive(request), story_id, topic=topic)


@router.get("/api/articles/{article_id}", response_model=ArticleAnswer, tags=["stories"], responses={404: {"model": Problem, "description": "No such article."}})
def api_article(request: Request, article_id: ArticleId, topic: Topic = None) -> dict:
    """An article: its extracted text, metadata, the topic's verdict, tags and evidence, and its story."""
    return data.article_data(_archive(request), article_id, topic=topic)


@router.post(
    "/api/labels",
    response_model=LabelAnswer,
    status_code=201,
    tags=["labels"],
    responses={
        403: {"model": Problem, "description": "A cross-site request from a browser (another site's page posting here)."},
        404: {"model": Problem, "description": "No such story or article."},
    },
)
def api_label(request: Request, body: LabelRequest) -> dict:
    """Label a story or an article relevant or not relevant to a topic. The label wins over the model at once (a story
    labelled not relevant leaves the relevant stories and owes no more alerts), and `monitor train` learns from it."""
    return data.label_data(
        _archive(request), relevant=body.relevant, by=body.by, note=body.note, topic=body.topic, story_id=body.story_id, article_id=body.article_id
    )


@router.get("/api/options", tags=["search"])
def api_options(request: Request) -> dict[str, list[str]]:
    """The vendors, countries, actions and sources present in the store: the values the filters take."""
    return data.options_data(_archive(request))


def _inert(value: object) -> object:
    """A cell a spreadsheet would run as a formula (=, +, -, @) is prefixed with ' so that it stays text."""
    return f"'{value}" if isinstance(value, str) and value[:1] in FORMULA_STARTS else value


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}

