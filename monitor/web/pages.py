"""The HTML pages: the same data builders as the API, rendered by Jinja2 templates (autoescaped)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from monitor.web import data
from monitor.web.api import ArticleId, Split, StoryId, Topic
from monitor.web.chart import layout
from monitor.web.params import SearchParams

router = APIRouter(include_in_schema=False)
VERDICTS = {"relevant": True, "not-relevant": False}
FORM_BYTES = 10_000


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


async def _form(request: Request) -> dict[str, str]:
    """The fields of the pages' label form (urlencoded: the form has no file), each given once."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the label form as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > FORM_BYTES:
        raise HTTPException(413, "the form is too long")
    fields = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
    if fields.get("verdict") not in VERDICTS:
        raise HTTPException(422, "verdict: say relevant or not-relevant")
    return fields


def _labelled(request: Request, fields: dict[str, str], path: str, **target: int) -> RedirectResponse:
    """Store the label, then back to the page it was given on (post, redirect, get: a reload does not label twice)."""
    topic = fields.get("topic") or None
    data.label_data(
        request.app.state.archive, relevant=VERDICTS[fields["verdict"]], by=fields.get("by", ""), note=fields.get("note", ""), topic=topic, **target
    )
    return RedirectResponse(path + (f"?{urlencode({'topic': topic})}" if topic else ""), status_code=303)


@router.post("/stories/{story_id}/label")
async def label_story(request: Request, story_id: StoryId) -> RedirectResponse:
    return await run_in_threadpool(_labelled, request, await _form(request), f"/stories/{story_id}", story_id=story_id)


@router.post("/articles/{article_id}/label")
async def label_article(request: Request, article_id: ArticleId) -> RedirectResponse:
    return await run_in_threadpool(_labelled, request, await _form(request), f"/articles/{article_id}", article_id=article_id)
