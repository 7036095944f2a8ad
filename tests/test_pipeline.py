"""The real pipeline over local sites: demo news, faults, and second runs that store nothing twice."""

from __future__ import annotations

import ipaddress
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from monitor.classify import TopicScorer
from monitor.demo.server import LocalSite, Reply
from monitor.demo.site import feed_urls, load_demo_articles, site_routes
from monitor.deps import Deps, Timings
from monitor.specs import FeedSpec
from monitor.fetch import Fetcher, build_client
from monitor.passes import run_pass
from monitor.pipeline import store_failure
from monitor.store import polling
from monitor.store.db import make_engine, session_factory, upgrade
from monitor.store.models import Article, Feed, FetchFailure
from monitor.store.views import export_rows
from monitor.times import backoff_delay

from .conftest import NOW, Clock

RSS = {"Content-Type": "application/rss+xml"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


@contextmanager
def pipeline(sessions, settings, embedder, config, clock: Clock | None = None):
    with build_client(settings) as client:
        yield Deps(
            settings=settings,
            sessions=sessions,
            fetcher=Fetcher.from_settings(client, settings),
            embedder=embedder,
            scorers=[TopicScorer(t, embedder) for t in config.topics],
            clock=clock or Clock(),
        )


def sync(sessions, feeds: dict[str, str], now: datetime = NOW) -> dict[str, int]:
    with sessions.begin() as session:
        polling.sync_feeds(session, [FeedSpec(name=n, url=u, interval=3600) for n, u in feeds.items()], now=now)
    with sessions() as session:
        return {f.name: f.id for f in polling.feeds_overview(session)}


def run_all(sessions, deps, names: dict[str, int]):
    return {o.feed: o for o in run_pass(list(names.values()), deps)}


def count_articles(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Article))


def rss(items: list[tuple[str, str, str]], published: datetime = NOW - timedelta(hours=26)) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><description>{summary}</description>"
        f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate></item>"
        for title, link, summary in items
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def page(title: str, words: int = 250) -> bytes:
    paragraphs = "".join(
        f"<p>{title} paragraph {i}: officials said the measure would be reviewed by ministers later this year "
        f"after consultation with industry and regional authorities.</p>"
        for i in range(max(1, words // 20))
    )
    return f"<html><head><title>{title}</title></head><body><nav>Home | World</nav><article><h1>{title}</h1>{paragraphs}</article></body></html>".encode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_site_end_to_end(sessions, settings, embedder, config):
    articles = load_demo_articles(NOW)
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        site.routes.update(site_routes(articles, site.base_url))
        names = sync(sessions, feed_urls(articles, site.base_url))
        outcomes = run_all(sessions, deps, names)
        assert all(o.ok for o in outcomes.values())
        assert count_articles(sessions) == len(articles)  # the republished article is stored once

        second = run_all(sessions, deps, names)
        assert sum(o.new_articles for o in second.values()) == 0
        assert count_articles(sessions) == len(articles)

    rows = {r["url"].rsplit("/", 1)[-1]: r for r in _export(sessions, config)}
    assert all(r["text_source"] == "page" for r in rows.values())
    on_topic = {f"{a.slug}.html" for a in articles if a.on_topic}
    found = {name for name, r in rows.items() if r["relevant"]}
    assert on_topic <= found, f"missed on-topic articles: {on_topic - found}"
    syndicated = [a for a in articles if len(a.feeds) > 1][0]
    assert "utm_source" not in rows[f"{syndicated.slug}.html"]["url"]


def _export(sessions, config):
    with sessions() as session:
        return list(export_rows(session, topic=config.topics[0].name))


def test_faults_are_reported_and_the_rest_is_processed(sessions, settings, embedder, config):
    settings = settings.model_copy(update={"read_timeout": 3.0, "max_page_bytes": 200_000})
    refused = f"http://127.0.0.1:{closed_port()}/story.html"
    latin1 = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Caf\xe9</title>'
        "<item><title>D\xe9put\xe9s d\xe9battent</title><link>/latin/1.html</link><description>r\xe9sum\xe9</description></item>"
        "</channel></rss>"
    ).encode("latin-1")

    def slow(_request):
        time.sleep(6)
        return Reply(200, rss([]), RSS)

    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        good_items = [
            ("Good story one", site.url("/good/1.html"), "First summary."),
            ("Good story two", site.url("/good/2.html?utm_source=rss"), "Second summary."),
            ("Refused host", refused, "The summary of a story whose host refuses connections."),
            ("Huge page", site.url("/good/huge.html"), "The summary of a huge page."),
            ("Binary page", site.url("/good/file.pdf"), "The summary of a PDF."),
        ]
        site.routes.update(
            {
                "/good.xml": Reply(200, rss(good_items), RSS),
                "/good/1.html": Reply(200, page("Good story one"), HTML),
                "/good/2.html": Reply(200, page("Good story two"), HTML),
                "/good/huge.html": Reply(200, b"<html><body>" + b"<p>word </p>" * 100_000 + b"</body></html>", HTML),
                "/good/file.pdf": Reply(200, b"%PDF-1.7\x00\x01\x02" * 100, {"Content-Type": "application/pdf"}),
                "/slow.xml": slow,
                "/missing.xml": Reply(404, b"gone", {"Content-Type": "text/plain"}),
                "/broken.xml": Reply(500, b"oops", {"Content-Type": "text/plain"}),
                "/html.xml": Reply(200, b"<!doctype html><html><body><h1>Welcome</h1></body></html>", HTML),
                "/latin1.xml": Reply(200, latin1, {"Content-Type": "application/xml"}),
                "/latin/1.html": Reply(200, page("Latin one"), HTML),
                "/loop.xml": Reply(302, b"", {"Location": "/loop2.xml"}),
                "/loop2.xml": Reply(302, b"", {"Location": "/loop.xml"}),
                "/busy.xml": Reply(429, b"slow down", {"Retry-After": "3600"}),
            }
        )
        feeds = {name: site.url(f"/{name}.xml") for name in ("good", "slow", "missing", "broken", "html", "latin1", "loop", "busy")}
        names = sync(sessions, feeds)
        outcomes = run_all(sessions, deps, names)

        assert outcomes["good"].ok and outcomes["good"].new_articles == 5
        assert outcomes["latin1"].ok and outcomes["latin1"].new_articles == 1
        for name, words in {
            "slow": "timed out",
            "missing": "HTTP 404",
            "broken": "HTTP 500",
            "html": "HTML page, not a feed",
            "loop": "redirect",
            "busy": "retry after 3600",
        }.items():
            assert not outcomes[name].ok and words in outcomes[name].error, (name, outcomes[name].error)

        rows = {r["title"]: r for r in _export(sessions, config)}
        assert rows["Good story one"]["text_source"] == "page"
        assert rows["Good story two"]["url"] == site.url("/good/2.html")
        for title in ("Refused host", "Huge page", "Binary page"):
            assert rows[title]["text_source"] == "summary", title
        assert rows["Déput\u00e9s débattent"]["text_source"] == "page"

        with sessions() as session:
            feeds_by_name = {f.name: f for f in session.scalars(select(Feed))}
            failures = [f.message for f in session.scalars(select(FetchFailure))]
        assert (feeds_by_name["busy"].next_due_at - NOW).total_seconds() > 3000
        assert feeds_by_name["missing"].error_count == 1 and "404" in feeds_by_name["missing"].last_error
        assert any(refused in message for message in failures)

        stored = count_articles(sessions)
        site.routes["/good.xml"] = Reply(500, b"down", {"Content-Type": "text/plain"})
        again = run_all(sessions, deps, names)
        assert not again["good"].ok
        assert count_articles(sessions) == stored  # nothing already stored is lost
        with sessions() as session:
            assert session.get(Feed, names["good"]).error_count == 1


def test_second_run_stores_no_duplicates_and_feed_state_survives(sessions, settings, embedder, config):
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        site.routes.update(
            {
                "/a.xml": Reply(200, rss([("One", site.url("/1.html"), "s"), ("Two", site.url("/2.html#top"), "s")]), {**RSS, "ETag": '"v1"'}),
                "/1.html": Reply(200, page("One"), HTML),
                "/2.html": Reply(200, page("Two"), HTML),
            }
        )
        names = sync(sessions, {"a": site.url("/a.xml")})
        assert run_all(sessions, deps, names)["a"].new_articles == 2
        with sessions() as session:
            assert session.get(Feed, names["a"]).etag == '"v1"'
        assert run_all(sessions, deps, names)["a"].new_articles == 0
        assert count_articles(sessions) == 2
        pages_fetched = [r.path for r in site.requests if r.path.endswith(".html")]
        assert sorted(pages_fetched) == ["/1.html", "/2.html"]  # an article seen before is never fetched again


def test_etag_that_never_changes_while_content_does(sessions, settings, embedder, config):
    """A server that answers 200 with the same ETag: the content hash notices the change."""
    settings = settings.model_copy(update={"full_refresh": 0})
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        items = [("One", site.url("/1.html"), "s")]
        site.routes.update({"/1.html": Reply(200, page("One"), HTML), "/2.html": Reply(200, page("Two"), HTML)})
        site.routes["/f.xml"] = lambda _r: Reply(200, rss(items), {**RSS, "ETag": '"same"'})
        names = sync(sessions, {"f": site.url("/f.xml")})
        assert run_all(sessions, deps, names)["f"].new_articles == 1
        assert run_all(sessions, deps, names)["f"].not_modified  # same bytes: nothing to parse
        items.append(("Two", site.url("/2.html"), "s"))
        assert run_all(sessions, deps, names)["f"].new_articles == 1
        assert count_articles(sessions) == 2


def test_conditional_get_uses_stored_validators(sessions, settings, embedder, config):
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        def feed(request):
            if request.headers.get("if-none-match") == '"v1"':
                return Reply(304, b"", {"ETag": '"v1"'})
            return Reply(200, rss([("One", site.url("/1.html"), "s")]), {**RSS, "ETag": '"v1"'})

        site.routes.update({"/f.xml": feed, "/1.html": Reply(200, page("One"), HTML)})
        names = sync(sessions, {"f": site.url("/f.xml")})
        run_all(sessions, deps, names)
        with sessions.begin() as session:  # the full refresh is done; the next poll is conditional
            session.get(Feed, names["f"]).last_full_fetch_at = NOW
        assert run_all(sessions, deps, names)["f"].not_modified
        assert site.requests[-1].headers.get("if-none-match") == '"v1"'


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(600, n, 3600) for n in (1, 2, 3, 4, 5)] == [600, 1200, 2400, 3600, 3600]


def test_links_to_refused_addresses_and_unsafe_schemes_keep_the_summary_and_say_why(sessions, settings, embedder, config):
    """A feed allowed on 127.0.0.1 links to an 'internal admin' page on 127.0.0.2 and to javascript:; neither is fetched."""
    settings = settings.model_copy(update={"allowed_networks": [ipaddress.ip_network("127.0.0.1/32")]})
    secret = Reply(200, page("Internal admin settings"), HTML)
    with LocalSite({"/admin/config": secret, "/feed.xml": secret}, host="127.0.0.2") as internal, LocalSite() as site:
        site.routes["/news.xml"] = Reply(
            200,
            rss(
                [
                    ("Internal page", internal.url("/admin/config"), "The feed's own summary of the internal item."),
                    ("Script link", "javascript:alert(document.cookie)", "The feed's own summary of the script item."),
                ]
            ),
            RSS,
        )
        names = sync(sessions, {"Local": site.url("/news.xml"), "Admin": internal.url("/feed.xml")})
        with pipeline(sessions, settings, embedder, config) as deps:
            outcomes = run_all(sessions, deps, names)
            again = run_all(sessions, deps, names)
        assert internal.requests == []  # not the feed, not the page, not robots.txt
    assert not outcomes["Admin"].ok
    assert "refused: 127.0.0.2 is a loopback address; set MONITOR_ALLOWED_NETWORKS to allow it" in outcomes["Admin"].error
    assert outcomes["Local"].ok and outcomes["Local"].new_articles == 2 and again["Local"].new_articles == 0
    rows = {r["title"]: r for r in _export(sessions, config)}
    assert rows["Internal page"]["text"] == "The feed's own summary of the internal item."
    assert rows["Internal page"]["text_source"] == "summary"
    assert rows["Script link"]["text"] == "The feed's own summary of the script item."
    assert rows["Script link"]["url"].startswith("urn:sha256:")
    with sessions() as session:
        stored = {a.title: a for a in session.scalars(select(Article))}
        failures = [f.url + " " + f.message for f in session.scalars(select(FetchFailure))]
    assert stored["Internal page"].page_error.startswith("refused: 127.0.0.2 is a loopback address; set MONITOR_ALLOWED_NETWORKS")
    assert stored["Script link"].page_error == "no link kept: 'javascript' is not an http(s) link"
    assert stored["Script link"].original_url == stored["Script link"].url
    assert not any("javascript:" in text for text in failures)


def test_three_hundred_feeds_without_delay_never_lock_the_store(tmp_path, settings, embedder, config):
    """Fetch threads record unchanged feeds while the storing thread reads, then writes, changed ones: writers wait
    their turn instead of failing with "database is locked"."""
    settings = settings.model_copy(update={"fetch_workers": 8, "host_concurrency": 16})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    rounds = {"now": 1}

    def feed(number: int):
        def reply(_request):
            edition = rounds["now"] if number % 2 else 1  # odd feeds change each round, even ones stay the same
            items = [(f"Feed {number} story", site.url(f"/p/{number}.html"), "s")] if number % 10 == 0 else []
            body = rss(items).replace(b"<title>t</title>", f"<title>Feed {number} edition {edition}</title>".encode())
            return Reply(200, body, RSS)

        return reply

    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        site.routes.update({f"/f/{n}.xml": feed(n) for n in range(300)})
        site.routes.update({f"/p/{n}.html": Reply(200, page(f"Feed {n} story", words=20), HTML) for n in range(0, 300, 10)})
        names = sync(sessions, {f"feed {n}": site.url(f"/f/{n}.xml") for n in range(300)})
        first = run_all(sessions, deps, names)
        rounds["now"] = 2
        second = run_all(sessions, deps, names)

    assert [o.error for o in [*first.values(), *second.values()] if not o.ok] == []
    assert sum(o.not_modified for o in second.values()) == 150
    assert count_articles(sessions) == 30
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(FetchFailure)) == 0
    engine.dispose()


class _BusyModel:
    """The real embedder, recording each batch it is given; its first call lasts until every page has been read (fetched
    and extracted: the pass's `timings`, given to it, tell), as a busy model's would while the other outlets' pages
    arrive. Served is not enough: a page served may still be in extraction when the model returns. A text holding
    `poison` makes it fail, if it chokes."""

    def __init__(self, embedder, pages: int, chokes: bool = True):
        self.embedder, self.pages, self.batches, self.chokes = embedder, pages, [], chokes
        self.extracted = threading.Semaphore(0)
        self.timings = Timings(observe=lambda stage, _seconds: self.extracted.release() if stage == "extract" else None)

    def embed(self, texts):
        if not self.batches:
            for _ in range(self.pages):
                assert self.extracted.acquire(timeout=60), "the pages were not read"
        self.batches.append(list(texts))
        if self.chokes and any("poison" in text for text in texts):
            raise ValueError("the model choked")
        return self.embedder.embed(texts)

    def feeds_per_batch(self) -> list[int]:
        return [len({text.split(" story ")[0].rsplit("Feed ", 1)[1] for text in batch}) for batch in self.batches]


def _busy_site(site: LocalSite, feeds: int, per_feed: int, poison: int | None = None) -> dict[str, str]:
    for n in range(feeds):
        items = [(f"Feed {n} story {k}", site.url(f"/p/{n}-{k}.html"), "s") for k in range(per_feed)]
        site.routes[f"/f/{n}.xml"] = Reply(200, rss(items), RSS)
        for k in range(per_feed):
            title = f"Feed {n} story {k}" + (" poison" if n == poison else "")
            site.routes[f"/p/{n}-{k}.html"] = Reply(200, page(title, words=60), HTML)
    return {f"feed {n}": site.url(f"/f/{n}.xml") for n in range(feeds)}


def test_what_several_feeds_read_while_the_model_was_busy_is_embedded_in_one_batch(tmp_path, settings, embedder, config):
    """One article at a time costs the model several times more than a batch: a busy pass must not feed it one by one."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        names = sync(sessions, _busy_site(site, feeds=3, per_feed=2))
        model = _BusyModel(embedder, pages=6)
        outcomes = run_all(sessions, replace(deps, embedder=model, timings=model.timings), names)

    assert [o.new_articles for o in outcomes.values()] == [2, 2, 2]
    assert count_articles(sessions) == 6
    assert max(model.feeds_per_batch()) >= 2, model.batches
    assert len(model.batches) < 6
    engine.dispose()


class _ChokingScorer:
    """The real topic scorer, failing on a document that holds `poison`."""

    def __init__(self, scorer):
        self.scorer, self.spec = scorer, scorer.spec

    def score(self, documents, vectors):
        if any("poison" in document.for_embedding for document in documents):
            raise ValueError("the scorer choked")
        return self.scorer.score(documents, vectors)


@pytest.mark.parametrize("choking", ["model", "scorer"])
def test_a_batch_that_fails_fails_only_the_feed_whose_article_broke_it(tmp_path, settings, embedder, config, choking):
    """The model and the scorers take every feed's arrivals in one batch; a failure on one article stays its feed's."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with LocalSite() as site, pipeline(sessions, settings, embedder, config) as deps:
        names = sync(sessions, _busy_site(site, feeds=3, per_feed=2, poison=1))
        model = _BusyModel(embedder, pages=6, chokes=choking == "model")
        scorers = [_ChokingScorer(scorer) for scorer in deps.scorers] if choking == "scorer" else deps.scorers
        outcomes = run_all(sessions, replace(deps, embedder=model, scorers=scorers, timings=model.timings), names)

    assert max(model.feeds_per_batch()) >= 2, model.batches  # the feeds were embedded together
    assert {name: o.ok for name, o in outcomes.items()} == {"feed 0": True, "feed 1": False, "feed 2": True}
    assert f"the {choking} choked" in outcomes["feed 1"].error
    with sessions() as session:
        titles = set(session.scalars(select(Article.title)))
    assert titles == {"Feed 0 story 0", "Feed 0 story 1", "Feed 2 story 0", "Feed 2 story 1"}
    engine.dispose()


def test_a_store_error_is_recorded_as_a_sentence_without_its_sql():
    error = OperationalError(
        "UPDATE feeds SET last_error=? WHERE feeds.id = ?", ("secret value", 7), sqlite3.OperationalError("database is locked")
    )
    message = store_failure(error)
    assert message.startswith("the store refused this poll's changes (database is locked)")
    assert "UPDATE" not in message and "secret" not in message and "\n" not in message


def test_the_model_embeds_the_next_batch_while_the_last_one_is_stored(tmp_path, settings, embedder, config):
    """Storing and placing take a sixth of the model's time on a busy pass; the model must not wait for them."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    later_batch_embedded, store_overlapped = threading.Event(), []

    class _Model:
        def embed(self, texts):
            if any("Distant" in text for text in texts):
                later_batch_embedded.set()
            return embedder.embed(texts)

    def observe(stage: str, _seconds: float) -> None:
        if stage == "store" and not store_overlapped:  # the first feed's articles have just been committed
            store_overlapped.append(later_batch_embedded.wait(timeout=30))

    with LocalSite() as near, LocalSite(host="127.0.0.3", delay=1.0) as distant, pipeline(sessions, settings, embedder, config) as deps:
        near.routes["/f.xml"] = Reply(200, rss([("Near story", near.url("/p.html"), "s")]), RSS)
        near.routes["/p.html"] = Reply(200, page("Near story"), HTML)
        distant.routes["/f.xml"] = Reply(200, rss([("Distant story", distant.url("/p.html"), "s")]), RSS)
        distant.routes["/p.html"] = Reply(200, page("Distant story"), HTML)
        names = sync(sessions, {"near": near.url("/f.xml"), "distant": distant.url("/f.xml")})
        outcomes = run_all(sessions, replace(deps, embedder=_Model(), timings=Timings(observe)), names)

    assert {name: (o.ok, o.new_articles) for name, o in outcomes.items()} == {"near": (True, 1), "distant": (True, 1)}
    assert store_overlapped == [True], "the model waited for the first batch to be stored before embedding the next"
    engine.dispose()
