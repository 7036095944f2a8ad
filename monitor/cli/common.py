"""The composition root: settings, store, embedder, scorers, output channels and the pipeline's dependencies, built once per command."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import Labelled, TopicScorer, read_labelled, reader_item
from monitor.config import ConfigError, Settings, load_config
from monitor.dedup import Deduper
from monitor.delivery import MailChannel, Sender, SlackChannel
from monitor.deps import Deps, Timings, utcnow
from monitor.specs import Config, TopicSpec
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.metrics import PipelineMetrics
from monitor.notify.email import Mailer
from monitor.notify.slack import SlackWebhook
from monitor.placement import load_deduper
from monitor.spikes import SpikeRule
from monitor.store import feedback
from monitor.store.db import make_engine, session_factory, upgrade

log = logging.getLogger("monitor")
app = typer.Typer(help="Media monitoring of bans of Chinese surveillance technology.", no_args_is_help=True)
err = Console(stderr=True)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "sentence_transformers", "apscheduler", "trafilatura", "htmldate", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)  # its migration lines only on request


@dataclass
class App:
    settings: Settings
    config: Config
    sessions: sessionmaker[Session]


def configure(config_path: Path | None, *, verbose: bool = False) -> tuple[Settings, Config]:
    setup_logging(verbose)
    settings = Settings()
    if config_path is not None:
        settings = settings.model_copy(update={"config": config_path})
    try:
        return settings, load_config(settings.config)
    except ConfigError as exc:
        typer.echo(f"error in configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def topic_spec(config: Config, name: str | None) -> TopicSpec:
    try:
        return config.topic(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--topic") from exc


def load_app(config_path: Path | None, *, verbose: bool = False, database: str | None = None) -> App:
    """Settings, feeds.yaml and the store (upgraded); database, when given, replaces MONITOR_DATABASE_URL."""
    settings, config = configure(config_path, verbose=verbose)
    if database:
        settings = settings.model_copy(update={"database_url": database})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return App(settings, config, session_factory(engine))


def shipped_training(topic: TopicSpec) -> list[Labelled]:
    return [item for path in topic.training for item in read_labelled(path)]


def readers_training(sessions: sessionmaker[Session], topic: TopicSpec, *, folded_only: bool = True) -> list[Labelled]:
    """The readers' labelled articles as training items: those `monitor train` folded in (or all of them)."""
    with sessions() as session:
        items = feedback.training_items(session, topic=topic.name, folded_only=folded_only)
    return [reader_item(i.key, i.title, i.text, i.relevant) for i in items]


def build_scorer(topic: TopicSpec, embedder, settings: Settings, sessions: sessionmaker[Session] | None = None) -> TopicScorer:
    """The topic's scorer, trained on its training files and, given the store, the labels `monitor train` folded in."""
    training = shipped_training(topic)
    if training and sessions is not None:
        training += readers_training(sessions, topic)
    return TopicScorer(topic, embedder, training=training, cache_dir=settings.model_cache)


def build_scorers(config: Config, embedder, settings: Settings, sessions: sessionmaker[Session] | None = None) -> list[TopicScorer]:
    return [build_scorer(topic, embedder, settings, sessions) for topic in config.topics]


def build_sender(app: App, settings: Settings | None = None) -> Sender:
    """The output channels that are configured: Slack routes whose webhook variable is set, SMTP when a host and recipients are."""
    settings = settings or app.settings
    outputs = app.config.outputs
    slack, webhooks = [], {}
    for route in outputs.slack:
        url = settings.webhook_url(route.webhook)
        if not url:
            log.info("Slack route %s: %s is not set, so it sends nothing", route.name, route.webhook)
            continue
        try:  # one client per webhook, so that routes posting to the same one share its pace
            webhooks[url] = webhooks.get(url) or SlackWebhook(url, timeout=settings.read_timeout, max_wait=settings.slack_max_wait, name=route.name)
        except ValueError as exc:
            log.error("Slack route %s: %s holds no usable webhook: %s", route.name, route.webhook, exc)
            continue
        slack.append(SlackChannel(route, webhooks[url]))
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
        claim_seconds=settings.delivery_claim,
        titles={topic.name: topic.title for topic in app.config.topics if topic.title},
        spike_rule=SpikeRule.from_settings(settings),
    )


@contextmanager
def process_metrics(settings: Settings) -> Iterator[PipelineMetrics | None]:
    """With MONITOR_METRICS_PORT set: this process's polls and stage times, served at /metrics on that port while in use."""
    if not settings.metrics_port:
        yield None
        return
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    server, _thread = start_http_server(settings.metrics_port, registry=registry)
    log.info("metrics of this process at http://0.0.0.0:%d/metrics", settings.metrics_port)
    try:
        yield metrics
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def pipeline_deps(app: App, settings: Settings | None = None, sender: Sender | None = None, wake: Callable[[], None] | None = None):
    """The pipeline's dependencies; `wake` is called after each commit that owed an alert (it wakes the sender)."""
    settings = settings or app.settings
    embedder = SentenceTransformerEmbedder.from_settings(settings)
    deduper = load_deduper(Deduper(), app.sessions, topic=app.config.topics[0].name, now=utcnow())
    with process_metrics(settings) as metrics, build_client(settings) as client:
        yield Deps(
            settings=settings,
            sessions=app.sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=build_scorers(app.config, embedder, settings, app.sessions),
            deduper=deduper,
            on_relevant_story=sender.owe_story if sender else None,
            wake_sender=wake,
            timings=Timings(observe=metrics.observe_stage if metrics else None),
            on_outcome=metrics.count_poll if metrics else None,
        )


PROGRESS_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@contextmanager
def progress_steps() -> Iterator[Callable[[str, int, int], None]]:
    """Progress of a long command on stderr: a bar per step on a terminal, a log line per report otherwise."""
    if not err.is_terminal:

        def line(step: str, done: int, total: int) -> None:
            log.info("%s: %d of %d", step, done, total)

        yield line
        return
    with Progress(*PROGRESS_COLUMNS, console=err) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done)

        yield advance


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, _frame):
        log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


ConfigOption = Annotated[Optional[Path], typer.Option("--config", help="feeds.yaml to use (default: MONITOR_CONFIG or ./feeds.yaml).")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
DatabaseOption = Annotated[
    Optional[str], typer.Option("--database", help="SQLAlchemy URL of the store (default: MONITOR_DATABASE_URL, or sqlite:///data/monitor.db).")
]


def shown_url(database_url: str) -> str:
    """The store's URL as logs may show it: any password masked."""
    return make_url(database_url).render_as_string(hide_password=True)


def format_when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"
