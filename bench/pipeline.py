"""End-to-end throughput of one pass over 50 generated outlets x 40 articles, and over 20 outlets serving the real news
pages of ../shared (about 280, 170 KB each), with and without the politeness delay, beside embedding alone.

`python -m bench.pipeline FEEDS PER_FEED` runs a smaller generated one.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

from monitor.classify import Document, TopicScorer
from monitor.config import LOOPBACK_NETWORKS, Settings, load_config
from monitor.demo.server import LocalSite, Reply
from monitor.demo.site import HTML, SiteArticle, site_routes
from monitor.deps import Deps, Timings, utcnow
from monitor.extract import extract
from monitor.specs import FeedSpec
from monitor.embed import SentenceTransformerEmbedder
from monitor.fetch import Fetcher, build_client
from monitor.passes import run_pass
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade

from bench import cache
from bench.newsgen import generate_articles

ROOT = Path(__file__).resolve().parents[1]
EXTRACTION = ROOT.parent / "shared" / "data" / "extraction"
FEEDS, PER_FEED = 50, 40
REAL_FEEDS = 20


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_pages() -> list[tuple[SiteArticle, bytes]]:
    """The real news pages of ../shared, each listed under its own <title>; empty where ../shared is absent."""
    files = sorted(EXTRACTION.glob("*/html/*.gz"))
    now, pages = utcnow(), []
    for path in files:
        html = gzip.decompress(path.read_bytes())
        title = re.search(rb"<title[^>]*>(.*?)</title>", html, re.S | re.I)
        name = title.group(1).decode("utf-8", "replace").strip() if title else path.name
        article = SiteArticle(path.name.split(".html")[0], ["news"], " ".join(name.split())[:200], "", now, "", [])
        pages.append((article, html))
    return pages


def _serve_sites(articles, pages, ready, stop, feeds: int, per_feed: int, delay: float) -> None:
    """The outlets, one per loopback address, in a process of their own as real sites would be; an article found in
    `pages` is served as that real page instead of the rendered one."""
    with ExitStack() as stack:
        urls = []
        for index in range(feeds):
            site = stack.enter_context(LocalSite(host=f"127.0.0.{10 + index}", delay=delay))
            chunk = [a.__class__(**{**a.__dict__, "feeds": ["news"]}) for a in articles[index * per_feed : (index + 1) * per_feed]]
            site.routes.update(site_routes(chunk, site.base_url, site_name=f"Outlet {index}"))
            for article in chunk:
                if article.slug in pages:
                    site.routes[f"/news/{article.slug}.html"] = Reply(200, pages[article.slug], HTML)
            urls.append(f"{site.base_url}/feeds/news.xml")
        ready.put(urls)
        stop.wait()


@contextmanager
def outlets(articles, *, feeds: int = FEEDS, per_feed: int = PER_FEED, delay: float = 0.0, pages: dict | None = None):
    """The feed URLs of `feeds` outlets of `per_feed` articles each, answering each request after `delay` seconds."""
    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve_sites, args=(articles, pages or {}, ready, stop, feeds, per_feed, delay), daemon=True)
    process.start()
    try:
        yield ready.get(timeout=120)
    finally:
        stop.set()
        process.join(timeout=10)


def one_pass(urls: list[str], embedder, topics, settings: Settings) -> tuple[int, float, Timings]:
    """A first pass over every outlet into an empty store: (articles stored, seconds, stage timings)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"database_url": f"sqlite:///{tmp}/bench.db"})
        engine = make_engine(settings.database_url)
        upgrade(engine)
        sessions = session_factory(engine)
        specs = [FeedSpec(name=f"outlet-{index}", url=url) for index, url in enumerate(urls)]
        with sessions.begin() as session:
            polling.sync_feeds(session, specs, now=utcnow())
            feed_ids = polling.active_feed_ids(session)
        timings = Timings()
        with build_client(settings) as client:
            deps = Deps(
                settings=settings,
                sessions=sessions,
                fetcher=Fetcher.from_settings(client, settings),
                embedder=embedder,
                scorers=[TopicScorer(t, embedder) for t in topics],
                timings=timings,
            )
            deps.scorers[0].score([], embedder.embed([]))  # topic examples embedded before the clock starts
            start = time.perf_counter()
            outcomes = run_pass(feed_ids, deps)
            elapsed = time.perf_counter() - start
        engine.dispose()
    return sum(o.new_articles for o in outcomes), elapsed, timings


def main(feeds: int = FEEDS, per_feed: int = PER_FEED) -> dict:
    """The passes without a politeness delay and with the default one (each outlet on its own address), beside
    embedding alone: over generated outlets, then over the real pages where ../shared has them."""
    config = load_config(ROOT / "feeds.yaml")
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    articles = generate_articles(feeds * per_feed)
    texts = [Document(a.title, "\n".join([a.summary, *a.paragraphs])).for_embedding for a in articles]
    result = {"feeds": feeds, "runs": _passes(embedder, config.topics, articles, texts, feeds=feeds, per_feed=per_feed)}
    pages = real_pages()
    if pages:
        extracted = [(article, extract(html, url=f"https://example.com/{article.slug}")) for article, html in pages]
        texts = [Document(a.title, found.text).for_embedding for a, found in extracted if found]
        result["real"] = {"pages": len(pages), "feeds": REAL_FEEDS, "runs": _passes(
            embedder, config.topics, [article for article, _ in pages], texts, feeds=REAL_FEEDS,
            per_feed=-(-len(pages) // REAL_FEEDS), pages={article.slug: html for article, html in pages}, sample=len(texts),
        )}
    result["peak_memory_mb"] = peak_memory_mb()
    return result


def _passes(embedder, topics, articles, texts, *, feeds: int, per_feed: int, pages: dict | None = None, sample: int = 400) -> dict:
    ours = {"allowed_networks": list(LOOPBACK_NETWORKS)}
    default = Settings(**ours)
    runs = {}
    with outlets(articles, feeds=feeds, per_feed=per_feed, pages=pages) as urls:
        for name, run in (
            ("no delay", lambda: _in_process(urls, embedder, topics, Settings(host_delay=0, host_concurrency=4, **ours))),
            (f"default delay {default.host_delay:g}s", lambda: _in_process(urls, embedder, topics, default)),
            (f"monitor run --once, default delay {default.host_delay:g}s", lambda: command_pass(urls)),
        ):
            before = embedding_rate(embedder, texts, sample)
            stored, elapsed, details = run()
            alone = (before + embedding_rate(embedder, texts, sample)) / 2  # on each side of the pass: a machine whose load drifts
            runs[name] = {
                "articles": stored,
                "elapsed_s": elapsed,
                "end_to_end_per_s": stored / elapsed,
                "embedding_alone_per_s": alone,
                "ratio": stored / elapsed / alone,
                **details,
            }
    return runs


def _in_process(urls: list[str], embedder, topics, settings: Settings) -> tuple[int, float, dict]:
    """one_pass, with each stage's share of the thread-seconds."""
    stored, elapsed, timings = one_pass(urls, embedder, topics, settings)
    total_stage = sum(timings.seconds.values())
    return stored, elapsed, {"stage_share": {k: v / total_stage for k, v in timings.seconds.items()}}


PASS_LINE = re.compile(r"new articles: (\d+);.*the pass took ([\d.]+) s: [\d.]+ new articles per second \(the models loaded before it, in ([\d.]+) s\)", re.S)


def command_pass(urls: list[str]) -> tuple[int, float, dict]:
    """`monitor run --once` over the outlets as a user runs it, in a process of its own: a fresh SQLite store, the
    repository's topics with their trained classifiers, the default settings. (new articles, the pass's seconds, the
    models' loading seconds) as its summary prints them."""
    config = yaml.safe_load((ROOT / "feeds.yaml").read_text(encoding="utf-8"))
    for topic in config["topics"]:
        topic["training"] = [str(ROOT / path) for path in topic.get("training", [])]
    config["feeds"] = [{"name": f"outlet-{index}", "url": url} for index, url in enumerate(urls)]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "feeds.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {
            **os.environ,
            "MONITOR_CONFIG": f"{tmp}/feeds.yaml",
            "MONITOR_DATABASE_URL": f"sqlite:///{tmp}/monitor.db",
            "MONITOR_ALLOWED_NETWORKS": ",".join(LOOPBACK_NETWORKS),
            "MONITOR_MODEL_CACHE": str(cache.folder() / "models"),  # the topic's classifier trained once, then reused
        }
        done = subprocess.run([sys.executable, "-m", "monitor.cli", "run", "--once"], env=env, capture_output=True, text=True, check=False)
    found = PASS_LINE.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"monitor run --once failed ({done.returncode}): {done.stdout[-800:]} {done.stderr[-1500:]}")
    return int(found.group(1)), float(found.group(2)), {"loading_s": float(found.group(3))}


def embedding_rate(embedder, texts: list[str], sample: int = 400) -> float:
    """Articles per second of the model alone over a sample of the pass's texts."""
    start = time.perf_counter()
    embedder.embed(texts[:sample])
    return min(sample, len(texts)) / (time.perf_counter() - start)


def report(result: dict) -> None:
    print(f"pipeline: {result['feeds']} generated outlets, each on its own loopback address ({cache.machine()})")
    _report_runs(result["runs"])
    if "real" in result:
        real = result["real"]
        print(f"  the {real['pages']} real news pages of ../shared/data/extraction from {real['feeds']} outlets:")
        _report_runs(real["runs"])
    else:
        print("  real pages: skipped, ../shared/data/extraction is absent")
    print(f"  peak memory {result['peak_memory_mb']:.0f} MB")


def _report_runs(runs: dict) -> None:
    for name, run in runs.items():
        print(
            f"  {name:20} {run['articles']} articles in {run['elapsed_s']:.1f}s: {run['end_to_end_per_s']:.1f} articles/s, "
            f"ratio {run['ratio']:.0%} of embedding alone ({run['embedding_alone_per_s']:.1f}/s, measured on each side of the pass; goal >= 80%)"
        )
        if "loading_s" in run:
            print(f"    the product's own path, in a process of its own; its models loaded before the pass, in {run['loading_s']:.1f}s")
            continue
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(run["stage_share"].items(), key=lambda kv: -kv[1]))
        print(f"    stage time shares (thread-seconds): {shares}")


if __name__ == "__main__":
    import sys

    report(main(*map(int, sys.argv[1:3])))
