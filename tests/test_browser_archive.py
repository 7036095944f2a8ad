"""The archive as a person uses it: `monitor serve` on a stored demo archive, driven in Chromium.

Screenshots go to the test's tmp_path (docs/render_previews.py makes the ones of the README).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from monitor.demo.server import LocalSite, Reply
from monitor.demo.site import load_demo_articles, site_routes
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article

from .archive import build_demo_archive
from .conftest import NOW, ROOT

pytestmark = pytest.mark.browser

CANADA = "Canada orders Hikvision and Dahua cameras stripped from federal buildings"
DRONES = "Australian Defence Force bans DJI drones and orders fleet grounded"
AARHUS = "Aarhus councillors vote to stop buying Chinese-made surveillance cameras"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo_archive(tmp_path, embedder, config, settings):
    """A stored demo archive in a SQLite file, with the demo site serving its articles again at their stored address."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    build_demo_archive(sessions, embedder, config, settings)
    with sessions() as session:
        stored = urlsplit(session.scalars(select(Article.url)).first())
    engine.dispose()
    with LocalSite(port=stored.port) as site:  # the builder's site has stopped: serve it again where the links point
        site.routes.update(site_routes(load_demo_articles(NOW), site.base_url))
        yield settings.database_url, site


@pytest.fixture
def archive_server(demo_archive, tmp_path):
    database_url, _site = demo_archive
    port = _free_port()
    env = {
        **os.environ,
        "MONITOR_DATABASE_URL": database_url,
        "MONITOR_CONFIG": str(ROOT / "feeds.yaml"),
        "MONITOR_MODEL_CACHE": str(tmp_path / "models"),
        "HF_HUB_OFFLINE": "1",
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # it loads the model first: slow on a busy 2-core machine
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(base + "/api/search", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "monitor serve did not answer within 180 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_search_filter_open_a_story_and_follow_a_source(archive_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(120_000)  # the first meaning search waits for the model to load, slow on a busy machine
    page.goto(archive_server + "/")
    assert page.locator("article.hit").count() >= 5  # the newest relevant stories before any search

    page.fill("input[name=q]", "Hikvision cameras removed")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=Hikvision+cameras+removed*")
    headlines = page.locator("article.hit h2 a").all_inner_texts()
    assert CANADA in headlines and len(headlines) >= 3
    assert page.locator("article.hit mark").count() > 0
    page.screenshot(path=tmp_path / "search.png", full_page=True)

    page.click("details[data-facet=vendor] summary")
    page.check("details[data-facet=vendor] input[value=Hikvision]")
    page.click("details[data-facet=country] summary")
    page.check("details[data-facet=country] input[value=CA]")
    page.click("button.apply")
    page.wait_for_url("**vendor=Hikvision**")
    assert "country=CA" in page.url and "since=" not in page.url  # empty fields stay out of the address
    assert page.locator("article.hit h2 a").all_inner_texts() == [CANADA]
    page.screenshot(path=tmp_path / "filtered.png", full_page=True)

    page.click(f"text={CANADA}")
    page.wait_for_url("**/stories/*")
    assert page.locator("h1").inner_text() == CANADA
    assert page.locator("text=More like this").count() == 1
    page.screenshot(path=tmp_path / "story.png", full_page=True)

    source = page.locator("ol.timeline a.source").first
    href = source.get_attribute("href")
    source.click()
    page.wait_for_url(href)
    assert CANADA in page.locator("h1").first.inner_text()  # the demo site's own article page
    page.screenshot(path=tmp_path / "source.png", full_page=True)

    page.go_back()
    page.click("a.back")
    page.wait_for_url("**vendor=Hikvision**")  # back to the filtered results, not an empty search


def test_a_mixed_search_says_how_each_story_matched_and_filters_show_counts(archive_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(120_000)  # the first meaning search waits for the model to load, slow on a busy machine
    page.goto(archive_server + "/")
    assert page.locator("select[name=sort]").input_value() == "newest"  # no words: newest first, and the box says so
    assert page.locator("select[name=sort]").is_disabled() and "newest first" in page.locator("p.summary").inner_text()

    page.fill("input[name=q]", "Hikvision")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=Hikvision*")
    assert page.locator("select[name=sort]").input_value() == "best"
    hits = page.locator("article.hit")
    labels = {hits.nth(i).locator("h2").inner_text(): hits.nth(i).locator(".matched").inner_text() for i in range(hits.count())}
    assert labels[AARHUS].startswith("matched by meaning · 0.") and labels[AARHUS].endswith(" similar")  # never names Hikvision
    assert labels[CANADA].startswith("matched by words and meaning · 0.")
    assert hits.filter(has_text=AARHUS).locator("mark").count() == 0 and hits.filter(has_text=CANADA).locator("mark").count() > 0
    for snippet in page.locator("article.hit .snippet").all_inner_texts():
        assert not snippet.startswith(("World", "Business", "Tech", "Security")), snippet

    page.click("details[data-facet=vendor] summary")
    hikvision = page.locator("details[data-facet=vendor] label", has=page.locator("input[value=Hikvision]"))
    assert hikvision.locator(".count").is_visible()
    count = int(hikvision.locator(".count").inner_text())
    assert 3 <= count < int(page.locator("p.summary b").inner_text())  # Aarhus, for one, is not tagged Hikvision
    page.click("details[data-facet=country] summary")
    canada = page.locator("details[data-facet=country] label", has=page.locator("input[value=CA]"))
    assert canada.locator(".count").inner_text() == "1"
    page.screenshot(path=tmp_path / "facets.png", full_page=True)
    hikvision.locator("input").check()
    page.click("button.apply")
    page.wait_for_url("**vendor=Hikvision**")
    assert page.locator("article.hit").count() == count


def test_find_a_story_by_meaning_on_a_phone(archive_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(archive_server + "/")
    page.fill("input[name=q]", "army stops flying its unmanned aircraft made in China")
    page.select_option("select[name=mode]", "meaning")
    page.click(".box button")
    page.wait_for_url("**mode=meaning**")
    assert page.locator("article.hit h2 a").first.inner_text() == DRONES
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    page.screenshot(path=tmp_path / "phone.png", full_page=True)


def test_the_coverage_chart_draws_the_search_and_follows_its_filters(archive_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(120_000)
    refused = []  # the strict CSP reports what it blocks on the console ("Refused to apply inline style …")
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(archive_server + "/")
    chart = page.locator("figure.coverage svg.chart")
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 100
    bars = chart.locator("rect.bar")
    heights = [float(bars.nth(i).get_attribute("height")) for i in range(bars.count())]
    assert len(heights) >= 2 and sum(height > 0 for height in heights) >= 2
    assert bars.first.evaluate("bar => getComputedStyle(bar).fill") == "rgb(201, 209, 220)"  # the stylesheet applies under the CSP
    lines = chart.locator("g.series polyline")
    assert lines.count() >= 2 and lines.first.evaluate("line => getComputedStyle(line).stroke") != "none"
    total = int(page.locator("p.summary b").inner_text())
    assert page.locator("figure.coverage .legend li").first.locator("small").inner_text() == str(total)
    page.screenshot(path=tmp_path / "chart.png", full_page=True)

    page.click("details[data-facet=vendor] summary")
    page.check("details[data-facet=vendor] input[value=Hikvision]")
    page.click("button.apply")
    page.wait_for_url("**vendor=Hikvision**")
    hikvision = int(page.locator("p.summary b").inner_text())
    assert 3 <= hikvision < total
    assert page.locator("figure.coverage .legend li").first.locator("small").inner_text() == str(hikvision)
    legend = page.locator("figure.coverage .legend li", has=page.locator("a", has_text="Hikvision"))
    assert legend.locator("small").inner_text() == str(hikvision)  # every story left names Hikvision
    assert page.locator("figure.coverage g.series[data-value=Hikvision] polyline").count() == 1

    page.select_option("figure.coverage select[name=split]", "country")  # redraws at once, the filter kept
    page.wait_for_url("**split=country**")
    assert "vendor=Hikvision" in page.url
    assert page.locator("figure.coverage g.series[data-value=CA]").count() == 1
    assert page.locator("figure.coverage .legend li").first.locator("small").inner_text() == str(hikvision)
    page.screenshot(path=tmp_path / "chart-filtered.png", full_page=True)
    assert refused == []


def test_a_reader_labels_a_story_and_another_site_cannot(archive_server, browser, tmp_path):
    """The buttons work in a real browser (which sends Sec-Fetch-Site and Origin); a page on another origin that posts
    the same form to the archive is refused and labels nothing."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(archive_server + "/")
    page.click(f"text={AARHUS}")
    page.wait_for_url("**/stories/*")
    story_url = page.url
    page.fill("form.label input[name=by]", "Alice")
    page.fill("form.label input[name=note]", "a council's own plans")
    page.click("form.label button[value=not-relevant]")
    page.wait_for_url(story_url)
    assert "Marked not relevant by Alice" in page.locator(".label-given").inner_text()
    assert "not relevant to" in page.locator("article.story > p.meta").inner_text()
    page.screenshot(path=tmp_path / "labelled.png", full_page=True)
    assert AARHUS not in httpx.get(archive_server + "/api/search").text  # gone from the relevant stories

    target = archive_server + "/stories/" + story_url.rsplit("/", 1)[1].split("?")[0] + "/label"
    evil = f'<html><body><form id="f" method="post" action="{target}"><input name="verdict" value="relevant"><input name="by" value="mallory"></form><script>document.getElementById("f").submit()</script></body></html>'
    with LocalSite({"/evil.html": Reply(200, evil.encode(), {"Content-Type": "text/html"})}) as other:
        page.goto(other.url("/evil.html"))
        page.wait_for_url(target)
        assert "own pages" in page.content()
    page.goto(story_url)
    assert "Marked not relevant by Alice" in page.locator(".label-given").inner_text()  # mallory's label never landed
