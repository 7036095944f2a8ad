"""The sample news site: articles from articles.json rendered as pages and RSS feeds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from jinja2 import Environment, PackageLoader, select_autoescape

from monitor.demo.server import Reply

SITE_NAME = "The Sample Herald"
TRACKING = "utm_source=partner-feed&utm_medium=rss&utm_campaign=syndication"
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}

_templates = Environment(
    loader=PackageLoader("monitor.demo", "templates"),
    autoescape=select_autoescape(["html", "xml"]),
)


@dataclass(frozen=True)
class SiteArticle:
    slug: str
    feeds: list[str]
    title: str
    author: str
    published: datetime
    summary: str
    paragraphs: list[str]
    on_topic: bool = False


AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # the moment articles.json was written for


def load_demo_articles(now: datetime = AS_OF) -> list[SiteArticle]:
    """The sample news, dated as if read at `now`: the same hours and days before it as when it was written.

    Story windows and digests count days back from the clock, so fixed dates would age out of them.
    """
    raw = json.loads(resources.files("monitor.demo").joinpath("articles.json").read_text(encoding="utf-8"))
    shift = now - AS_OF
    return [
        SiteArticle(**{**item, "published": datetime.fromisoformat(item["published"].replace("Z", "+00:00")) + shift})
        for item in raw
    ]


def render_page(article: SiteArticle, *, url: str, related: list[SiteArticle], site_name: str = SITE_NAME) -> bytes:
    template = _templates.get_template("article.html")
    return template.render(article=article, url=url, related=related, site_name=site_name).encode("utf-8")


def render_rss(feed: str, items: list[dict], *, base_url: str, site_name: str = SITE_NAME) -> bytes:
    template = _templates.get_template("rss.xml")
    return template.render(feed=feed, items=items, base_url=base_url, site_name=site_name).encode("utf-8")


def site_routes(articles: list[SiteArticle], base_url: str, *, site_name: str = SITE_NAME) -> dict[str, Reply]:
    """Pages at /news/<slug>.html and one feed per section at /feeds/<section>.xml.

    An article listed by a second feed gets tracking parameters in that feed's link, as syndication partners do.
    """
    routes: dict[str, Reply] = {"/robots.txt": Reply(200, b"User-agent: *\nDisallow: /private/\n", {"Content-Type": "text/plain"})}
    by_feed: dict[str, list[dict]] = {}
    for index, article in enumerate(articles):
        url = f"{base_url}/news/{article.slug}.html"
        related = [articles[(index + step) % len(articles)] for step in (1, 2, 3)]
        routes[f"/news/{article.slug}.html"] = Reply(200, render_page(article, url=url, related=related, site_name=site_name), HTML)
        for position, feed in enumerate(article.feeds):
            link = url if position == 0 else f"{url}?{TRACKING}"
            by_feed.setdefault(feed, []).append({"article": article, "link": link})
    for feed, items in by_feed.items():
        items.sort(key=lambda item: item["article"].published, reverse=True)
        routes[f"/feeds/{feed}.xml"] = Reply(200, render_rss(feed, items, base_url=base_url, site_name=site_name), RSS)
    return routes


def feed_urls(articles: list[SiteArticle], base_url: str) -> dict[str, str]:
    sections = sorted({feed for article in articles for feed in article.feeds})
    return {section: f"{base_url}/feeds/{section}.xml" for section in sections}
