"""The first hour with the monitor: what start-up says, polling now, the demo's own database, offline /docs, quiet and quick commands."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from monitor.classify import Document, TopicScorer, read_labelled
from monitor.cli.common import shown_url
from monitor.domain import FeedOutcome
from monitor.specs import FeedSpec
from monitor.scheduler import PollTally, most_failed
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Feed
from monitor.topic_eval import evaluate
from monitor.web.app import create_app

from .conftest import ROOT, archive_settings
from .test_cli import monitor

COMMAND = [sys.executable, "-m", "monitor.cli"]


def files_digest(folder, *, skip: str) -> dict[str, str]:
    """Every file under folder (but the one named skip) with the SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and skip not in path.relative_to(folder).parts
    }


def sessions_of(url: str):
    engine = make_engine(url)
    upgrade(engine)
    return engine, session_factory(engine)


def test_the_demo_leaves_the_configured_database_untouched(tmp_path, model_cache):
    real = tmp_path / "real.db"
    engine, sessions = sessions_of(f"sqlite:///{real}")
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name="Real Feed", url="https://news.example.org/rss")], now=datetime.now(timezone.utc))
    engine.dispose()
    before = files_digest(tmp_path, skip="work")
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "MONITOR_DATABASE_URL": f"sqlite:///{real}",
        "MONITOR_CONFIG": str(ROOT / "feeds.yaml"),
        "MONITOR_MODEL_CACHE": str(model_cache),
    }
    demo = subprocess.run([*COMMAND, "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert files_digest(tmp_path, skip="work") == before  # not a byte changed, no journal left beside it
    assert "stored in sqlite:///data/demo.db" in demo.stdout
    assert "monitor serve --database sqlite:///data/demo.db" in demo.stdout
    assert "Context impl" not in demo.stderr and "Will assume" not in demo.stderr  # Alembic is quiet
    engine, sessions = sessions_of(f"sqlite:///{work / 'data' / 'demo.db'}")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 30
        assert "Real Feed" not in set(session.scalars(select(Feed.name)))
    engine.dispose()

    found = subprocess.run(
        [*COMMAND, "search", "Hikvision", "--mode", "words", "--json", "--database", "sqlite:///data/demo.db"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert results and all("<mark>" not in r["snippet"] and "&" not in r["snippet"] for r in results)
    assert any("Hikvision" in r["snippet"] for r in results) and all("article_id" in r for r in results)
    assert "loading embedding model" not in found.stderr  # a words search needs no model
    assert files_digest(tmp_path, skip="work") == before


def test_poll_polls_the_named_feeds_now_and_start_up_says_what_it_uses(workdir):
    tmp_path, env = workdir
    first = monitor(env, "poll", "Local News")
    assert first.returncode == 0, first.stderr
    assert "feeds ok: 1, failed: 0; new articles: 2" in first.stdout
    database = env["MONITOR_DATABASE_URL"]
    for line in ("1 feed from", f"database: {database}", "model: all-MiniLM-L6-v2", "archive: `monitor serve`", "archive links are off: set outputs.archive_url"):
        assert line in first.stderr, line
    assert "Context impl" not in first.stderr

    again = monitor(env, "poll", "local news", "Broken Feed")  # Local News is not due for an hour: polled all the same
    assert again.returncode == 0, again.stderr
    assert "feeds ok: 1, failed: 1; new articles: 0" in again.stdout
    assert "check the network" not in again.stdout  # one of two failing is the feed's fault, not the network's
    engine, sessions = sessions_of(database)
    with sessions() as session:
        polled = {feed.name: feed.last_polled_at for feed in session.scalars(select(Feed))}
    engine.dispose()
    assert all(polled.values())

    unknown = monitor(env, "poll", "No Such Feed")
    assert unknown.returncode == 2
    assert "no feed named 'No Such Feed'" in unknown.stderr and "Local News" in unknown.stderr
    assert "Context impl" not in unknown.stderr
    verbose = monitor(env, "poll", "--verbose", "No Such Feed")
    assert "Context impl" in verbose.stderr  # Alembic's lines come back on request


def test_most_feeds_failing_is_said_once_in_words(caplog):
    down = [FeedOutcome(feed=name, ok=False, error="connection refused") for name in ("A", "B", "C")]
    assert most_failed(down) == "3 of 3 feeds failed - check the network"
    assert most_failed([*down[:1], FeedOutcome(feed="D", ok=True)]) is None
    tally = PollTally(feeds=3)
    with caplog.at_level(logging.INFO, logger="monitor.scheduler"):
        for outcome in down:
            tally.record(outcome)  # the third completes the round: the summary comes at once
        assert "3 of 3 feeds failed - check the network (A: connection refused)" in caplog.text
        tally.record(FeedOutcome(feed="A", ok=True, new_articles=2, relevant=1))
        tally.record(FeedOutcome(feed="B", ok=False, error="HTTP 500"))
        tally.summarise()  # the hourly job: what was polled since
    assert "2 feeds polled: 1 ok, 1 failed (B; see `monitor status`); 2 new articles, 1 relevant" in caplog.text
    assert (tally.polls, tally.stored) == (5, 2)


def test_logs_show_the_database_without_its_password():
    assert shown_url("postgresql://monitor:s3cret@db.example.org:5432/monitor") == "postgresql://monitor:***@db.example.org:5432/monitor"


def test_docs_load_without_internet(tmp_path, embedder, config):
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    engine, sessions = sessions_of(url)
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=archive_settings(tmp_path, url))) as client:
        html = client.get("/docs").text
        assert "http://" not in html and "https://" not in html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(assets) == 3 and all(a.startswith("/static/docs/") for a in assets), assets
        for asset in assets:
            answer = client.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 1000, asset
            kind = {"js": "javascript", "css": "text/css", "png": "image/png"}[asset.rsplit(".", 1)[1]]
            assert kind in answer.headers["content-type"], asset
        assert client.get("/openapi.json").json()["paths"]["/api/search"]
    engine.dispose()


def labelled_sample(size: int) -> list:
    items = read_labelled(ROOT / "eval" / "topic_labelled.jsonl")
    return [i for i in items if i.relevant][:size] + [i for i in items if not i.relevant][:size]


def test_eval_reports_its_progress(embedder, config, model_cache, tmp_path, workdir):
    _, env = workdir
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        "".join(json.dumps({"title": i.document.title, "text": i.document.text, "relevant": i.relevant}) + "\n" for i in labelled_sample(6)),
        encoding="utf-8",
    )
    negatives = tmp_path / "negatives.jsonl"
    negatives.write_text(json.dumps({"title": "Recipe: tomato soup", "summary": "Chop and simmer."}) + "\n", encoding="utf-8")
    result = monitor(env, "eval", str(sample), "--negatives", str(negatives))
    assert result.returncode == 0, result.stderr
    assert "embedding labelled items: 12 of 12" in result.stderr and "embedding real negatives: 1 of 1" in result.stderr
    assert "topic china-surveillance-bans: 12 items" in result.stdout

    topic = config.topics[0]
    scorer = TopicScorer(topic, embedder, training=[i for p in topic.training for i in read_labelled(p)], cache_dir=model_cache)
    steps: list[tuple[str, int, int]] = []
    evaluate(scorer, labelled_sample(10), cross_validate=True, negatives=[Document("Recipe", "Soup.")], progress=lambda *s: steps.append(s))
    assert [s for s in steps if s[0] == "cross-validation folds"] == [("cross-validation folds", k, 5) for k in range(6)]
    assert ("embedding labelled items", 20, 20) in steps and ("embedding real negatives", 1, 1) in steps
