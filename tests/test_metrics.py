"""Operations: /metrics in Prometheus' format after a real pipeline pass, the queue's depth on Redis, /healthz and /readyz."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from monitor.cli.common import App, pipeline_deps
from monitor.demo.server import Reply
from monitor.deps import Timings
from monitor.metrics import PipelineMetrics, StoreCollector, broker_queue_depth, store_registry
from monitor.store import outbox
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import StoryTopic
from monitor.web.app import create_app

from .conftest import REQUIRE_POSTGRES, ROOT
from .test_pipeline import HTML, RSS, closed_port, page, pipeline, rss, run_all, sync

REDIS = "redis://127.0.0.1:6379/15"


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser: (name, sorted labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_timeout=2).ping()
    except redis.RedisError:
        if REQUIRE_POSTGRES:  # CI: the services must be there
            pytest.fail("Redis on 127.0.0.1:6379 is required here (CI) but does not answer")
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts it)")


def test_metrics_after_a_pipeline_pass(sessions, settings, embedder, config, site, now):
    site.routes.update(
        {
            "/news.xml": Reply(200, rss([("Britain orders Hikvision cameras out of ministries", site.url("/1.html"), "Removal."),
                                         ("Local bakery wins regional prize", site.url("/2.html"), "Bread.")]), RSS),
            "/1.html": Reply(200, page("Britain orders Hikvision cameras out of ministries over security fears"), HTML),
            "/2.html": Reply(200, page("Local bakery wins regional prize for sourdough"), HTML),
            "/down.xml": Reply(500, b"down", {"Content-Type": "text/plain"}),
        }
    )  # fmt: skip
    topic = config.topics[0].name
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    registry.register(StoreCollector(sessions, topics=[topic], clock=lambda: now + timedelta(seconds=90)))
    names = sync(sessions, {"News": site.url("/news.xml"), "Down": site.url("/down.xml")})
    with pipeline(sessions, settings, embedder, config) as deps:
        deps = replace(deps, clock=lambda: now, timings=Timings(observe=metrics.observe_stage), on_outcome=metrics.count_poll)
        outcomes = run_all(sessions, deps, names)
    assert outcomes["News"].relevant == 1
    with sessions.begin() as session:
        story = session.scalar(select(StoryTopic.story_id).where(StoryTopic.topic == topic, StoryTopic.relevant.is_(True)))
        outbox.owe(session, channel="slack", route="desk", topic=topic, story_id=story, due_at=now, held=False, now=now)

    app = create_app(sessions=sessions, embedder=embedder, config=config, settings=settings, metrics=registry)
    with TestClient(app) as client:
        samples = scrape(client)
    assert samples[("monitor_feed_polls_total", (("outcome", "ok"),))] == 1
    assert samples[("monitor_feed_polls_total", (("outcome", "failed"),))] == 1
    assert samples[("monitor_poll_articles_total", ())] == 2 and samples[("monitor_poll_relevant_articles_total", ())] == 1
    assert samples[("monitor_articles", ())] == 2
    assert samples[("monitor_relevant_articles", (("topic", topic),))] == 1
    assert samples[("monitor_feeds_active", ())] == 2 and samples[("monitor_feeds_failing", ())] == 1
    assert samples[("monitor_last_successful_poll_age_seconds", ())] == 90
    assert samples[("monitor_outbox_deliveries", (("channel", "slack"), ("state", "pending")))] == 1
    assert samples[("monitor_outbox_deliveries", (("channel", "slack"), ("state", "failed")))] == 0
    assert samples[("monitor_store_up", ())] == 1
    for stage in ("fetch", "parse", "extract", "embed", "score", "store"):
        assert samples[("monitor_stage_seconds_count", (("stage", stage),))] >= 1, stage
        assert samples[("monitor_stage_seconds_sum", (("stage", stage),))] == pytest.approx(deps.timings.seconds[stage])
    assert samples[("monitor_stage_seconds_count", (("stage", "fetch"),))] == 4  # two feeds, two pages
    assert not any(name == "monitor_queue_depth" for name, _ in samples)  # no broker, no queue


def test_the_queue_depth_is_read_from_the_broker(tmp_path, embedder, config, settings, now):
    redis_or_skip()
    from kombu import Connection

    queue = f"monitor.polls.test-{uuid.uuid4().hex[:8]}"
    assert broker_queue_depth(REDIS, queue) == 0  # nothing declared it yet
    with Connection(REDIS) as connection:
        waiting = connection.SimpleQueue(queue)
        for feed_id in (1, 2, 3):
            waiting.put({"feed_id": feed_id})
        try:
            assert broker_queue_depth(REDIS, queue) == 3
            engine = make_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
            upgrade(engine)
            registry = CollectorRegistry()
            registry.register(StoreCollector(session_factory(engine), topics=[], clock=lambda: now, queue_depth=lambda: broker_queue_depth(REDIS, queue)))
            with TestClient(create_app(sessions=session_factory(engine), embedder=embedder, config=config, settings=settings, metrics=registry)) as client:
                assert scrape(client)[("monitor_queue_depth", ())] == 3
        finally:
            waiting.clear()
            waiting.close()


def test_a_broker_down_leaves_the_queue_out_and_a_store_down_says_so(embedder, config, settings, now):
    sessions = session_factory(make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/monitor"))
    registry = store_registry(sessions, topics=["t"], clock=lambda: now, broker_url=f"redis://127.0.0.1:{closed_port()}/0")
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings, metrics=registry)) as client:
        samples = scrape(client)
    assert samples == {("monitor_store_up", ()): 0}


def test_health_and_readiness(tmp_path, embedder, config, settings):
    engine = make_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    sessions = session_factory(engine)
    guarded = settings.model_copy(update={"api_token": "s3cret"})
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=guarded, metrics=CollectorRegistry())) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        not_migrated = client.get("/readyz")
        assert not_migrated.status_code == 503 and "monitor migrate" in not_migrated.json()["detail"]
        upgrade(engine)
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/metrics").status_code == 200  # none of the three needs the token
        assert client.get("/api/search").status_code == 401  # the archive still does


def test_readiness_fails_when_the_database_does_not_answer(embedder, config, settings):
    sessions = session_factory(make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/monitor"))
    with TestClient(create_app(sessions=sessions, embedder=embedder, config=config, settings=settings)) as client:
        assert client.get("/healthz").status_code == 200
        unready = client.get("/readyz")
        assert unready.status_code == 503 and unready.json()["detail"].startswith("the database does not answer")
        assert client.get("/metrics").status_code == 404  # built without a registry


def test_a_polling_process_serves_its_own_metrics_on_its_port(sessions, settings, config, site):
    site.routes["/news.xml"] = Reply(200, rss([("Local bakery wins regional prize", site.url("/2.html"), "Bread.")]), RSS)
    site.routes["/2.html"] = Reply(200, page("Local bakery wins regional prize for sourdough"), HTML)
    untrained = config.model_copy(update={"topics": [t.model_copy(update={"training": []}) for t in config.topics]})
    port = closed_port()
    app = App(settings.model_copy(update={"metrics_port": port}), untrained, sessions)
    names = sync(sessions, {"News": site.url("/news.xml")})
    with pipeline_deps(app) as deps:
        run_all(sessions, deps, names)
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    samples = {s.name + str(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(response.text) for s in f.samples}
    assert samples["monitor_feed_polls_total[('outcome', 'ok')]"] == 1 and samples["monitor_poll_articles_total[]"] == 1
    assert samples["monitor_stage_seconds_count[('stage', 'embed')]"] == 1
    with pytest.raises(httpx.ConnectError):  # the server goes with the pipeline
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)


def test_the_archive_process_serves_health_and_metrics_without_its_token(tmp_path):
    port = closed_port()
    env = os.environ | {
        "MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "MONITOR_CONFIG": str(ROOT / "feeds.yaml"),
        "MONITOR_API_TOKEN": "s3cret",
        "HF_HUB_OFFLINE": "1",
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a generous start on a busy machine: this checks behaviour, not speed
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                ready = httpx.get(base + "/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "monitor serve did not answer"
                time.sleep(0.2)
        assert ready.json() == {"status": "ready"}, (tmp_path / "serve.log").read_text()
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(base + "/metrics", timeout=10).text)}
        assert families["monitor_store_up"].samples[0].value == 1 and families["monitor_articles"].samples[0].value == 0
        assert "monitor_queue_depth" not in families  # no broker set
        assert httpx.get(base + "/api/search", timeout=10).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
