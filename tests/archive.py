"""A stored demo archive for the archive's tests: the real pipeline run once over the sample news site."""

from __future__ import annotations

from monitor.classify import TopicScorer
from monitor.config import Settings
from monitor.demo.server import LocalSite
from monitor.demo.site import SITE_NAME, feed_urls, load_demo_articles, site_routes
from monitor.deps import Deps
from monitor.domain import Config, FeedSpec
from monitor.fetch import Fetcher, build_client
from monitor.passes import run_pass
from monitor.store import repository as repo

from .conftest import NOW, Clock


def build_demo_archive(sessions, embedder, config: Config, settings: Settings) -> None:
    """Store the demo site's 30 articles with their stories, verdicts, tags and embeddings.

    The topic scorer is the untrained similarity-only one the pipeline tests use (no 20 s training);
    it finds all 7 on-topic demo articles relevant.
    """
    articles = load_demo_articles(NOW)
    with LocalSite() as site, build_client(settings) as client:
        site.routes.update(site_routes(articles, site.base_url))
        specs = [
            FeedSpec(name=f"{SITE_NAME} ({section})", url=url, interval=3600)
            for section, url in feed_urls(articles, site.base_url).items()
        ]
        with sessions.begin() as session:
            repo.sync_feeds(session, specs, now=NOW)
            feed_ids = repo.active_feed_ids(session)
        deps = Deps(
            settings=settings,
            sessions=sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=[TopicScorer(topic, embedder) for topic in config.topics],
            clock=Clock(NOW),
        )
        outcomes = run_pass(feed_ids, deps)
    failed = [f"{o.feed}: {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"the demo archive could not be built: {failed}")
