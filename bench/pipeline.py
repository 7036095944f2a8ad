"""End-to-end throughput of one pass over a generated site of 50 feeds x 40 articles, beside embedding alone."""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from monitor.classify import Document, TopicScorer
from monitor.config import LOOPBACK_NETWORKS, FeedSpec, Settings, load_config
from monitor.demo.server import LocalSite
from monitor.demo.site import site_routes
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.pipeline import Deps, Timings, run_pass, utcnow
from monitor.store import repository as repo
from monitor.store.db import make_engine, session_factory, upgrade

from bench.newsgen import generate_articles

ROOT = Path(__file__).resolve().parents[1]
FEEDS, PER_FEED = 50, 40


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve_sites(articles, ready, stop, feeds: int, per_feed: int, delay: float) -> None:
    """The outlets, one per loopback address, in a process of their own as real sites would be."""
    with ExitStack() as stack:
        urls = []
        for index in range(feeds):
            site = stack.enter_context(LocalSite(host=f"127.0.0.{10 + index}", delay=delay))
            chunk = [a.__class__(**{**a.__dict__, "feeds": ["news"]}) for a in articles[index * per_feed : (index + 1) * per_feed]]
            site.routes.update(site_routes(chunk, site.base_url, site_name=f"Outlet {index}"))
            urls.append(f"{site.base_url}/feeds/news.xml")
        ready.put(urls)
        stop.wait()


@contextmanager
def outlets(articles, *, feeds: int = FEEDS, per_feed: int = PER_FEED, delay: float = 0.0):
    """The feed URLs of `feeds` outlets of `per_feed` articles each, answering each request after `delay` seconds."""
    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve_sites, args=(articles, ready, stop, feeds, per_feed, delay), daemon=True)
    process.start()
    try:
        yield ready.get(timeout=120)
    finally:
        stop.set()
        process.join(timeout=10)


def main() -> dict:
    config = load_config(ROOT / "feeds.yaml")
    articles = generate_articles(FEEDS * PER_FEED)
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db", host_delay=0, host_concurrency=4, allowed_networks=list(LOOPBACK_NETWORKS)
        )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = session_factory(engine)
        urls = stack.enter_context(outlets(articles))
        specs = [FeedSpec(name=f"outlet-{index}", url=url) for index, url in enumerate(urls)]
        with sessions.begin() as session:
            repo.sync_feeds(session, specs, now=utcnow())
            feed_ids = repo.active_feed_ids(session)
        client = stack.enter_context(build_client(settings))
        timings = Timings()
        deps = Deps(
            settings=settings,
            sessions=sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=[TopicScorer(t, embedder) for t in config.topics],
            timings=timings,
        )
        deps.scorers[0].score([], embedder.embed([]))  # topic examples embedded before the clock starts
        start = time.perf_counter()
        outcomes = run_pass(feed_ids, deps)
        elapsed = time.perf_counter() - start
        stored = sum(o.new_articles for o in outcomes)
        texts = [Document(a.title, "\n".join([a.summary, *a.paragraphs])).for_embedding for a in articles]
        start = time.perf_counter()
        embedder.embed(texts)
        embed_alone = time.perf_counter() - start
        engine.dispose()
    total_stage = sum(timings.seconds.values())
    result = {
        "articles": stored,
        "end_to_end_per_s": stored / elapsed,
        "embedding_alone_per_s": len(texts) / embed_alone,
        "stage_seconds": dict(timings.seconds),
        "stage_share": {k: v / total_stage for k, v in timings.seconds.items()},
        "peak_memory_mb": peak_memory_mb(),
        "elapsed_s": elapsed,
    }
    result["ratio"] = result["end_to_end_per_s"] / result["embedding_alone_per_s"]
    return result


def report(result: dict) -> None:
    print(f"pipeline: {result['articles']} articles from {FEEDS} feeds in {result['elapsed_s']:.1f}s")
    print(f"  end to end      {result['end_to_end_per_s']:.1f} articles/s")
    print(f"  embedding alone {result['embedding_alone_per_s']:.1f} articles/s  (ratio {result['ratio']:.0%}, goal >= 80%)")
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(result["stage_share"].items(), key=lambda kv: -kv[1]))
    print(f"  stage time shares (thread-seconds): {shares}")
    print(f"  peak memory {result['peak_memory_mb']:.0f} MB")


if __name__ == "__main__":
    report(main())
