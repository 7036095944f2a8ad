"""The HTML pages: the same data builders as the API, rendered by Jinja2 templates (autoescaped)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from monitor.web import data
from monitor.web.api import ArticleId, Split, StoryId, Topic
from monitor.web.chart import layout
from monitor.web.params import SearchParams

router = APIRouter(include_in_schema=False)


def _render(request: Request, template: str, context: dict) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
def search_page(request: Request, params: Annotated[SearchParams, Query()], split: Split = "vendor") -> HTMLResponse:
    """Results, filters with their counts, and the chart of coverage over time of everything the search finds."""
    archive: data.Archive = request.app.state.archive
    found = data.search_data(archive, params, facets=True)
    coverage = data.coverage_data(archive, params, split) if found["total"] else None
    chart = layout(coverage) if coverage else None
    return _render(request, "search.html", {"found": found, "params": params, "coverage": coverage, "chart": chart, "split": split})


@router.get("/stories/{story_id}", response_class=HTMLResponse)
def story_page(request: Request, story_id: StoryId, topic: Topic = None) -> HTMLResponse:
    return _render(request, "story.html", data.story_data(request.app.state.archive, story_id, topic=topic))


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article_page(request: Request, article_id: ArticleId, topic: Topic = None) -> HTMLResponse:
    return _render(request, "article.html", data.article_data(request.app.state.archive, article_id, topic=topic))
