"""Distributed mode: articles per second with 1, 2 and 4 `monitor worker` processes over outlets answering in 300 ms.

Beside the end-to-end rate: the fetch rate (feeds and pages fetched and extracted by as many poll threads as the
workers run, no embedding) and the embedding rate alone, which no number of workers on these two cores can raise;
and the placement cost per article (placement lock and catch-up) with two placers storing into one PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import redis
from sqlalchemy import func, select

from monitor.classify import Document, TopicScorer
from monitor.config import LOOPBACK_NETWORKS, Settings, load_config
from monitor.dedup import Deduper
from monitor.deps import Deps, Timings, utcnow
from monitor.specs import FeedSpec
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.hostpool import HostPool
from monitor.passes import run_pass
from monitor.pipeline import collect_feed
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Feed
from monitor.tasks import make_celery, queue_state

from bench import cache
from bench.newsgen import generate_articles
from bench.pipeline import embedding_rate, outlets

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379"
FEEDS, PER_FEED, LATENCY = 16, 10, 0.3
WORKERS = (1, 2, 4)
CONCURRENCY = 2  # polls per worker at once
HOST_CONCURRENCY = 4
STALL_S = 900  # a run that has not stored every article by then is broken, not slow


@contextmanager
def database():
    name = f"bench_distributed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_config(folder: Path, urls: list[str]) -> Path:
    topics = (ROOT / "feeds.yaml").read_text(encoding="utf-8").split("\ntopics:\n", 1)[1]
    topics = topics.replace("../shared/", f"{ROOT.parent / 'shared'}/").replace("eval/", f"{ROOT / 'eval'}/")
    path = folder / "feeds.yaml"
    feeds = "".join(f"  - {{name: outlet {n}, url: '{url}', interval: 1h}}\n" for n, url in enumerate(urls))
    path.write_text("feeds:\n" + feeds + "topics:\n" + topics, encoding="utf-8")
    return path


@contextmanager
def broker_database():
    """A Redis database nobody else is using (tests take them from the top), emptied afterwards."""
    for number in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        if client.setnx("monitor-bench-lock", os.getpid()):
            if client.dbsize() == 1:
                break
            client.delete("monitor-bench-lock")
    else:
        raise RuntimeError("every Redis database is in use")
    try:
        yield f"{REDIS}/{number}"
    finally:
        client.flushdb()


def distributed_pass(config: Path, workers: int, expected: int) -> dict:
    """A scheduler and `workers` worker processes over a fresh database: seconds from the first lease to the last article."""
    with database() as url, broker_database() as broker, ExitStack() as stack:
        engine = make_engine(url)
        upgrade(engine)
        stack.callback(engine.dispose)
        sessions = session_factory(engine)
        env = {
            **os.environ,
            "MONITOR_CONFIG": str(config),
            "MONITOR_DATABASE_URL": url,
            "MONITOR_BROKER_URL": broker,
            "MONITOR_HOST_DELAY": "0",
            "MONITOR_HOST_CONCURRENCY": str(HOST_CONCURRENCY),
            "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),  # the outlets are on loopback addresses
        }
        log = stack.enter_context(open(config.parent / f"workers-{workers}.log", "w"))
        command = [sys.executable, "-m", "monitor.cli"]
        processes = [subprocess.Popen([*command, "worker", "--concurrency", str(CONCURRENCY)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) for _ in range(workers)]
        stack.callback(_stop, processes)
        celery = make_celery(Settings(broker_url=broker))
        while len(queue_state(celery).workers) < workers:  # the models loaded before the clock starts
            time.sleep(1)
        processes.append(subprocess.Popen([*command, "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        while not _count(sessions, select(func.count()).select_from(Feed).where(Feed.lease_until.is_not(None))):
            time.sleep(0.1)
        start = time.perf_counter()
        while (stored := _count(sessions, select(func.count()).select_from(Article))) < expected:
            if time.perf_counter() - start > STALL_S:
                raise RuntimeError(f"{workers} worker(s) stored {stored} of {expected} articles in {STALL_S} s; see {log.name}")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    return {"workers": workers, "seconds": elapsed, "per_s": expected / elapsed}


def _count(sessions, query) -> int:
    with sessions() as session:
        return session.scalar(query) or 0


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def fetch_rate(urls: list[str], threads: int, settings: Settings, sessions) -> float:
    """Articles fetched and extracted per second by `threads` polls at once (as many as the workers run), no embedding."""
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name=f"fetch {threads} {n}", url=u) for n, u in enumerate(urls)], now=utcnow())
        feed_ids = [f.id for f in polling.feeds_overview(session) if f.name.startswith(f"fetch {threads} ")]
    with build_client(settings) as client, ThreadPoolExecutor(threads) as polls:
        fetcher = Fetcher.from_settings(client, settings)
        with HostPool(fetcher, threads * settings.fetch_workers // CONCURRENCY) as pages:
            deps = Deps(settings, sessions, fetcher, embedder=None, scorers=[], page_pool=pages)
            start = time.perf_counter()
            collected = polls.map(lambda feed_id: collect_feed(feed_id, deps), feed_ids)
            fetched = sum(len([read.result() for read in poll.reads]) for poll in collected)
            return fetched / (time.perf_counter() - start)


def placement_cost(urls: list[str], settings: Settings, embedder, scorers) -> dict:
    """Two placers (as two processes would, each with its own indexes) store half the feeds each into one PostgreSQL."""
    with database() as url:
        engine = make_engine(url)
        upgrade(engine)
        sessions = session_factory(engine)
        with sessions.begin() as session:
            polling.sync_feeds(session, [FeedSpec(name=f"outlet {n}", url=u) for n, u in enumerate(urls)], now=utcnow())
            feed_ids = polling.active_feed_ids(session)
        with build_client(settings) as client:
            placers = [
                Deps(settings, sessions, Fetcher.from_settings(client, settings), embedder, scorers, timings=Timings(), deduper=Deduper())
                for _ in range(2)
            ]
            threads = [threading.Thread(target=run_pass, args=(feed_ids[i::2], deps)) for i, deps in enumerate(placers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Article))
        engine.dispose()
    seconds = sum(deps.timings.seconds["placement lock"] for deps in placers)
    stores = sum(deps.timings.seconds["store"] for deps in placers)
    return {"articles": stored, "placement_ms": seconds / stored * 1000, "store_ms": stores / stored * 1000}


def main() -> dict:
    config_data = load_config(ROOT / "feeds.yaml")
    articles = generate_articles(FEEDS * PER_FEED, words=400, seed=11)
    settings = Settings(host_delay=0, host_concurrency=HOST_CONCURRENCY, allowed_networks=list(LOOPBACK_NETWORKS))
    embedder = SentenceTransformerEmbedder()
    texts = [Document(a.title, "\n".join([a.summary, *a.paragraphs])).for_embedding for a in articles]
    embedder.embed(texts[:8])
    before = embedding_rate(embedder, texts)
    with ExitStack() as stack:
        urls = stack.enter_context(outlets(articles, feeds=FEEDS, per_feed=PER_FEED, delay=LATENCY))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = write_config(folder, urls)
        runs = [distributed_pass(config, workers, len(articles)) for workers in WORKERS]
        embed_rate = (before + embedding_rate(embedder, texts)) / 2  # on each side of the runs: a machine whose load drifts
        with database() as url:
            engine = make_engine(url)
            upgrade(engine)
            fetches = {n: fetch_rate(urls, n * CONCURRENCY, settings, session_factory(engine)) for n in WORKERS}
            engine.dispose()
        scorers = [TopicScorer(t, embedder) for t in config_data.topics]
        placement = placement_cost(urls, settings, embedder, scorers)
    return {"articles": len(articles), "runs": runs, "fetch_per_s": fetches, "embed_per_s": embed_rate, "placement": placement}


def report(result: dict) -> None:
    print(f"distributed: {result['articles']} articles in {FEEDS} feeds, every request answered after {LATENCY * 1000:.0f} ms ({cache.machine()})")
    for run in result["runs"]:
        n = run["workers"]
        print(
            f"  {n} worker{'s' if n > 1 else ''} x {CONCURRENCY} polls: {run['per_s']:.1f} articles/s end to end ({run['seconds']:.1f}s); "
            f"fetching alone {result['fetch_per_s'][n]:.1f} articles/s"
        )
    print(f"  embedding alone {result['embed_per_s']:.1f} articles/s, measured before and after the runs (the two cores' ceiling, whatever the number of workers)")
    placement = result["placement"]
    print(
        f"  placement with two placers on PostgreSQL: {placement['placement_ms']:.2f} ms per article for the lock and catch-up "
        f"(of {placement['store_ms']:.1f} ms storing), {placement['articles']} articles"
    )


if __name__ == "__main__":
    report(main())
