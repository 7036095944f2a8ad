"""Distributed mode's commands: `monitor worker`, the scheduler half of `monitor run`, and the queue in `monitor status`."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Annotated

import typer
from rich.console import Console

from monitor.cli.common import App, ConfigOption, VerboseOption, app, build_sender, err, load_app, log, pipeline_deps
from monitor.delivery import Sender
from monitor.deps import utcnow
from monitor.fetch import Fetcher, build_client
from monitor.domain import POLL_QUEUE
from monitor.hostpool import HostPool
from monitor.push import Upkeep
from monitor.scheduler import build_dispatcher, serve_forever
from monitor.store import leases
from monitor.tasks import enqueue_due, enqueue_pushed, listen_for_wakes, make_celery, queue_state, register_poll, sender_waker, worker_name


def schedule_forever(app_: App, sender: Sender, stop: threading.Event) -> None:
    """`monitor run` with a broker: lease due feeds and enqueue their polls, send the outbox; no model is loaded."""
    settings = app_.settings
    celery = make_celery(settings)

    def enqueue() -> int:
        polls = enqueue_due(celery, app_.sessions, now=utcnow(), lease_seconds=settings.poll_lease)
        if settings.public_url:
            polls += enqueue_pushed(celery, app_.sessions, now=utcnow(), lease_seconds=settings.poll_lease)
        return polls

    if sender.mail is not None:
        sender.plan_if_missed()
    log.info("distributed mode: polls go to queue %s for `monitor worker`s", POLL_QUEUE)
    wake = threading.Event()  # set by the workers' messages after each commit that owed an alert
    threading.Thread(target=listen_for_wakes, args=(celery, wake.set, stop), name="wake-listener", daemon=True).start()
    with build_client(settings) as client:
        push = Upkeep(settings, app_.sessions, Fetcher.from_settings(client, settings), utcnow) if settings.public_url else None
        scheduler = build_dispatcher(enqueue, now=utcnow(), sender=sender, delivery_interval=settings.delivery_interval, push=push, wake=wake)
        serve_forever(scheduler, stop)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Polls run at once (threads sharing one model).")] = 2,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """With MONITOR_BROKER_URL set: a Celery worker that runs the polls the scheduler enqueues (fetch, extract, embed, score, store)."""
    app_ = load_app(config, verbose=verbose)
    settings = app_.settings
    if not settings.broker_url:
        err.print("[red]no broker:[/] set MONITOR_BROKER_URL (redis://… or amqp://…) for `monitor worker`")
        raise typer.Exit(2)
    celery = make_celery(settings)
    sender = build_sender(app_)  # only to owe alerts in the storing transaction; the scheduler sends them, woken by a message
    with pipeline_deps(app_, sender=sender, wake=sender_waker(celery)) as deps, HostPool(deps.fetcher, settings.fetch_workers) as pages:
        deps.load_models()
        register_poll(celery, replace(deps, page_pool=pages))
        celery.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={POLL_QUEUE}",
                f"--hostname={worker_name()}",
                "--loglevel=DEBUG" if verbose else "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
            ]
        )


def print_queue_state(app_: App, console: Console) -> None:
    """The queue's depth, the feeds leased to polls, and each worker that answers, with its polls in hand."""
    state = queue_state(make_celery(app_.settings))
    with app_.sessions() as session:
        leased = leases.leased_feeds(session, now=utcnow())
    if state.waiting is None:
        console.print(f"queue {POLL_QUEUE}: the broker does not answer; feeds leased to polls: {leased}")
        return
    console.print(f"queue {POLL_QUEUE}: {state.waiting} polls waiting; feeds leased to polls: {leased}")
    workers = ", ".join(f"{name} ({busy} polling)" for name, busy in state.workers.items())
    console.print(f"workers: {len(state.workers)}" + (f": {workers}" if workers else ""))
