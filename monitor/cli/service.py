"""The service's commands: run, poll, status, digest and the demo."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from datetime import datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError


from monitor.cli.distributed import print_queue_state, schedule_forever
from monitor.config import LOOPBACK_NETWORKS, Settings
from monitor.delivery import Report, digest_day
from monitor.deps import Deps, utcnow
from monitor.domain import ACTIVE, PENDING, FeedOutcome, Subscription
from monitor.specs import FeedSpec, span
from monitor.hostpool import HostPool
from monitor.notify.digest import to_email
from monitor.passes import run_pass
from monitor.push import Upkeep
from monitor.websub import push_healthy
from monitor.spike_watch import detect_spikes, sentence as spike_sentence
from monitor.scheduler import PollTally, build_scheduler, most_failed, serve_forever
from monitor.store import outbox, websub
from monitor.store import polling
from monitor.store.db import make_engine, schema_problem, upgrade
from monitor.store.views import export_rows
from monitor.cli.common import (
    App,
    app,
    build_sender,
    ConfigOption,
    DatabaseOption,
    err,
    format_when,
    load_app,
    log,
    pipeline_deps,
    PROGRESS_COLUMNS,
    setup_logging,
    shown_url,
    stop_on_signals,
    topic_spec,
    VerboseOption,
)

DEMO_DATABASE = "sqlite:///data/demo.db"
PACKAGED_MODEL = "all-MiniLM-L6-v2 (packaged, loaded offline)"


def _pass_with_progress(feed_ids: list[int], deps: Deps, stop: threading.Event) -> tuple[list[FeedOutcome], float, float]:
    """One pass with a progress bar on a terminal (log lines otherwise), the models loaded before it; its outcomes,
    the seconds the models took to load and the seconds the pass took."""
    loading = deps.load_models() if feed_ids else 0.0
    start = time.perf_counter()
    if not err.is_terminal:

        def report(outcome: FeedOutcome) -> None:
            if outcome.ok:
                log.info("feed %s: %d new, %d relevant", outcome.feed, outcome.new_articles, outcome.relevant)

        outcomes = run_pass(feed_ids, deps, on_done=report, stop=stop)
    else:
        with Progress(*PROGRESS_COLUMNS, console=err, transient=True) as progress:
            task = progress.add_task("polling feeds", total=len(feed_ids))
            outcomes = run_pass(feed_ids, deps, on_done=lambda _o: progress.advance(task), stop=stop)
    return outcomes, loading, time.perf_counter() - start


def _summary(outcomes: list[FeedOutcome], loading: float, seconds: float) -> None:
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    new = sum(o.new_articles for o in outcomes)
    relevant = sum(o.relevant for o in outcomes)
    page_errors = sum(len(o.page_errors) for o in outcomes)
    typer.echo(
        f"feeds ok: {len(ok)}, failed: {len(failed)}; new articles: {new}; relevant: {relevant}; "
        f"pages read from the feed's summary instead: {page_errors}"
    )
    if new:
        typer.echo(f"the pass took {seconds:.1f} s: {new / seconds:.1f} new articles per second (the models loaded before it, in {loading:.1f} s)")
    for outcome in failed:
        typer.echo(f"  failed: {outcome.feed}: {outcome.error}")
    alarm = most_failed(outcomes)
    if alarm:
        typer.echo(alarm)


def _startup_summary(app_: App, feeds: list[polling.FeedStatus], *, service: bool) -> None:
    """What one needs to know at start: the feeds, the store, the model, the archive, and (for the service) what waits."""
    settings, config = app_.settings, app_.config
    log.info("%d feed%s from %s; topics: %s", len(feeds), "" if len(feeds) == 1 else "s", settings.config, ", ".join(t.name for t in config.topics))
    log.info("database: %s", shown_url(settings.database_url))
    log.info("model: %s", settings.model or PACKAGED_MODEL)
    if config.outputs.archive_url:
        log.info("archive: %s (served by `monitor serve`)", config.outputs.archive_url)
    else:
        log.info("archive: `monitor serve`, then open http://127.0.0.1:8000/")
        log.info("archive links are off: set outputs.archive_url in %s so alerts and digests link each story into the archive", settings.config)
    if settings.public_url:
        log.info("push: feeds that advertise a WebSub hub are subscribed; hubs call back at %s/websub/…", settings.public_url)
    if service:
        now = utcnow()
        waiting = sorted(f.next_due_at for f in feeds if f.next_due_at and f.next_due_at > now)
        if waiting:
            log.info(
                "%d feeds are due now, %d wait for their next poll (the first at %s); `monitor poll` polls them all now",
                len(feeds) - len(waiting), len(waiting), format_when(waiting[0]),
            )  # fmt: skip


def _active_feeds(app_: App) -> list[polling.FeedStatus]:
    """The feeds of feeds.yaml, after bringing the feeds table in line with it."""
    with app_.sessions.begin() as session:
        polling.sync_feeds(session, app_.config.feeds, now=utcnow())
    with app_.sessions() as session:
        return [f for f in polling.feeds_overview(session) if f.active]


def _poll_now(app_: App, feeds: list[polling.FeedStatus]) -> None:
    """One pass over these feeds whatever their next due time, then what the outbox owes."""
    stop = stop_on_signals()
    sender = build_sender(app_)
    with pipeline_deps(app_, sender=sender) as deps:
        _summary(*_pass_with_progress([f.id for f in feeds], deps, stop))
        for spike in detect_spikes(sender):
            typer.echo(f"coverage spike: {spike_sentence(sender, spike)}")
        _delivery_summary(sender.deliver_due())


@app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="Poll every feed one time, process all, and exit (as `monitor poll`).")] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The service: schedules every feed of feeds.yaml at its interval (with MONITOR_BROKER_URL: enqueues polls for workers)."""
    app_ = load_app(config, verbose=verbose)
    feeds = _active_feeds(app_)
    _startup_summary(app_, feeds, service=not once)
    if once:
        _poll_now(app_, feeds)
        return
    stop = stop_on_signals()
    sender = build_sender(app_)
    if app_.settings.broker_url:
        schedule_forever(app_, sender, stop)
        return
    tally = PollTally(len(feeds))
    wake = threading.Event()  # set after each commit that owed an alert: the sender looks at once, not at its interval
    workers = app_.settings.fetch_workers
    with pipeline_deps(app_, sender=sender, wake=wake.set) as deps, HostPool(deps.fetcher, workers) as pages:
        if sender.mail is not None:
            sender.plan_if_missed()
        push = Upkeep(app_.settings, app_.sessions, deps.fetcher, utcnow) if app_.settings.public_url else None
        scheduler = build_scheduler(
            replace(deps, page_pool=pages), feeds, workers=workers, sender=sender,
            delivery_interval=app_.settings.delivery_interval, tally=tally, wake=wake, push=push,
        )  # fmt: skip
        serve_forever(scheduler, stop, tally)


@app.command()
def poll(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="FEED_NAME", help="Feeds by their name in feeds.yaml (default: every feed).")] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Poll feeds now, whatever their next due time (after a restart, or a feed just fixed), process all, and exit."""
    app_ = load_app(config, verbose=verbose)
    feeds = _active_feeds(app_)
    if names:
        by_name = {f.name.casefold(): f for f in feeds}
        unknown = [name for name in names if name.casefold() not in by_name]
        if unknown:
            known = "; ".join(f.name for f in feeds)
            raise typer.BadParameter(f"no feed named {', '.join(map(repr, unknown))} in {app_.settings.config}; its feeds: {known}", param_hint="FEED_NAME")
        feeds = list({name.casefold(): by_name[name.casefold()] for name in names}.values())
    _startup_summary(app_, feeds, service=False)
    _poll_now(app_, feeds)


def _delivery_summary(report: Report) -> None:
    if report.sent or report.failed:
        typer.echo(f"deliveries: {report.sent} sent, {report.failed} failed (see `monitor status`)")
    for line in report.digests:
        typer.echo(f"digest {line}")


@app.command()
def migrate(
    check: Annotated[bool, typer.Option("--check", help="Change nothing: exit 0 when the database answers and its schema is the newest, else 1.")] = False,
) -> None:
    """Create the schema or bring it to the newest migration: the one step to run before the services start."""
    setup_logging(verbose=False)
    engine = make_engine(Settings().database_url)
    try:
        if not check:
            upgrade(engine)
        with engine.connect() as connection:
            problem = schema_problem(connection)
    except SQLAlchemyError as exc:
        problem = f"the database does not answer: {exc}"
    finally:
        engine.dispose()
    if problem:
        err.print(problem, markup=False, highlight=False)
        raise typer.Exit(1)
    typer.echo("the schema is at the newest migration")


@app.command()
def status(database: DatabaseOption = None, config: ConfigOption = None) -> None:
    """Feeds with their last success, last error, interval (and why) and next due time; the alerts and digests owed, sent and failed."""
    app_ = load_app(config, database=database)
    with app_.sessions() as session:
        feeds = polling.feeds_overview(session)
        counts = polling.article_counts(session)
        subscriptions = websub.subscriptions(session)
        backlog = websub.push_backlog(session)
    table = Table(title="feeds")
    for column in ("feed", "active", "articles", "last success", "errors", "last error", "interval", "why", "next due", "push"):
        table.add_column(column)
    for feed in feeds:
        interval = feed.poll_interval or feed.interval_seconds
        table.add_row(
            feed.name,
            "yes" if feed.active else "no",
            str(counts.get(feed.id, 0)),
            format_when(feed.last_success_at),
            str(feed.error_count),
            (feed.last_error or "")[:80],
            span(interval),
            feed.poll_reason or "configured; chosen at the first poll",
            format_when(feed.next_due_at) if feed.active else "-",
            _push_state(feed, subscriptions.get(feed.id), backlog.get(feed.id), public_url=app_.settings.public_url),
        )
    console = Console(width=200)
    console.print(table)
    if app_.settings.broker_url:
        print_queue_state(app_, console)
    _outbox_status(app_, console)


def _push_state(feed: polling.FeedStatus, sub: Subscription | None, backlog: tuple[int, str | None] | None, *, public_url: str) -> str:
    """A feed's WebSub push in a few words: whether it is subscribed, its lease, the last push, what waits."""
    if sub is None:
        state = "-" if not feed.hub_url else "hub found; set MONITOR_PUBLIC_URL to use it" if not public_url else "hub found, subscribing"
    elif sub.state == ACTIVE:
        state = f"active to {format_when(sub.lease_expires_at)}, last push {format_when(sub.last_push_at)}"
        healthy = push_healthy(sub, interval=feed.poll_interval or feed.interval_seconds, now=utcnow())
        state += "; healthy, polls are a safety net" if healthy else "; quiet, polled at its interval"
    elif sub.state == PENDING:
        state = f"pending: asked {format_when(sub.requested_at)}"
    else:
        state = sub.state + (f": {sub.last_error[:60]}" if sub.last_error else "")
    if backlog:
        state += f"; {backlog[0]} pushed {'body' if backlog[0] == 1 else 'bodies'} waiting" + (f" ({backlog[1][:60]})" if backlog[1] else "")
    return state


def _outbox_status(app_: App, console: Console) -> None:
    """Deliveries by state, the recent digests, and every delivery that failed or waits after an error."""
    with app_.sessions() as session:
        counts = outbox.outbox_counts(session)
        problems = outbox.outbox_problems(session)
        digests = outbox.recent_digests(session)
    summary = ", ".join(f"{channel} {state}: {n}" for (channel, state), n in sorted(counts.items())) or "nothing owed yet"
    console.print(f"deliveries: {summary}")
    for run in digests:
        when = format_when(run.sent_at) if run.sent_at else f"due {format_when(run.due_at)}"
        console.print(f"digest {run.topic} {run.day}: {run.status}, {run.stories} stories, {when}" + (f", error: {run.last_error}" if run.last_error else ""))
    if problems:
        table = Table(title="deliveries failed or retrying")
        for column in ("channel", "route", "what", "state", "attempts", "next try", "last error"):
            table.add_column(column)
        for row in problems:
            next_try = format_when(row.due_at) if row.status == "pending" else "given up"
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
    app_ = load_app(config)
    sender = build_sender(app_)
    name = topic_spec(app_.config, topic).name
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
            err.print(f"the {name} digest of {day} was already {run.status} at {format_when(run.sent_at)}; --force sends it again")
            raise typer.Exit(1)
        outbox.reopen_digest(session, run.id, now=utcnow())
    report = Report()
    sender.deliver_digests(report)
    _delivery_summary(report)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    database: Annotated[str, typer.Option("--database", help="SQLAlchemy URL of the demo's own store; the configured one is never touched.")] = DEMO_DATABASE,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the sample news site on localhost and run one pass of the real pipeline over it, into a database of its own."""
    from monitor.demo.server import LocalSite
    from monitor.demo.site import SITE_NAME, feed_urls, load_demo_articles, site_routes

    app_ = load_app(config, verbose=verbose, database=database)
    articles = load_demo_articles(utcnow())
    with LocalSite() as site:
        site.routes.update(site_routes(articles, site.base_url))
        specs = [
            FeedSpec(name=f"{SITE_NAME} ({section})", url=url, interval=3600)
            for section, url in feed_urls(articles, site.base_url).items()
        ]
        typer.echo(f"sample site with {len(articles)} articles at {site.base_url} ({len(specs)} feeds), stored in {shown_url(database)}")
        with app_.sessions.begin() as session:
            polling.sync_feeds(session, specs, now=utcnow())
            feed_ids = [f.id for f in polling.feeds_overview(session) if f.active]
        ours = [ip_network(network) for network in LOOPBACK_NETWORKS]
        polite_to_ourselves = app_.settings.model_copy(
            update={"host_delay": 0.0, "host_concurrency": 8, "allowed_networks": [*app_.settings.allowed_networks, *ours]}
        )
        sender = build_sender(app_)
        with pipeline_deps(app_, polite_to_ourselves, sender=sender) as deps:
            passed = _pass_with_progress(feed_ids, deps, stop_on_signals())
        report = sender.deliver_due()
    _summary(*passed)
    _delivery_summary(report)
    topic = app_.config.topics[0].name
    with app_.sessions() as session:
        found = [row for row in export_rows(session, topic=topic, relevant_only=True)]
    typer.echo(f"\non-topic articles found ({topic}): {len(found)}")
    for row in sorted(found, key=lambda r: -r["score"]):
        tags = ", ".join(row["vendors"] + row["countries"] + row["actions"])
        typer.echo(f"  {row['score']:.2f}  {row['title']}" + (f"  [{tags}]" if tags else ""))
    typer.echo(f"\nnext: `monitor serve --database {database}` to search them, `monitor export --database {database}` lists them all.")
