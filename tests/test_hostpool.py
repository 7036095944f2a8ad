"""Pages of several outlets, each on its own loopback address, read side by side with each outlet's delay kept."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import httpx
import pytest

from monitor.demo.server import LocalSite, Reply, Request
from monitor.fetch import FetchError, Fetcher, build_client
from monitor.hostpool import HostPool

DELAY = 0.3
PAGES = 4


def story(request: Request) -> Reply:
    return Reply(200, b"<html><body>story</body></html>", {"Content-Type": "text/html"})


class Log:
    """When the client started each page request, per outlet, on one clock: the politeness delay spaces the starts of
    requests, so they are read where they start (an httpx request hook), not where the server got them, which adds
    however long a loaded machine takes to deliver them."""

    def __init__(self):
        self.hits: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def record(self, request: httpx.Request) -> None:
        if request.url.path.endswith(".html"):
            with self.lock:
                self.hits.append((f"{request.url.scheme}://{request.url.netloc.decode()}", time.monotonic()))

    def times(self, host: str) -> list[float]:
        return [when for name, when in self.hits if name == host]


@pytest.fixture
def outlets():
    """Two outlets on 127.0.0.2 and 127.0.0.3, PAGES pages each."""
    log = Log()
    with ExitStack() as stack:
        sites = [stack.enter_context(LocalSite(host=f"127.0.0.{n}")) for n in (2, 3)]
        for site in sites:
            site.routes.update({f"/{page}.html": story for page in range(PAGES)})
        yield log, sites


@pytest.fixture
def polite(settings, outlets):
    """A fetcher with a real politeness delay whose every sleep is counted and every page request logged."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with build_client(settings) as client:
        client.event_hooks["request"].append(outlets[0].record)
        yield Fetcher(client, host_concurrency=2, host_delay=DELAY, sleep=sleep), slept


def read_all(fetcher: Fetcher, urls: list[str], workers: int) -> list[bytes]:
    with HostPool(fetcher, workers) as pool:
        return pool.map(lambda url: fetcher.get(url, max_bytes=10_000, page=True).content, urls, url=lambda url: url)


def test_outlets_are_interleaved_and_each_keeps_its_delay(outlets, polite):
    log, (first, second) = outlets
    fetcher, slept = polite
    urls = [site.url(f"/{page}.html") for site in (first, second) for page in range(PAGES)]  # one outlet's pages first
    pages = read_all(fetcher, urls, workers=2)
    assert len(pages) == 2 * PAGES and all(b"story" in page for page in pages)
    for site in (first, second):
        times = log.times(site.base_url)
        assert len(times) == PAGES
        assert all(later - earlier >= DELAY / 2 for earlier, later in zip(times, times[1:])), times
    # The second outlet was read while the first waited for its next slot, not after it.
    second_times = log.times(second.base_url)
    assert second_times[0] < log.times(first.base_url)[1]
    assert sum(1 for earlier, later in zip(log.hits, log.hits[1:]) if earlier[0] != later[0]) >= PAGES
    # No thread slept in the fetcher for a slot: the pool only handed out pages whose outlet was ready.
    assert sum(slept) < DELAY


def test_results_keep_their_order_and_failures_reach_the_caller(outlets, settings):
    _, (first, second) = outlets
    with build_client(settings) as client:
        fetcher = Fetcher(client, host_concurrency=1, host_delay=0)
        with HostPool(fetcher, 3) as pool:
            urls = [second.url("/1.html"), first.url("/0.html"), second.url("/0.html")]
            assert pool.map(lambda url: fetcher.get(url, max_bytes=10_000).url, urls, url=lambda url: url) == urls
            with pytest.raises(FetchError, match="404"):
                pool.map(lambda url: fetcher.get(url, max_bytes=10_000), [first.url("/missing.html")], url=lambda url: url)
        with pytest.raises(RuntimeError, match="shut down"):
            pool.submit(first.url("/0.html"), lambda: None)


def test_a_new_outlets_robots_txt_is_read_ahead_of_its_pages_so_no_thread_sleeps_for_the_first_page(outlets, polite):
    log, (first, second) = outlets
    fetcher, slept = polite

    def read(url: str) -> bytes:
        assert fetcher.allowed(url)  # as read_article does: robots.txt (a 404 here: all allowed), then the page
        return fetcher.get(url, max_bytes=10_000, page=True).content

    urls = [site.url(f"/{page}.html") for site in (first, second) for page in range(2)]
    with HostPool(fetcher, 1) as pool:
        pages = pool.map(read, urls, url=lambda url: url)
    assert all(b"story" in page for page in pages)
    for site in (first, second):
        times = log.times(site.base_url)
        assert len(times) == 2 and times[1] - times[0] >= DELAY / 2, times
    # Each robots.txt was read at once, as a task of its own ahead of the outlet's pages, and its first page waited its
    # slot in the queue: the one thread read the other outlet's robots.txt meanwhile rather than sleep in the fetcher.
    assert sum(slept) < DELAY / 2, slept
