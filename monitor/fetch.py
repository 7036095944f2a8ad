"""The only outbound HTTP: conditional GET, size cap, robots.txt, per-host politeness, Retry-After, address guard."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from monitor.config import Settings
from monitor.domain import PollHint
from monitor.guard import AddressGuard, AddressRefused, GuardedTransport
from monitor.times import http_date, parse_retry_after

log = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 512_000
ROBOTS_TTL = 24 * 3600
ROBOTS_UNREACHABLE_TTL = 600
PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
BINARY_SNIFF_BYTES = 2048
CACHE_HEADERS = ("cache-control", "expires", "date")  # kept with a response: how long its document stays fresh


class FetchError(Exception):
    """A request failed; the message says why in words a person can act on."""

    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(f"{reason} ({url})")
        self.url = url
        self.reason = reason
        self.status = status


class RetryLater(FetchError):
    """The server asked us to come back later (429/503 with Retry-After)."""

    def __init__(self, url: str, reason: str, retry_after: float, status: int | None = None):
        super().__init__(url, reason, status)
        self.retry_after = retry_after


class Refused(FetchError):
    """The address is one the guard refuses (loopback, private, …): nothing was sent to it."""


@dataclass(frozen=True)
class Response:
    url: str
    status: int
    content: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    cache_headers: Mapping[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # the Link header's URLs by rel (a WebSub hub, its topic)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def build_client(settings: Settings) -> httpx.Client:
    """The one HTTP client of a process, shared by every stage that fetches; it connects only where the guard allows.

    No proxies from the environment: through one the guard could not see where a request goes. All connections are kept
    alive: past its keep-alive limit httpcore 1.0.9 closes idle ones, even one handed to a request (encode/httpcore#1110)."""
    limits = httpx.Limits(max_connections=settings.fetch_workers * 2, max_keepalive_connections=settings.fetch_workers * 2)
    return httpx.Client(
        timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        headers={"User-Agent": settings.user_agent},
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        transport=GuardedTransport(AddressGuard(settings.allowed_networks), limits=limits),
        trust_env=False,
    )


def cache_hint(headers: Mapping[str, str], now: datetime) -> PollHint | None:
    """How long the server says its answer stays fresh, as a floor on polling (RFC 9111: Cache-Control max-age,
    else Expires counted from the response's Date, or from now without one). None for no-cache, no-store or none."""
    directives = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-cache" in directives or "no-store" in directives:
        return None
    if "max-age" in directives:
        age = directives["max-age"]
        return PollHint("Cache-Control max-age", float(age)) if age.isdigit() and int(age) > 0 else None
    expires = http_date(headers.get("expires"))
    if expires is None:
        return None
    fresh = (expires - (http_date(headers.get("date")) or now)).total_seconds()
    return PollHint("Expires", fresh) if fresh > 0 else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cache_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in CACHE_HEADERS if name in response.headers}


@dataclass
class _Host:
    slots: threading.Semaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_start: float = 0.0


class Fetcher:
    """Fetches URLs through one client, politely: few requests per host, spaced, capped in size."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        host_concurrency: int = 2,
        host_delay: float = 0.5,
        retry_after_wait: float = 10.0,
        user_agent_token: str = "monitor",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.client = client
        self.host_concurrency = host_concurrency
        self.host_delay = host_delay
        self.retry_after_wait = retry_after_wait
        self.user_agent_token = user_agent_token
        self.clock = clock
        self.sleep = sleep
        self.now = now  # the wall clock, for Retry-After's HTTP dates
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self._robots: dict[str, tuple[float, RobotFileParser | FetchError | None]] = {}
        self._robots_lock = threading.Lock()

    @classmethod
    def from_settings(cls, client: httpx.Client, settings: Settings) -> Fetcher:
        return cls(
            client,
            host_concurrency=settings.host_concurrency,
            host_delay=settings.host_delay,
            retry_after_wait=settings.retry_after_wait,
        )

    def get(
        self,
        url: str,
        *,
        max_bytes: int,
        etag: str | None = None,
        last_modified: str | None = None,
        page: bool = False,
    ) -> Response:
        """GET a URL; with page=True only HTML or text is accepted. Raises FetchError."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        if page:
            headers["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
        else:
            headers["Accept"] = "application/rss+xml,application/atom+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.5"
        for attempt in (1, 2):
            try:
                return self._get_once(url, headers, max_bytes=max_bytes, page=page)
            except RetryLater as exc:
                if attempt == 2 or exc.retry_after > self.retry_after_wait:
                    raise
                log.info("waiting %.1fs as asked by %s", exc.retry_after, url)
                self.sleep(exc.retry_after)
        raise AssertionError("unreachable")

    def post(self, url: str, *, form: dict[str, str], max_bytes: int = ROBOTS_MAX_BYTES) -> Response:
        """POST a form (a request to a WebSub hub) with the same guard, politeness and errors as a GET. Raises FetchError."""
        return self._get_once(url, {}, max_bytes=max_bytes, page=False, method="POST", form=form)

    def allowed(self, url: str) -> bool:
        """Whether robots.txt of the URL's site lets us fetch it (RFC 9309: 4xx allows, 5xx forbids).

        An unreachable site raises its FetchError, so the reason a page was skipped is the real one.
        """
        rules = self.read_robots(url)
        if isinstance(rules, Refused):
            raise Refused(url, rules.reason)
        if isinstance(rules, FetchError):
            raise FetchError(url, f"site unreachable (robots.txt: {rules.reason})")
        return True if rules is None else rules.can_fetch(self.user_agent_token, url)

    def has_robots(self, url: str) -> bool:
        """Whether the robots.txt of the URL's site is at hand and fresh."""
        return self._cached_robots(_origin(url)) is not None

    def read_robots(self, url: str) -> RobotFileParser | FetchError | None:
        """The rules of the URL's site, read once a day (once in ten minutes while it is unreachable)."""
        origin = _origin(url)
        if (rules := self._cached_robots(origin)) is None:
            rules = (self.clock(), self._load_robots(origin))
            with self._robots_lock:
                self._robots[origin] = rules
        return rules[1]

    def _cached_robots(self, origin: str) -> tuple[float, RobotFileParser | FetchError | None] | None:
        with self._robots_lock:
            cached = self._robots.get(origin)
        if cached is None or self.clock() - cached[0] > (ROBOTS_UNREACHABLE_TTL if isinstance(cached[1], FetchError) else ROBOTS_TTL):
            return None
        return cached

    def _load_robots(self, origin: str) -> RobotFileParser | FetchError | None:
        """robots.txt is read without waiting for the site's next slot, but takes one: the request after it waits the
        delay. It is a small file read once a day, right after the feed that names the site's pages (as Apache Nutch
        reads it right before the page it guards); waiting a delay for it held every outlet's first page back by one
        more delay at the start of each pass, the model idle meanwhile."""
        rules = RobotFileParser(origin + "/robots.txt")
        try:
            response = self._get_once(origin + "/robots.txt", {}, max_bytes=ROBOTS_MAX_BYTES, page=False, waits_turn=False)
        except FetchError as exc:
            if exc.status is None:
                return exc
            if exc.status >= 500:
                rules.disallow_all = True
                return rules
            return None
        rules.parse(response.content.decode("utf-8", errors="replace").splitlines())
        return rules

    @staticmethod
    def host_key(url: str) -> str:
        """The host a URL's requests are spaced by."""
        return urlsplit(url).netloc.lower()

    def ready_at(self, host: str) -> float:
        """When (on the clock) the host's next request may start: page schedulers ask it so as not to wait here."""
        with self._hosts_lock:
            known = self._hosts.get(host)
        return known.next_start if known else 0.0

    def _host(self, url: str) -> _Host:
        host = self.host_key(url)
        with self._hosts_lock:
            if host not in self._hosts:
                self._hosts[host] = _Host(threading.Semaphore(self.host_concurrency))
            return self._hosts[host]

    def _wait_turn(self, host: _Host, *, waits: bool = True) -> None:
        with host.lock:
            start = max(self.clock(), host.next_start) if waits else self.clock()
            host.next_start = max(host.next_start, start + self.host_delay)
        delay = start - self.clock()
        if delay > 0:
            self.sleep(delay)

    def _get_once(
        self,
        url: str,
        headers: dict,
        *,
        max_bytes: int,
        page: bool,
        method: str = "GET",
        form: dict[str, str] | None = None,
        waits_turn: bool = True,
    ) -> Response:
        host = self._host(url)
        with host.slots:
            self._wait_turn(host, waits=waits_turn)
            try:
                with self.client.stream(method, url, headers=headers, data=form) as response:
                    return self._read(url, response, max_bytes=max_bytes, page=page)
            except AddressRefused as exc:
                raise Refused(url, f"refused: {exc}") from exc
            except httpx.TooManyRedirects as exc:
                raise FetchError(url, "too many redirects (a redirect loop?)") from exc
            except httpx.TimeoutException as exc:
                raise FetchError(url, f"timed out ({type(exc).__name__})") from exc
            except httpx.ConnectError as exc:
                raise FetchError(url, f"cannot connect: {exc}") from exc
            except httpx.UnsupportedProtocol as exc:
                raise FetchError(url, f"unsupported URL: {exc}") from exc
            except httpx.HTTPError as exc:
                raise FetchError(url, f"{type(exc).__name__}: {exc}") from exc

    def _read(self, url: str, response: httpx.Response, *, max_bytes: int, page: bool) -> Response:
        final_url = str(response.url)
        status = response.status_code
        if status == 304:
            return Response(
                final_url,
                304,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                cache_headers=_cache_headers(response),
            )
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("retry-after"), self.now())
            if wait is not None:
                raise RetryLater(url, f"HTTP {status}, retry after {wait:.0f}s", wait, status)
        if status >= 400:
            raise FetchError(url, f"HTTP {status} {response.reason_phrase}".strip(), status)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if page and content_type and not content_type.startswith(PAGE_TYPES):
            raise FetchError(url, f"not a web page: {content_type}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(url, f"too large: {int(declared):,} bytes declared, limit {max_bytes:,}")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(url, f"too large: over the limit of {max_bytes:,} bytes")
            chunks.append(chunk)
        content = b"".join(chunks)
        if page and b"\x00" in content[:BINARY_SNIFF_BYTES]:
            raise FetchError(url, "binary content, not a web page")
        return Response(
            final_url,
            status,
            content,
            content_type,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            cache_headers=_cache_headers(response),
            links={rel: link["url"] for link in response.links.values() for rel in link.get("rel", "").split() if link.get("url")},
        )
