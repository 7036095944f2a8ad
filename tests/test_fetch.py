"""Fetcher against real local HTTP servers: validators, timeouts, caps, Retry-After, robots.txt, politeness."""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from pydantic import ValidationError

from monitor.config import Settings
from monitor.demo.server import LocalSite, Reply, Request
from monitor.fetch import FetchError, Fetcher, Refused, RetryLater, build_client
from monitor.guard import AddressGuard, address_kind
from monitor.times import parse_retry_after

from .conftest import NOW

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
ETAG = '"v1"'
LAST_MODIFIED = "Tue, 17 Feb 2026 15:20:02 GMT"
MB = 1_000_000


@pytest.fixture(scope="module")
def module_site():
    with LocalSite() as local:
        yield local


@pytest.fixture
def site(module_site):
    """One server for the module, emptied for each test: stopping a LocalSite takes half a second."""
    module_site.routes.clear()
    module_site.requests.clear()
    return module_site


@pytest.fixture
def client(settings):
    with build_client(settings) as http:
        yield http


@pytest.fixture
def fetcher(client, settings):
    return Fetcher.from_settings(client, settings)


@pytest.fixture
def impatient_fetcher(settings):
    quick = settings.model_copy(update={"read_timeout": 0.3, "connect_timeout": 0.3})
    with build_client(quick) as http:
        yield Fetcher.from_settings(http, quick)


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class PeakCounter:
    """Requests in flight inside a route, and the most seen at once."""

    def __init__(self):
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self):
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def __exit__(self, *exc):
        with self._lock:
            self.current -= 1


class UnsizedBodyServer:
    """Answers one request with `size` bytes, no Content-Length, then closes; counts what it got to send."""

    def __init__(self, size: int):
        self.size = size
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}/big"

    def __enter__(self) -> UnsizedBodyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            block = b"x" * 65536
            try:
                while self.sent < self.size:
                    self.sent += conn.send(block[: self.size - self.sent])
            except OSError:
                pass


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


def sleeping(seconds: float, reply: Reply | None = None):
    def route(request: Request) -> Reply:
        time.sleep(seconds)
        return reply or Reply(200, b"late")

    return route


def replies_in_turn(*replies: Reply):
    remaining = list(replies)

    def route(request: Request) -> Reply:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return route


def test_plain_get_captures_body_type_and_validators(site, fetcher, settings):
    site.routes["/feed.xml"] = Reply(
        200, FEED, {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": ETAG, "Last-Modified": LAST_MODIFIED}
    )
    response = fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert response.status == 200 and not response.not_modified
    assert response.content == FEED
    assert response.content_type == "application/rss+xml"
    assert (response.etag, response.last_modified) == (ETAG, LAST_MODIFIED)
    assert site.requests[0].headers["user-agent"] == settings.user_agent


def test_conditional_get_sends_validators_and_304_is_not_modified(site, fetcher):
    def conditional(request: Request) -> Reply:
        if request.headers.get("if-none-match") == ETAG:
            return Reply(304, b"", {"ETag": ETAG})
        return Reply(200, FEED, {"ETag": ETAG, "Last-Modified": LAST_MODIFIED})

    site.routes["/feed.xml"] = conditional
    first = fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    second = fetcher.get(site.url("/feed.xml"), max_bytes=MB, etag=first.etag, last_modified=first.last_modified)
    assert "if-none-match" not in site.requests[0].headers
    assert site.requests[1].headers["if-none-match"] == ETAG
    assert site.requests[1].headers["if-modified-since"] == LAST_MODIFIED
    assert second.not_modified and second.content == b"" and second.etag == ETAG


def test_redirect_is_followed_to_the_final_url(site, fetcher):
    site.routes["/old"] = Reply(301, b"", {"Location": "/new"})
    site.routes["/new"] = Reply(200, FEED)
    response = fetcher.get(site.url("/old"), max_bytes=MB)
    assert response.url == site.url("/new") and response.content == FEED


def test_read_timeout_is_a_fetch_error_with_a_reason(site, impatient_fetcher):
    site.routes["/slow"] = sleeping(1.0)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        impatient_fetcher.get(site.url("/slow"), max_bytes=MB)
    assert time.monotonic() - started < 0.9
    assert "timed out" in caught.value.reason and caught.value.status is None
    assert site.url("/slow") in str(caught.value)


def test_refused_connection_is_a_fetch_error(fetcher):
    with pytest.raises(FetchError, match="cannot connect") as caught:
        fetcher.get(f"http://127.0.0.1:{closed_port()}/feed.xml", max_bytes=MB)
    assert caught.value.status is None


@pytest.mark.parametrize(("status", "phrase"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_error_status_is_a_fetch_error_with_the_status(site, fetcher, status, phrase):
    site.routes["/broken"] = Reply(status, b"no")
    with pytest.raises(FetchError) as caught:
        fetcher.get(site.url("/broken"), max_bytes=MB)
    assert caught.value.status == status
    assert caught.value.reason == f"HTTP {status} {phrase}"
    assert not isinstance(caught.value, RetryLater)


def test_redirect_loop_is_a_fetch_error(site, fetcher, settings):
    site.routes["/loop"] = Reply(302, b"", {"Location": "/loop"})
    with pytest.raises(FetchError, match="redirects"):
        fetcher.get(site.url("/loop"), max_bytes=MB)
    assert len(site.requests) == settings.max_redirects + 1


def test_declared_size_over_the_cap_is_refused(site, fetcher):
    site.routes["/big"] = Reply(200, b"x" * (2 * MB), {"Content-Type": "text/plain"})
    with pytest.raises(FetchError, match="too large: 2,000,000 bytes declared"):
        fetcher.get(site.url("/big"), max_bytes=MB)


def test_body_of_exactly_the_cap_is_accepted(site, fetcher):
    site.routes["/exact"] = Reply(200, b"x" * MB, {"Content-Type": "text/plain"})
    assert len(fetcher.get(site.url("/exact"), max_bytes=MB).content) == MB


def test_unsized_body_under_the_cap_is_read_to_the_end(fetcher):
    with UnsizedBodyServer(100_000) as server:
        response = fetcher.get(server.url, max_bytes=MB)
    assert len(response.content) == 100_000


def test_unsized_body_over_the_cap_stops_reading_early(fetcher):
    size = 50 * MB
    started = time.monotonic()
    with UnsizedBodyServer(size) as server:
        with pytest.raises(FetchError, match="too large: over the limit of 1,000,000 bytes"):
            fetcher.get(server.url, max_bytes=MB)
    assert time.monotonic() - started < 5
    assert server.sent < size // 4


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/png"])
def test_binary_type_is_not_a_web_page(site, fetcher, content_type):
    site.routes["/file"] = Reply(200, b"\x89PNG\r\n\x1a\n\x00\x00", {"Content-Type": content_type})
    with pytest.raises(FetchError, match=f"not a web page: {content_type}"):
        fetcher.get(site.url("/file"), max_bytes=MB, page=True)


def test_html_with_nul_bytes_is_refused_as_binary(site, fetcher):
    site.routes["/fake.html"] = Reply(200, b"<html>\x00\x01\x02\x03</html>", {"Content-Type": "text/html"})
    with pytest.raises(FetchError, match="binary"):
        fetcher.get(site.url("/fake.html"), max_bytes=MB, page=True)


def test_html_page_is_accepted_as_a_page(site, fetcher):
    site.routes["/a.html"] = Reply(200, b"<html><p>hi</p></html>", {"Content-Type": "text/html; charset=utf-8"})
    assert fetcher.get(site.url("/a.html"), max_bytes=MB, page=True).content_type == "text/html"


def test_short_retry_after_is_waited_for_and_retried(site, fetcher):
    arrivals: list[float] = []
    answer = replies_in_turn(Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, FEED))

    def timed(request: Request) -> Reply:
        arrivals.append(time.monotonic())
        return answer(request)

    site.routes["/feed.xml"] = timed
    response = fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert response.status == 200 and response.content == FEED
    assert len(site.requests) == 2
    assert arrivals[1] - arrivals[0] >= 0.95


def test_second_429_in_a_row_gives_up(site, client):
    clock = FakeClock()
    fetcher = Fetcher(client, host_delay=0, clock=clock, sleep=clock.sleep)
    site.routes["/feed.xml"] = Reply(429, b"", {"Retry-After": "2"})
    with pytest.raises(RetryLater):
        fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert len(site.requests) == 2 and clock.sleeps == [2.0]


@pytest.mark.parametrize("status", [429, 503])
def test_long_retry_after_raises_retry_later(site, fetcher, status):
    site.routes["/feed.xml"] = Reply(status, b"", {"Retry-After": "3600"})
    with pytest.raises(RetryLater) as caught:
        fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert caught.value.retry_after == pytest.approx(3600)
    assert caught.value.status == status
    assert len(site.requests) == 1


def test_retry_after_as_http_date_raises_retry_later(site, client, settings):
    """The date counts from the fetcher's wall clock, an input like its other clocks."""
    fetcher = Fetcher(client, host_delay=settings.host_delay, retry_after_wait=settings.retry_after_wait, now=lambda: NOW)
    an_hour_on = NOW + timedelta(hours=1)
    site.routes["/feed.xml"] = Reply(429, b"", {"Retry-After": email.utils.format_datetime(an_hour_on, usegmt=True)})
    with pytest.raises(RetryLater) as caught:
        fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert caught.value.retry_after == 3600


def test_503_without_retry_after_is_a_plain_fetch_error(site, fetcher):
    site.routes["/feed.xml"] = Reply(503, b"")
    with pytest.raises(FetchError) as caught:
        fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    assert caught.value.status == 503 and not isinstance(caught.value, RetryLater)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 22 Nov 2026 12:01:30 GMT", 90.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("Sunday, 22-Nov-26 12:02:00 GMT", 120.0),
        ("soon", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(now, value, seconds):
    assert parse_retry_after(value, now=now) == seconds


ROBOTS_FOR_MONITOR = "User-agent: monitor\nDisallow: /private/\n\nUser-agent: *\nDisallow: /\n"
ROBOTS_FOR_EVERYONE = "User-agent: *\nDisallow: /private/\n"
ROBOTS_FOR_ANOTHER_BOT = "User-agent: otherbot\nDisallow: /\n"


@pytest.mark.parametrize(
    ("robots", "path", "allowed"),
    [
        (ROBOTS_FOR_MONITOR, "/private/a.html", False),
        (ROBOTS_FOR_MONITOR, "/news/a.html", True),
        (ROBOTS_FOR_EVERYONE, "/private/a.html", False),
        (ROBOTS_FOR_EVERYONE, "/news/a.html", True),
        (ROBOTS_FOR_ANOTHER_BOT, "/private/a.html", True),
    ],
)
def test_robots_rules_for_monitor_and_everyone(site, fetcher, robots, path, allowed):
    site.routes["/robots.txt"] = Reply(200, robots.encode(), {"Content-Type": "text/plain"})
    assert fetcher.allowed(site.url(path)) is allowed


def test_missing_robots_allows_everything(site, fetcher):
    assert fetcher.allowed(site.url("/private/a.html"))
    assert [r.path for r in site.requests] == ["/robots.txt"]


def test_failing_robots_disallows_everything(site, fetcher):
    site.routes["/robots.txt"] = Reply(500, b"oops")
    assert not fetcher.allowed(site.url("/news/a.html"))


def test_robots_is_fetched_once_per_site(site, fetcher):
    site.routes["/robots.txt"] = Reply(200, ROBOTS_FOR_EVERYONE.encode())
    verdicts = [fetcher.allowed(site.url(path)) for path in ("/a", "/private/b", "/c")]
    assert verdicts == [True, False, True]
    assert len(site.requests) == 1


def test_robots_txt_is_read_without_waiting_for_the_sites_slot_and_the_next_request_waits_after_it(site, client):
    """Read right after the feed (not a delay later, which held each outlet's first page back), yet spaced from."""
    clock = FakeClock()
    starts: list[tuple[str, float]] = []

    def stamp(reply: Reply):
        def answer(request: Request) -> Reply:
            starts.append((request.path, clock.now))
            return reply

        return answer

    site.routes.update({"/feed.xml": stamp(Reply(200, b"<rss/>")), "/robots.txt": stamp(Reply(200, ROBOTS_FOR_EVERYONE.encode()))})
    site.routes["/news/a.html"] = stamp(Reply(200, b"<html>story</html>", {"Content-Type": "text/html"}))
    fetcher = Fetcher(client, host_delay=0.5, clock=clock, sleep=clock.sleep)
    fetcher.get(site.url("/feed.xml"), max_bytes=MB)
    clock.now += 0.2  # the feed parsed
    assert fetcher.allowed(site.url("/news/a.html"))
    fetcher.get(site.url("/news/a.html"), max_bytes=MB, page=True)
    assert starts == [("/feed.xml", 0.0), ("/robots.txt", 0.2), ("/news/a.html", pytest.approx(0.7))]
    assert clock.sleeps == [pytest.approx(0.5)]


def test_unreachable_robots_disallows_with_the_reason(site, impatient_fetcher):
    """RFC 9309 2.3.1.4: an unreachable robots.txt means complete disallow; the error says why."""
    site.routes["/robots.txt"] = sleeping(1.0, Reply(200, b"User-agent: *\nDisallow: /\n"))
    with pytest.raises(FetchError, match="unreachable.*timed out"):
        impatient_fetcher.allowed(site.url("/news/a.html"))


def test_host_concurrency_caps_requests_in_flight(site, client):
    in_flight = PeakCounter()

    def slow(request: Request) -> Reply:
        with in_flight:
            time.sleep(0.3)
        return Reply(200, b"ok")

    site.routes["/slow"] = slow
    fetcher = Fetcher(client, host_concurrency=2, host_delay=0)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda n: fetcher.get(site.url(f"/slow?n={n}"), max_bytes=MB), range(6)))
    assert all(r.status == 200 for r in responses)
    assert in_flight.peak == 2


def test_host_delay_spaces_request_starts_on_a_fake_clock(site, client):
    clock = FakeClock()
    starts: list[float] = []

    def stamp(request: Request) -> Reply:
        starts.append(clock.now)
        return Reply(200, b"ok")

    site.routes["/a"] = stamp
    fetcher = Fetcher(client, host_delay=0.5, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        fetcher.get(site.url("/a"), max_bytes=MB)
    assert starts == [0.0, 0.5, 1.0]
    with LocalSite({"/a": stamp}) as other:
        fetcher.get(other.url("/a"), max_bytes=MB)
    assert clock.sleeps == [0.5, 0.5]


def test_host_delay_spaces_parallel_request_starts_in_real_time(site, client):
    arrivals: list[float] = []

    def stamp(request: Request) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(200, b"ok")

    site.routes["/a"] = stamp
    fetcher = Fetcher(client, host_concurrency=3, host_delay=0.2)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: fetcher.get(site.url(f"/a?n={n}"), max_bytes=MB), range(3)))
    arrivals.sort()
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 0.1 and sum(gaps) >= 0.3, gaps


# The address guard: nothing is sent to an address outside the public internet and the allowed networks.


@pytest.fixture
def internal():
    """An 'internal admin' service on another loopback address (Linux answers all of 127.0.0.0/8)."""
    with LocalSite({"/admin/config": Reply(200, b"<html><body>secret settings</body></html>", {"Content-Type": "text/html"})}, host="127.0.0.2") as service:
        yield service


@pytest.fixture
def guarded(settings):
    """A fetcher allowed to reach 127.0.0.1 only, as a deployment allowing one internal network would be."""
    only_first = settings.model_copy(update={"allowed_networks": [ipaddress.ip_network("127.0.0.1/32")]})
    with build_client(only_first) as http:
        yield Fetcher.from_settings(http, only_first)


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_kinds(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_allowed_networks_open_the_guard_for_their_addresses_only():
    guard = AddressGuard([ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("::1/128")])
    assert guard.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert guard.refusal(ipaddress.ip_address("::1")) is None
    assert guard.refusal(ipaddress.ip_address("::ffff:10.1.2.3")) is None  # the same address, IPv4-mapped
    assert guard.refusal(ipaddress.ip_address("10.2.0.1")) == "a private address"
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) == "a loopback address"


def test_a_refused_address_gets_no_request_not_even_robots_txt(guarded, internal):
    url = internal.url("/admin/config")
    with pytest.raises(Refused, match=r"refused: 127\.0\.0\.2 is a loopback address; set MONITOR_ALLOWED_NETWORKS to allow it"):
        guarded.allowed(url)
    with pytest.raises(Refused, match="127.0.0.2 is a loopback address"):
        guarded.get(url, max_bytes=MB, page=True)
    assert internal.requests == []


def test_a_redirect_to_a_refused_address_is_refused(site, guarded, internal):
    site.routes["/go"] = Reply(302, headers={"Location": internal.url("/admin/config")})
    with pytest.raises(Refused, match="127.0.0.2 is a loopback address"):
        guarded.get(site.url("/go"), max_bytes=MB)
    assert [r.path for r in site.requests] == ["/go"]
    assert internal.requests == []


def test_a_host_name_that_resolves_to_loopback_is_refused(site, settings):
    closed = settings.model_copy(update={"allowed_networks": []})
    port = site.base_url.rsplit(":", 1)[1]
    with build_client(closed) as http:
        fetcher = Fetcher.from_settings(http, closed)
        with pytest.raises(Refused, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback address"):
            fetcher.get(f"http://localhost:{port}/feed.xml", max_bytes=MB)
        with pytest.raises(Refused, match=r"\[::1\]|::1 is a loopback address"):
            fetcher.get("http://[::1]:9/", max_bytes=MB)
    assert site.requests == []


def test_the_allowed_networks_setting_reads_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("MONITOR_ALLOWED_NETWORKS", "127.0.0.0/8, ::1,10.0.0.0/8")
    assert [str(n) for n in Settings().allowed_networks] == ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
    monkeypatch.setenv("MONITOR_ALLOWED_NETWORKS", "not-a-network")
    with pytest.raises(ValidationError, match="allowed_networks"):
        Settings()
