"""The composition root and command line: builds settings, store, HTTP client, embedder and scorers."""

from __future__ import annotations

import html
import json
import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import Document, TopicScorer, read_labelled
from monitor.config import Config, ConfigError, FeedSpec, Settings, TopicSpec, load_config
from monitor.domain import FeedOutcome
from monitor.embed import SentenceTransformerEmbedder
from monitor.export import write_atom, write_csv, write_jsonl
from monitor.fetch import Fetcher, build_client
from monitor.notify.email import Mailer
from monitor.notify.digest import to_email
from monitor.notify.outbox import MailChannel, Report, Sender, SlackChannel, digest_day
from monitor.notify.slack import SlackWebhook
from monitor.dedup import Deduper
from monitor.pipeline import Deps, load_deduper, rescore_all, run_pass, utcnow
from monitor.scheduler import build_scheduler, serve_forever
from monitor.store import outbox
from monitor.store import repository as repo
from monitor.store.db import make_engine, session_factory, upgrade

log = logging.getLogger("monitor")
app = typer.Typer(help="Media monitoring of bans of Chinese surveillance technology.", no_args_is_help=True)
err = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "sentence_transformers", "apscheduler", "trafilatura", "htmldate", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class App:
    settings: Settings
    config: Config
    sessions: sessionmaker[Session]


def _configure(config_path: Path | None, *, verbose: bool = False) -> tuple[Settings, Config]:
    _setup_logging(verbose)
    settings = Settings()
    if config_path is not None:
        settings = settings.model_copy(update={"config": config_path})
    try:
        return settings, load_config(settings.config)
    except ConfigError as exc:
        typer.echo(f"error in configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def _topic(config: Config, name: str | None) -> TopicSpec:
    try:
        return config.topic(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--topic") from exc


def _load(config_path: Path | None, *, verbose: bool = False) -> App:
    settings, config = _configure(config_path, verbose=verbose)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return App(settings, config, session_factory(engine))


def _scorer(topic: TopicSpec, embedder, settings: Settings) -> TopicScorer:
    training = [item for path in topic.training for item in read_labelled(path)]
    return TopicScorer(topic, embedder, training=training, cache_dir=settings.model_cache)


def _scorers(config: Config, embedder, settings: Settings) -> list[TopicScorer]:
    return [_scorer(topic, embedder, settings) for topic in config.topics]


def _sender(app: App, settings: Settings | None = None) -> Sender:
    """The output channels that are configured: Slack routes whose webhook variable is set, SMTP when a host and recipients are."""
    settings = settings or app.settings
    outputs = app.config.outputs
    slack = []
    for route in outputs.slack:
        url = route.url(settings)
        if not url:
            log.info("Slack route %s: %s is not set, so it sends nothing", route.name, route.webhook)
            continue
        try:
            webhook = SlackWebhook(url, timeout=settings.read_timeout, max_wait=settings.slack_max_wait, name=route.name)
        except ValueError as exc:
            log.error("Slack route %s: %s holds no usable webhook: %s", route.name, route.webhook, exc)
            continue
        slack.append(SlackChannel(route, webhook))
    recipients = settings.digest_recipients(outputs.digest.recipients)
    mail = None
    if settings.smtp_host and recipients:
        mailer = Mailer(
            settings.smtp_host,
            settings.smtp_port,
            tls=settings.smtp_tls,
            user=settings.smtp_user or None,
            password=settings.smtp_password or None,
            timeout=settings.smtp_timeout,
        )
        mail = MailChannel(mailer, settings.mail_from, recipients)
    else:
        log.info("digest email off: set MONITOR_SMTP_HOST and recipients (MONITOR_DIGEST_TO or outputs.digest.recipients)")
    return Sender(
        outputs=outputs,
        topics=[topic.name for topic in app.config.topics],
        sessions=app.sessions,
        slack=slack,
        mail=mail,
        clock=utcnow,
        max_backoff=settings.delivery_max_backoff,
    )


@contextmanager
def _deps(app: App, settings: Settings | None = None, sender: Sender | None = None):
    settings = settings or app.settings
    embedder = SentenceTransformerEmbedder(settings.model, batch_size=settings.embed_batch_size)
    deduper = load_deduper(Deduper(), app.sessions, topic=app.config.topics[0].name, now=utcnow())
    with build_client(settings) as client:
        yield Deps(
            settings=settings,
            sessions=app.sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=_scorers(app.config, embedder, settings),
            deduper=deduper,
            on_relevant_story=sender.owe_story if sender else None,
        )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _pass_with_progress(feed_ids: list[int], deps: Deps, stop: threading.Event) -> list[FeedOutcome]:
    if not err.is_terminal:

        def report(outcome: FeedOutcome) -> None:
            if outcome.ok:
                log.info("feed %s: %d new, %d relevant", outcome.feed, outcome.new_articles, outcome.relevant)

        return run_pass(feed_ids, deps, on_done=report, stop=stop)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("polling feeds", total=len(feed_ids))
        return run_pass(feed_ids, deps, on_done=lambda _o: progress.advance(task), stop=stop)


def _summary(outcomes: list[FeedOutcome]) -> None:
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    new = sum(o.new_articles for o in outcomes)
    relevant = sum(o.relevant for o in outcomes)
    page_errors = sum(len(o.page_errors) for o in outcomes)
    typer.echo(
        f"feeds ok: {len(ok)}, failed: {len(failed)}; new articles: {new}; relevant: {relevant}; "
        f"pages read from the feed's summary instead: {page_errors}"
    )
    for outcome in failed:
        typer.echo(f"  failed: {outcome.feed}: {outcome.error}")


ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="feeds.yaml to use (default: MONITOR_CONFIG or ./feeds.yaml).")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


@app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="Poll every feed one time, process all, and exit.")] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The service: schedules every feed of feeds.yaml at its interval."""
    app_ = _load(config, verbose=verbose)
    with app_.sessions.begin() as session:
        repo.sync_feeds(session, app_.config.feeds, now=utcnow())
    stop = _stop_on_signals()
    sender = _sender(app_)
    with _deps(app_, sender=sender) as deps:
        if once:
            with app_.sessions() as session:
                feed_ids = repo.active_feed_ids(session)
            _summary(_pass_with_progress(feed_ids, deps, stop))
            _delivery_summary(sender.deliver_due())
            return
        with app_.sessions() as session:
            feeds = [f for f in repo.feeds_overview(session) if f.active]
        if sender.mail is not None:
            sender.plan_if_missed()
        scheduler = build_scheduler(
            deps, feeds, workers=app_.settings.fetch_workers, sender=sender, delivery_interval=app_.settings.delivery_interval
        )
        serve_forever(scheduler, stop)


def _delivery_summary(report: Report) -> None:
    if report.sent or report.failed:
        typer.echo(f"deliveries: {report.sent} sent, {report.failed} failed (see `monitor status`)")
    for line in report.digests:
        typer.echo(f"digest {line}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@app.command()
def status(config: ConfigOption = None) -> None:
    """Feeds with their last success, last error and next due time."""
    app_ = _load(config)
    with app_.sessions() as session:
        feeds = repo.feeds_overview(session)
        counts = repo.article_counts(session)
    table = Table(title="feeds")
    for column in ("feed", "active", "articles", "last success", "errors", "last error", "next due"):
        table.add_column(column)
    for feed in feeds:
        table.add_row(
            feed.name,
            "yes" if feed.active else "no",
            str(counts.get(feed.id, 0)),
            _when(feed.last_success_at),
            str(feed.error_count),
            (feed.last_error or "")[:80],
            _when(feed.next_due_at) if feed.active else "-",
        )
    console = Console(width=200)
    console.print(table)
    _outbox_status(app_, console)


def _outbox_status(app_: App, console: Console) -> None:
    """Deliveries by state, the recent digests, and every delivery that failed or waits after an error."""
    with app_.sessions() as session:
        counts = outbox.outbox_counts(session)
        problems = outbox.outbox_problems(session)
        digests = outbox.recent_digests(session)
    summary = ", ".join(f"{channel} {state}: {n}" for (channel, state), n in sorted(counts.items())) or "nothing owed yet"
    console.print(f"deliveries: {summary}")
    for run in digests:
        when = _when(run.sent_at) if run.sent_at else f"due {_when(run.due_at)}"
        console.print(f"digest {run.topic} {run.day}: {run.status}, {run.stories} stories, {when}" + (f", error: {run.last_error}" if run.last_error else ""))
    if problems:
        table = Table(title="deliveries failed or retrying")
        for column in ("channel", "route", "what", "state", "attempts", "next try", "last error"):
            table.add_column(column)
        for row in problems:
            next_try = _when(row.due_at) if row.status == "pending" else "given up"
            table.add_row(row.channel, row.route, row.subject, row.status, str(row.attempts), next_try, (row.last_error or "")[:100])
        console.print(table)


@app.command()
def digest(
    date_: Annotated[Optional[datetime], typer.Option("--date", formats=["%Y-%m-%d"], help="The day (default: today in the digest's time zone).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the email (both parts) instead of sending it.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="With --dry-run: write to this file (.eml) instead of stdout.")] = None,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic (default: the first).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Send again a digest that was already sent.")] = False,
    config: ConfigOption = None,
) -> None:
    """Build the digest of a day and send it (or, with --dry-run, show it)."""
    app_ = _load(config)
    sender = _sender(app_)
    name = _topic(app_.config, topic).name
    day = date_.date() if date_ else digest_day(utcnow(), app_.config.outputs.digest)
    if dry_run:
        built, _ = sender.build(name, day)
        recipients = app_.settings.digest_recipients(app_.config.outputs.digest.recipients)
        message = to_email(built, sender=app_.settings.mail_from, recipients=recipients or ["undisclosed-recipients:;"])
        if output:
            output.write_bytes(bytes(message))
            typer.echo(f"{output}: {built.subject}")
        else:
            sys.stdout.write(message.as_string())
        return
    if sender.mail is None:
        err.print("[red]no digest can be sent:[/] set MONITOR_SMTP_HOST and recipients (MONITOR_DIGEST_TO or outputs.digest.recipients in feeds.yaml)")
        raise typer.Exit(2)
    with app_.sessions.begin() as session:
        run = outbox.plan_digest(session, topic=name, day=day.isoformat(), due_at=utcnow(), now=utcnow())
        if run.status != "pending" and not force:
            err.print(f"the {name} digest of {day} was already {run.status} at {_when(run.sent_at)}; --force sends it again")
            raise typer.Exit(1)
        run.status, run.due_at = "pending", utcnow()
    report = Report()
    sender.deliver_digests(report)
    _delivery_summary(report)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def export(
    format: Annotated[str, typer.Option("--format", help="jsonl, csv or atom.")] = "jsonl",
    relevant_only: Annotated[bool, typer.Option("--relevant-only", help="Only articles the topic finds relevant.")] = False,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    config: ConfigOption = None,
) -> None:
    """Every stored article with its text, verdict, tags and evidence."""
    writers = {"jsonl": write_jsonl, "csv": write_csv, "atom": write_atom}
    if format not in writers:
        raise typer.BadParameter(f"{format!r} is not one of jsonl, csv, atom", param_hint="--format")
    app_ = _load(config)
    topic_name = _topic(app_.config, topic).name
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        with app_.sessions() as session:
            writers[format](repo.export_rows(session, topic=topic_name, relevant_only=relevant_only), stream)
    finally:
        if output:
            stream.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The archive: search pages and the JSON API (/api/search; documented at /docs)."""
    import uvicorn

    from monitor.store.search import VectorIndex
    from monitor.web.app import create_app

    app_ = _load(config, verbose=verbose)
    embedder = SentenceTransformerEmbedder(app_.settings.model, batch_size=app_.settings.embed_batch_size)
    vectors = VectorIndex()

    def warm_up() -> None:
        """Load the model and the vectors while the server already answers word searches."""
        started = time.perf_counter()
        embedder.embed(["warm up"])
        with app_.sessions() as session:
            vectors.refresh(session)
        log.info("meaning search ready in %.1f s", time.perf_counter() - started)

    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    web = create_app(sessions=app_.sessions, embedder=embedder, config=app_.config, settings=app_.settings, vectors=vectors)
    if host not in ("127.0.0.1", "localhost", "::1") and not app_.settings.api_token:
        log.warning("serving on %s without MONITOR_API_TOKEN: anyone who reaches it can read the archive", host)
    typer.echo(f"archive at http://{host}:{port}/ (API documentation at /docs)")
    uvicorn.run(web, host=host, port=port, log_level="info" if verbose else "warning")


def _read_jsonl(stream) -> list[tuple[dict | None, str | None]]:
    items = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            items.append((item, None))
        except ValueError as exc:
            items.append((None, f"line {number}: {exc}"))
    return items


@app.command()
def score(
    file: Annotated[str, typer.Argument(help="JSON Lines with id, title, text (optional url, published); - for stdin.")] = "-",
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    config: ConfigOption = None,
) -> None:
    """Score JSON Lines against a topic: one JSON line out per line in, in order."""
    settings, loaded = _configure(config)
    spec = _topic(loaded, topic)
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8")
    with stream:
        items = _read_jsonl(stream)
    embedder = SentenceTransformerEmbedder(settings.model, batch_size=settings.embed_batch_size)
    scorer = _scorer(spec, embedder, settings)
    good = [item for item, _ in items if item is not None]
    documents = [Document(str(item.get("title") or ""), str(item.get("text") or "")) for item in good]
    verdicts = iter(scorer.score(documents, embedder.embed([d.for_embedding for d in documents])))
    for item, problem in items:
        if item is None:
            print(json.dumps({"id": None, "error": problem}), flush=False)
            continue
        verdict = next(verdicts)
        print(
            json.dumps(
                {
                    "id": item.get("id"),
                    "score": verdict.score,
                    "relevant": verdict.relevant,
                    "vendors": verdict.vendors,
                    "countries": verdict.countries,
                    "actions": verdict.actions,
                    "why": verdict.why,
                },
                ensure_ascii=False,
            )
        )


@app.command("eval")
def evaluate(
    file: Annotated[Optional[Path], typer.Argument(help="Labelled JSON Lines (default: the topic's training files, cross-validated).")] = None,
    stories: Annotated[Optional[Path], typer.Option("--stories", help="Evaluate story folding instead, on JSON Lines of articles with their story group and copy_of.")] = None,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    negatives: Annotated[Optional[Path], typer.Option("--negatives", help="JSON Lines of real off-topic news (title, summary, content) for the false-positive rate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Precision, recall and F1 of the topic detector (or, with --stories, of story folding) against labelled data."""
    from monitor.topic_eval import evaluate as run_evaluation
    from monitor.topic_eval import read_negatives, render

    settings, loaded = _configure(config)
    spec = _topic(loaded, topic)
    if stories is not None:
        from monitor.story_eval import evaluate_stories, read_story_items, render_stories
        from monitor.tags import Tagger

        try:
            story_items = read_story_items(stories)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--stories") from exc
        embedder = SentenceTransformerEmbedder(settings.model, batch_size=settings.embed_batch_size)
        report = evaluate_stories(story_items, embedder, Tagger(spec))
        typer.echo(json.dumps(report, indent=1) if as_json else render_stories(report))
        return
    files = [file] if file else spec.training
    if not files:
        raise typer.BadParameter(f"topic {spec.name} has no training files; give a labelled FILE")
    try:
        items = [item for path in files for item in read_labelled(path)]
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from exc
    default_negatives = settings.config.resolve().parent.parent / "shared" / "data" / "negatives" / "feed_items.jsonl"
    negatives = negatives or (default_negatives if default_negatives.is_file() else None)
    embedder = SentenceTransformerEmbedder(settings.model, batch_size=settings.embed_batch_size)
    scorer = _scorer(spec, embedder, settings)
    cross_validate = file is None or file.resolve() in {p.resolve() for p in spec.training}
    report = run_evaluation(scorer, items, cross_validate=cross_validate, negatives=read_negatives(negatives) if negatives else None)
    typer.echo(json.dumps(report, indent=1, ensure_ascii=False) if as_json else render(report))


@app.command()
def rescore(
    topic: Annotated[Optional[str], typer.Option("--topic", help="Only this topic (default: every topic).")] = None,
    config: ConfigOption = None,
) -> None:
    """Score every stored article again with the current topic definitions, without fetching anything."""
    app_ = _load(config)
    topics = [_topic(app_.config, topic)] if topic else app_.config.topics
    embedder = SentenceTransformerEmbedder(app_.settings.model, batch_size=app_.settings.embed_batch_size)
    scorers = [_scorer(t, embedder, app_.settings) for t in topics]
    counts = rescore_all(app_.sessions, scorers, embedder, now=utcnow())
    for name, (total, relevant) in counts.items():
        typer.echo(f"{name}: {total} articles scored, {relevant} relevant")


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
    as_json: Annotated[bool, typer.Option("--json", help="JSON in the shape of /api/search.")] = False,
    config: ConfigOption = None,
) -> None:
    """The archive from the terminal: stories found by words, meaning or both, with filters."""
    from rich.text import Text

    from monitor.store.search import SearchError, SearchQuery, VectorIndex, search

    app_ = _load(config)
    wanted = SearchQuery(
        q=query, mode=mode, topic=_topic(app_.config, topic).name, relevant=not all_stories,
        vendors=tuple(vendor or ()), countries=tuple(country or ()), actions=tuple(action or ()), sources=tuple(source or ()),
        since=since.date() if since else None, until=until.date() if until else None, sort=sort, page=page, per_page=limit,
    )  # fmt: skip
    vectors, vector = VectorIndex(), None
    if query.strip() and mode != "words":
        vector = SentenceTransformerEmbedder(app_.settings.model).embed([query])[0]
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
        fields = ("story_id", "title", "url", "published", "score", "vendors", "countries", "actions", "sources", "snippet")
        results = [{name: getattr(hit, name) for name in fields} for hit in found.results]
        typer.echo(json.dumps({"total": found.total, "results": results}, default=lambda d: d.isoformat(), ensure_ascii=False))
        return
    title = f"{found.total} {'story' if found.total == 1 else 'stories'}" + (f", page {page}" if found.total > limit else "")
    table = Table(title=title, show_lines=True)
    for column in ("score", "date", "headline", "tags", "sources", "snippet"):
        table.add_column(column, overflow="fold")
    for hit in found.results:
        snippet = Text()
        for number, part in enumerate(hit.snippet.replace("</mark>", "<mark>").split("<mark>")):
            snippet.append(html.unescape(part), style="bold" if number % 2 else "")
        tags = ", ".join(hit.vendors + hit.countries + hit.actions)
        when = hit.published.strftime("%Y-%m-%d") if hit.published else "-"
        table.add_row(f"{hit.score:.2f}", when, Text(hit.title), Text(tags), str(len(hit.sources)), snippet)  # Text: no markup
    Console().print(table)


@app.command()
def demo(
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the sample news site on localhost and run one pass of the real pipeline over it."""
    from monitor.demo.server import LocalSite
    from monitor.demo.site import SITE_NAME, feed_urls, load_demo_articles, site_routes

    app_ = _load(config, verbose=verbose)
    articles = load_demo_articles()
    with LocalSite() as site:
        site.routes.update(site_routes(articles, site.base_url))
        specs = [
            FeedSpec(name=f"{SITE_NAME} ({section})", url=url, interval=3600)
            for section, url in feed_urls(articles, site.base_url).items()
        ]
        typer.echo(f"sample site with {len(articles)} articles at {site.base_url} ({len(specs)} feeds)")
        with app_.sessions.begin() as session:
            repo.sync_feeds(session, specs, now=utcnow())
            feed_ids = [f.id for f in repo.feeds_overview(session) if f.active]
        polite_to_ourselves = app_.settings.model_copy(update={"host_delay": 0.0, "host_concurrency": 8})
        sender = _sender(app_)
        with _deps(app_, polite_to_ourselves, sender=sender) as deps:
            outcomes = _pass_with_progress(feed_ids, deps, _stop_on_signals())
        report = sender.deliver_due()
    _summary(outcomes)
    _delivery_summary(report)
    topic = app_.config.topics[0].name
    with app_.sessions() as session:
        found = [row for row in repo.export_rows(session, topic=topic, relevant_only=True)]
    typer.echo(f"\non-topic articles found ({topic}): {len(found)}")
    for row in sorted(found, key=lambda r: -r["score"]):
        tags = ", ".join(row["vendors"] + row["countries"] + row["actions"])
        typer.echo(f"  {row['score']:.2f}  {row['title']}" + (f"  [{tags}]" if tags else ""))
    typer.echo("\nnext: `monitor export --format jsonl` lists every stored article.")


if __name__ == "__main__":
    app()
