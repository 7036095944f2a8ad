"""The archive's commands: serve (web page and JSON API) and search (the terminal)."""

from __future__ import annotations

import html
import json
import threading
import time
from datetime import datetime
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from monitor.embed import SentenceTransformerEmbedder
from monitor.labels import matched_by
from monitor.cli.common import (
    app,
    ConfigOption,
    DatabaseOption,
    err,
    load_app,
    log,
    topic_spec,
    VerboseOption,
)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    database: DatabaseOption = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The archive: search pages and the JSON API (/api/search; documented at /docs)."""
    import uvicorn

    from monitor.deps import utcnow
    from monitor.metrics import store_registry
    from monitor.store.search import VectorIndex
    from monitor.web.app import create_app

    app_ = load_app(config, verbose=verbose, database=database)
    embedder = SentenceTransformerEmbedder.from_settings(app_.settings)
    vectors = VectorIndex(where=app_.settings.vector_search)

    def warm_up() -> None:
        """Load the model and the vectors while the server already answers word searches."""
        started = time.perf_counter()
        embedder.embed(["warm up"])
        with app_.sessions() as session:
            vectors.refresh(session)
        log.info("meaning search ready in %.1f s", time.perf_counter() - started)

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    metrics = store_registry(
        app_.sessions, topics=[t.name for t in app_.config.topics], clock=utcnow, broker_url=app_.settings.broker_url
    )
    web = create_app(
        sessions=app_.sessions, embedder=embedder, config=app_.config, settings=app_.settings, vectors=vectors, metrics=metrics
    )
    if host not in ("127.0.0.1", "localhost", "::1") and not app_.settings.api_token:
        log.warning("serving on %s without MONITOR_API_TOKEN: anyone who reaches it can read the archive", host)
    typer.echo(f"archive at http://{host}:{port}/ (API documentation at /docs)")
    uvicorn.run(web, host=host, port=port, log_level="info" if verbose else "warning")


@app.command("search")
def search_archive(
    query: Annotated[str, typer.Argument(help='Words to find ("quoted phrases", -word to leave out); empty: the newest stories.')] = "",
    mode: Annotated[str, typer.Option("--mode", help="words, meaning or hybrid (both, fused).")] = "hybrid",
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    all_stories: Annotated[bool, typer.Option("--all", help="Every story, not only those relevant to the topic.")] = False,
    vendor: Annotated[Optional[list[str]], typer.Option("--vendor", help="Stories naming this vendor (repeat for any of several).")] = None,
    country: Annotated[Optional[list[str]], typer.Option("--country", help="Stories acted on in this country: ISO alpha-2 or EU (repeatable).")] = None,
    action: Annotated[Optional[list[str]], typer.Option("--action", help="Stories with this action: ban, removal, blacklist, … (repeatable).")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="Stories with an article from this outlet or feed (repeatable).")] = None,
    since: Annotated[Optional[datetime], typer.Option("--since", help="Stories published on or after this day.", formats=["%Y-%m-%d"])] = None,
    until: Annotated[Optional[datetime], typer.Option("--until", help="Stories published on or before this day.", formats=["%Y-%m-%d"])] = None,
    sort: Annotated[str, typer.Option("--sort", help="best or newest.")] = "best",
    page: Annotated[int, typer.Option("--page", help="Page of results.")] = 1,
    limit: Annotated[int, typer.Option("--limit", help="Results per page (at most 100).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON in the shape of /api/search, the snippets as plain text.")] = False,
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """The archive from the terminal: stories found by words, meaning or both, with filters."""
    from rich.text import Text

    from monitor.store.search import SearchError, SearchQuery, VectorIndex, search

    app_ = load_app(config, database=database)
    wanted = SearchQuery(
        q=query, mode=mode, topic=topic_spec(app_.config, topic).name, relevant=not all_stories,
        vendors=tuple(vendor or ()), countries=tuple(country or ()), actions=tuple(action or ()), sources=tuple(source or ()),
        since=since.date() if since else None, until=until.date() if until else None, sort=sort, page=page, per_page=limit,
    )  # fmt: skip
    vectors, vector = VectorIndex(where=app_.settings.vector_search), None
    if query.strip() and mode != "words":
        vector = SentenceTransformerEmbedder.from_settings(app_.settings).embed([query])[0]
    try:
        with app_.sessions() as session:
            if vector is not None:
                vectors.refresh(session)
            found = search(session, wanted, vectors=vectors, query_vector=vector)
    except SearchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if found.notice:
        err.print(f"note: {found.notice}", markup=False, highlight=False)
    if as_json:
        from monitor.web.data import hit_dict, plain

        results = [{**hit_dict(hit), "snippet": plain(hit.snippet)} for hit in found.results]
        typer.echo(json.dumps({"total": found.total, "total_exact": found.total_exact, "results": results}, ensure_ascii=False))
        return
    stories = "story" if found.total == 1 and found.total_exact else "stories"
    title = ("" if found.total_exact else "at least ") + f"{found.total} {stories}" + (f", page {page}" if found.total > limit else "")
    table = Table(title=title, show_lines=True)
    for column in ("score, match", "date", "headline", "tags", "sources", "snippet"):
        table.add_column(column, overflow="fold")
    for hit in found.results:
        snippet = Text()
        for number, part in enumerate(hit.snippet.replace("</mark>", "<mark>").split("<mark>")):
            snippet.append(html.unescape(part), style="bold" if number % 2 else "")
        tags = ", ".join(hit.vendors + hit.countries + hit.actions)
        when = hit.published.strftime("%Y-%m-%d") if hit.published else "-"
        how = matched_by(hit.matched, hit.similarity).removeprefix("matched by ").replace(" · ", "\n")
        table.add_row(f"{hit.score:.2f}\n{how}".strip(), when, Text(hit.title), Text(tags), str(len(hit.sources)), snippet)  # Text: no markup
    Console().print(table)
