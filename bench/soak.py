"""Kill -9 soak: `monitor run` over the demo site, killed at seeded random moments and restarted each time.

Reports articles lost, articles stored twice and Slack posts repeated. A post repeated after a kill between the
webhook's answer and the outbox's mark is the documented at-least-once behaviour; this measures how often it happens.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from sqlalchemy import func, select

from monitor.cli.common import build_scorers
from monitor.config import Settings, load_config
from monitor.demo.server import LocalSite, Reply, Request
from monitor.demo.site import feed_urls, load_demo_articles, site_routes
from monitor.embed import SentenceTransformerEmbedder
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Delivery

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 8
KILL_WITHIN = 60.0  # seconds after the scheduler started: loading the model, polling, storing and delivering
READY_LIMIT = 300.0  # a start (loading the model, training the topic once) must reach the scheduler by then
TIME_LIMIT = 900.0  # every round together; the settling run comes after
SETTLE_LIMIT = 300.0
READY = b"scheduler started"
SEED = 13


def soak_config(folder: Path, feeds: dict[str, str]) -> Path:
    """The shipped topics (their files found from the repository) with the demo site's feeds, polled every minute."""
    raw = yaml.safe_load((ROOT / "feeds.yaml").read_text(encoding="utf-8"))
    for topic in raw["topics"]:
        topic["training"] = [str(ROOT / path) for path in topic.get("training", [])]
        for key in ("examples", "negative_examples"):
            topic[key] = [{"file": str(ROOT / item["file"])} if isinstance(item, dict) else item for item in topic.get(key, [])]
    raw["feeds"] = [{"name": name, "url": url, "interval": "1m"} for name, url in feeds.items()]
    path = folder / "feeds.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def train_topics(config_path: Path, cache: Path) -> None:
    """The topic models trained before the rounds, as a deployed service has them: no kill lands in a training."""
    settings = Settings(config=config_path, model_cache=cache)
    embedder = SentenceTransformerEmbedder(settings.model)
    trained = [scorer.model for scorer in build_scorers(load_config(config_path), embedder, settings)]
    log.info("topic models ready: %d of them trained from labelled files", sum(model is not None for model in trained))


def start(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log_file:
        return subprocess.Popen([sys.executable, "-m", "monitor.cli", "run"], env=env, stdout=log_file, stderr=log_file, cwd=ROOT)


def wait_until_ready(process: subprocess.Popen, log_path: Path) -> bool:
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline and process.poll() is None:
        if READY in log_path.read_bytes():
            return True
        time.sleep(0.2)
    return False


def stop(process: subprocess.Popen) -> None:
    """SIGTERM and a minute to finish the work in hand, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def posted_headline(request: Request) -> str:
    """The story a Slack post carries: its notification text."""
    return json.loads(request.body or b"{}").get("text", "")


def settled(sessions, expected: int) -> bool:
    with sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Article))
        owed = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.channel == "slack", Delivery.status == "pending")
        )
    return stored >= expected and owed == 0


def main(rounds: int = ROUNDS, seed: int = SEED) -> dict:
    rng = random.Random(seed)
    articles = load_demo_articles()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, LocalSite() as site:
        folder = Path(tmp)
        site.routes.update(site_routes(articles, site.base_url))
        site.routes["/slack"] = Reply(200, b"ok", {"Content-Type": "text/plain"})
        database_url = f"sqlite:///{folder / 'monitor.db'}"
        env = {
            **os.environ,
            "MONITOR_CONFIG": str(soak_config(folder, feed_urls(articles, site.base_url))),
            "MONITOR_DATABASE_URL": database_url,
            "MONITOR_MODEL_CACHE": str(folder / "models"),
            "MONITOR_HOST_DELAY": "0",
            "MONITOR_SLACK_WEBHOOK_URL": site.url("/slack"),
            "MONITOR_DELIVERY_INTERVAL": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        train_topics(Path(env["MONITOR_CONFIG"]), Path(env["MONITOR_MODEL_CACHE"]))
        engine = make_engine(database_url)
        upgrade(engine)  # as `monitor run` does first: the store is there to be counted from the start
        sessions = session_factory(engine)
        kills = 0
        for round_number in range(rounds):
            if time.monotonic() - began > TIME_LIMIT:
                break
            log_path = folder / f"run-{round_number}.log"
            process = start(env, log_path)
            try:
                if wait_until_ready(process, log_path):
                    time.sleep(rng.uniform(0, KILL_WITHIN))
                    process.send_signal(signal.SIGKILL)
                    kills += 1
            finally:
                process.kill()
                process.wait()
        process = start(env, folder / "settle.log")  # the last run is left to finish: what is missing then is lost
        try:
            deadline = time.monotonic() + SETTLE_LIMIT
            while time.monotonic() < deadline and not settled(sessions, len(articles)):
                time.sleep(2)
        finally:
            stop(process)
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Article))
            distinct = session.scalar(select(func.count(func.distinct(Article.url))))
            sent = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.channel == "slack", Delivery.status == "sent")
            )
        engine.dispose()
        posts = Counter(posted_headline(r) for r in site.requests if r.method == "POST" and r.path == "/slack")
    expected = len(articles)  # an article two feeds list is one article
    return {
        "rounds": kills,
        "seconds": time.monotonic() - began,
        "expected": expected,
        "stored": stored,
        "lost": max(expected - distinct, 0),
        "stored_twice": stored - distinct,
        "deliveries_sent": sent,
        "posts": sum(posts.values()),
        "stories_posted": len(posts),
        "posts_repeated": sum(count - 1 for count in posts.values()),
    }


def report(result: dict) -> None:
    print(
        f"soak: {result['rounds']} kill -9s of `monitor run` within {KILL_WITHIN:.0f}s of its scheduler starting, then one run left to settle "
        f"({result['seconds']:.0f}s): {result['stored']} of {result['expected']} articles stored, "
        f"{result['lost']} lost, {result['stored_twice']} stored twice"
    )
    print(
        f"  Slack: {result['posts']} posts for {result['stories_posted']} stories "
        f"({result['deliveries_sent']} deliveries marked sent), {result['posts_repeated']} repeated after a kill"
    )


if __name__ == "__main__":
    report(main())
