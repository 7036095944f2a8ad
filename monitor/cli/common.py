"""The composition root: settings, store, embedder, scorers, output channels and the pipeline's dependencies, built once per command."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import TopicScorer, read_labelled
from monitor.config import Config, ConfigError, Settings, TopicSpec, load_config
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.notify.email import Mailer
from monitor.notify.outbox import MailChannel, Sender, SlackChannel
from monitor.notify.slack import SlackWebhook
from monitor.dedup import Deduper
from monitor.pipeline import Deps, load_deduper, utcnow
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


def load_app(config_path: Path | None, *, verbose: bool = False) -> App:
    settings, config = configure(config_path, verbose=verbose)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return App(settings, config, session_factory(engine))


def build_scorer(topic: TopicSpec, embedder, settings: Settings) -> TopicScorer:
    training = [item for path in topic.training for item in read_labelled(path)]
    return TopicScorer(topic, embedder, training=training, cache_dir=settings.model_cache)


def build_scorers(config: Config, embedder, settings: Settings) -> list[TopicScorer]:
    return [build_scorer(topic, embedder, settings) for topic in config.topics]


def build_sender(app: App, settings: Settings | None = None) -> Sender:
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
def pipeline_deps(app: App, settings: Settings | None = None, sender: Sender | None = None):
    settings = settings or app.settings
    embedder = SentenceTransformerEmbedder.from_settings(settings)
    deduper = load_deduper(Deduper(), app.sessions, topic=app.config.topics[0].name, now=utcnow())
    with build_client(settings) as client:
        yield Deps(
            settings=settings,
            sessions=app.sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=build_scorers(app.config, embedder, settings),
            deduper=deduper,
            on_relevant_story=sender.owe_story if sender else None,
        )


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


def format_when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"
