"""Renders docs/digest.png, docs/digest-phone.png and docs/slack.png from sample stories, and docs/archive.png and
docs/story.png from the demo site's articles run through the real pipeline and served by the archive; with Debian's Chromium.

Run: .venv/bin/python docs/render_previews.py   (offline; needs /usr/bin/chromium; flags need an emoji font, e.g. fonts-noto-color-emoji)
"""

from __future__ import annotations

import html
import os
import re
import socket
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import uvicorn  # noqa: E402

from monitor.cli.common import build_scorers  # noqa: E402
from monitor.config import LOOPBACK_NETWORKS, Settings, load_config  # noqa: E402
from monitor.demo.server import LocalSite  # noqa: E402
from monitor.demo.site import SITE_NAME, feed_urls, load_demo_articles, site_routes  # noqa: E402
from monitor.deps import Deps  # noqa: E402
from monitor.domain import FeedSpec, Source, StoryView  # noqa: E402
from monitor.embed import SentenceTransformerEmbedder  # noqa: E402
from monitor.fetch import Fetcher, build_client  # noqa: E402
from monitor.labels import spike_sentence  # noqa: E402
from monitor.notify.digest import build_digest  # noqa: E402
from monitor.notify.slack import alert_message, batch_message, spike_message  # noqa: E402
from monitor.passes import run_pass  # noqa: E402
from monitor.store import repository as repo  # noqa: E402
from monitor.store.db import make_engine, session_factory, upgrade  # noqa: E402
from monitor.web.app import create_app  # noqa: E402

DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
NOW = datetime(2026, 11, 19, 7, 0, tzinfo=timezone.utc)
ARCHIVE = "https://monitor.example.org"
TOPIC_TITLE = "Bans on Chinese surveillance technology"
CANADA = "Canada orders Hikvision and Dahua cameras stripped from federal buildings"


def _story(story_id, title, outlets, *, hours_ago, score, vendors, countries, actions, summary, why) -> StoryView:
    published = NOW - timedelta(hours=hours_ago)
    sources = [
        Source(article_id=story_id * 10 + i, outlet=outlet, title=headline or title, url=url, published=published + timedelta(minutes=37 * i))
        for i, (outlet, url, headline) in enumerate(outlets)
    ]
    return StoryView(
        id=story_id, topic="china-surveillance-bans", title=title, url=sources[0].url, outlet=sources[0].outlet,
        published=published, first_seen=published, relevant_since=published, score=score, relevant=True,
        vendors=vendors, countries=countries, actions=actions, why=why, summary=summary, sources=sources,
    )  # fmt: skip


def sample_stories() -> list[StoryView]:
    return [
        _story(
            41, "FCC extends ban on Hikvision, Dahua and Hytera gear to parts hidden inside other brands' devices",
            [("Reuters", "https://www.reuters.com/technology/fcc-extends-ban-camera-modules-2026-11-18/", None),
             ("The Record", "https://therecord.media/fcc-covered-list-components-hikvision-dahua?utm_source=rss&utm_medium=feed", "FCC closes the 'white label' loophole for banned Chinese cameras"),
             ("IPVM", "https://ipvm.com/reports/fcc-components", "FCC Covered List now reaches modules and OEM boards"),
             ("Light Reading", "https://www.lightreading.com/security/fcc-extends-ban", None)],
            hours_ago=14, score=0.99, vendors=["Hikvision", "Dahua", "Hytera"], countries=["US"], actions=["ban"],
            summary="WASHINGTON — The Federal Communications Commission voted on Tuesday to extend its ban on equipment from Hikvision, Dahua and Hytera to camera modules and boards sold inside devices that carry other companies' brands.",
            why={"action_phrases": ["ban", "bar"], "vendor_phrases": ["Hikvision", "Dahua", "Hytera"],
                 "closest_example": "example 4: The FCC added Hikvision and Dahua video surveillance equipment to its Covered List, barring…"},
        ),
        _story(
            42, "Canada orders Hikvision and Dahua cameras stripped from federal buildings",
            [("CBC News", "https://www.cbc.ca/news/politics/hikvision-dahua-federal-buildings-1.7400001", None),
             ("The Globe and Mail", "https://www.theglobeandmail.com/politics/article-federal-cameras-removal/", "Ottawa gives departments 18 months to rip out Chinese-made cameras")],
            hours_ago=11, score=0.97, vendors=["Hikvision", "Dahua"], countries=["CA"], actions=["removal"],
            summary="OTTAWA — The Canadian government on Wednesday ordered all federal departments and agencies to remove video surveillance equipment made by Hikvision and Dahua within 18 months, citing risks to sensitive sites and government data.",
            why={"action_phrases": ["stripped", "remove", "disconnect"], "vendor_phrases": ["Hikvision", "Dahua"],
                 "closest_example": "example 8: An investigation found hundreds of Chinese-made cameras on military bases and in government buildings…"},
        ),
        _story(
            43, "Australian Defence Force grounds its DJI drones and bans new purchases",
            [("ABC News (AU)", "https://www.abc.net.au/news/2026-11-18/adf-grounds-dji-drones/104600000", None)],
            hours_ago=20, score=0.97, vendors=["DJI"], countries=["AU"], actions=["ban"],
            summary="CANBERRA — The Australian Defence Force has grounded its fleet of drones made by Chinese manufacturer DJI and banned further purchases while it reviews how flight data is stored.",
            why={"action_phrases": ["grounded", "bans"], "vendor_phrases": ["DJI"],
                 "closest_example": "example 5: The defence ministry grounded its fleet of DJI drones and banned the purchase of…"},
        ),
        _story(
            44, "Aarhus councillors vote to stop buying Chinese-made surveillance cameras",
            [("The Local Denmark", "https://www.thelocal.dk/20261118/aarhus-cameras", None),
             ("Computerworld DK", "https://www.computerworld.dk/art/290001/aarhus-kameraer", "Aarhus dropper kinesiske overvågningskameraer")],
            hours_ago=30, score=0.93, vendors=[], countries=["DK"], actions=["procurement_restriction"],
            summary="Denmark's second city will no longer buy surveillance cameras from Chinese manufacturers after councillors backed a proposal to write the restriction into the city's procurement rules.",
            why={"action_phrases": ["stop buying"], "subject_phrases": ["Chinese-made surveillance cameras"],
                 "closest_example": "example 12: The council voted to exclude Chinese camera makers from future tenders…"},
        ),
        _story(
            45, "EU lawmakers call for Huawei and ZTE to be barred from the bloc's 5G networks",
            [("Politico Europe", "https://www.politico.eu/article/eu-lawmakers-huawei-zte-5g-ban/", None)],
            hours_ago=9, score=0.88, vendors=["Huawei", "ZTE"], countries=["EU"], actions=["call_for_ban"],
            summary="BRUSSELS — A cross-party group of members of the European Parliament urged the Commission to make its 5G security toolbox binding and exclude Huawei and ZTE from every member state's networks.",
            why={"action_phrases": ["barred", "exclude"], "vendor_phrases": ["Huawei", "ZTE"],
                 "closest_example": "example 3: Lawmakers urged the government to ban Huawei equipment from…"},
        ),
    ]


def _mrkdwn(text: str) -> str:
    """Slack mrkdwn to HTML, enough for a preview: the text is already &-escaped the way HTML wants."""
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<([^|<>]+)\|([^<>]*)>", r'<a href="\1">\2</a>', text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", text)
    return text.replace("\n", "<br>")


def _block_html(block: dict) -> str:
    kind = block["type"]
    if kind == "header":
        return f'<div class="header">{html.escape(block["text"]["text"])}</div>'
    if kind == "section":
        return f'<div class="section">{_mrkdwn(block["text"]["text"])}</div>'
    if kind == "context":
        return '<div class="context">' + "".join(f"<span>{_mrkdwn(e['text'])}</span>" for e in block["elements"]) + "</div>"
    if kind == "actions":
        return '<div class="actions">' + "".join(f'<a class="button" href="{html.escape(e["url"])}">{html.escape(e["text"]["text"])}</a>' for e in block["elements"]) + "</div>"
    return ""


SLACK_CSS = """
body { margin: 0; background: #fff; font: 15px/1.46 'Liberation Sans', Arial, sans-serif; color: #1d1c1d; }
.channel { padding: 10px 20px; border-bottom: 1px solid #e8e8e8; font-weight: 700; font-size: 17px; }
.message { display: flex; gap: 10px; padding: 12px 20px 14px; }
.message + .message { border-top: 1px solid #f0f0f0; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; background: #a4262c; color: #fff; font-weight: 700; text-align: center; line-height: 36px; }
.name { font-weight: 700; } .app { font-size: 10px; background: #e8e8e8; color: #616061; padding: 1px 4px; border-radius: 3px; margin: 0 4px; }
.time { color: #616061; font-size: 12px; }
.header { font-size: 18px; font-weight: 900; margin: 4px 0; }
.section { margin: 8px 0 4px; } .section a { color: #1264a3; text-decoration: none; }
.context { color: #616061; font-size: 13px; margin: 4px 0; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.context a { color: #1264a3; text-decoration: none; }
.actions { margin: 8px 0 2px; } .button { display: inline-block; border: 1px solid #bbbabb; border-radius: 4px; padding: 3px 12px; font-weight: 700; font-size: 13px; color: #1d1c1d; text-decoration: none; }
"""


def slack_preview(messages: list[tuple[str, list[dict]]]) -> str:
    """A Slack-like page of messages made from their blocks."""
    body = "".join(
        f'<div class="message"><div class="avatar">M</div><div><div><span class="name">monitor</span><span class="app">APP</span>'
        f'<span class="time">{when}</span></div>{"".join(_block_html(block) for block in blocks)}</div></div>'
        for when, (_, blocks) in zip(["07:12", "07:31", "07:40"], messages)
    )
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{SLACK_CSS}</style></head><body><div class="channel"># surveillance-bans</div>{body}</body></html>'


def shoot(page, content: str, path: Path, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 600})
    page.set_content(content, wait_until="load")
    page.screenshot(path=str(path), full_page=True, type="png")
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")


def demo_archive(folder: Path) -> Settings:
    """The demo site's articles through the real pipeline (the trained topic model included) into a SQLite file in folder."""
    settings = Settings(
        database_url=f"sqlite:///{folder / 'monitor.db'}", model_cache=ROOT / "data" / "models", host_delay=0.0,
        allowed_networks=list(LOOPBACK_NETWORKS),  # the sample site is served from this machine, which the address guard refuses otherwise
    )
    config = load_config(ROOT / "feeds.yaml")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    embedder = SentenceTransformerEmbedder(settings.model)
    articles = load_demo_articles()
    with LocalSite() as site, build_client(settings) as client:
        site.routes.update(site_routes(articles, site.base_url))
        specs = [FeedSpec(name=f"{SITE_NAME} ({section})", url=url, interval=3600) for section, url in feed_urls(articles, site.base_url).items()]
        with sessions.begin() as session:
            repo.sync_feeds(session, specs, now=datetime.now(timezone.utc))
            feed_ids = repo.active_feed_ids(session)
        deps = Deps(settings=settings, sessions=sessions, fetcher=Fetcher.from_settings(client, settings), embedder=embedder,
                    scorers=build_scorers(config, embedder, settings))  # fmt: skip
        run_pass(feed_ids, deps)
    return settings


def serve_archive(settings: Settings) -> tuple[uvicorn.Server, str]:
    """The archive on a free loopback port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sessions = session_factory(make_engine(settings.database_url))
    app = create_app(sessions=sessions, embedder=SentenceTransformerEmbedder(settings.model), config=load_config(ROOT / "feeds.yaml"), settings=settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def shoot_archive(browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(base + "/?q=Hikvision")
    page.click("details[data-facet=vendor] summary")
    page.click("details[data-facet=country] summary")
    page.screenshot(path=str(DOCS / "archive.png"), full_page=True)
    print(f"docs/archive.png: {(DOCS / 'archive.png').stat().st_size // 1024} KB")
    page.click(f"text={CANADA}")
    page.wait_for_url("**/stories/*")
    page.screenshot(path=str(DOCS / "story.png"), full_page=True)
    print(f"docs/story.png: {(DOCS / 'story.png').stat().st_size // 1024} KB")
    page.close()


def main() -> None:
    stories = sample_stories()
    spike = spike_sentence("Hikvision", 9, 1.2, date(2026, 11, 18), date(2026, 11, 19))
    digest = build_digest(
        stories, day=date(2026, 11, 19), topic="china-surveillance-bans", now=NOW, archive_url=ARCHIVE, timezone="Europe/London", title=TOPIC_TITLE,
        spikes=[spike],
    )
    alert = alert_message(stories[1], archive_url=ARCHIVE, topic=TOPIC_TITLE)
    batch = batch_message(stories[2:5], archive_url=ARCHIVE, topic=TOPIC_TITLE, heading="3 new stories")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        shoot(page, digest.html, DOCS / "digest.png", 800)
        shoot(page, digest.html, DOCS / "digest-phone.png", 390)
        wave = spike_message(
            spike_sentence("Hikvision", 9, 1.2, date(2026, 11, 19), date(2026, 11, 19)), topic=TOPIC_TITLE,
            archive_link=f"{ARCHIVE}/?vendor=Hikvision&since=2026-11-19&until=2026-11-19",
        )
        shoot(page, slack_preview([alert, batch, wave]), DOCS / "slack.png", 720)
        server, base = serve_archive(demo_archive(Path(folder)))
        try:
            shoot_archive(browser, base)
        finally:
            server.should_exit = True
        browser.close()


if __name__ == "__main__":
    main()
