"""A small threaded HTTP server over a table of routes: static responses or functions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str  # with its query string
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""


Route = Reply | Callable[[Request], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._answer(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))

    def do_POST(self) -> None:  # noqa: N802
        """POSTs (a Slack webhook, say) are answered by the same routes, with the body kept in the request."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, "POST", body))

    def _answer(self, request: Request) -> None:
        self.server.requests.append(request)
        if self.server.delay:
            time.sleep(self.server.delay)
        route = self.server.routes.get(self.path) or self.server.routes.get(self.path.split("?")[0])
        if route is None:
            reply = Reply(404, b"not found", {"Content-Type": "text/plain"})
        else:
            reply = route(request) if callable(route) else route
        try:
            self.send_response(reply.status)
            headers = {"Content-Length": str(len(reply.body)), **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (a size cap or a timeout did its job)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes: dict[str, Route]
    requests: list[Request]
    delay: float

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (after a size cap, say) is normal here, not worth a traceback."""
        log.debug("client %s went away", client_address)


class LocalSite:
    """Serves routes on host:port (port 0 picks a free one) in a background thread; use as a context manager.

    `delay`: seconds each request waits before its answer, as a distant outlet's would.
    """

    def __init__(self, routes: dict[str, Route] | None = None, *, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0):
        self._server = _Server((host, port), _Handler)
        self._server.routes = dict(routes or {})
        self._server.requests = []
        self._server.delay = delay
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"site-{host}", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def routes(self) -> dict[str, Route]:
        return self._server.routes

    @property
    def requests(self) -> list[Request]:
        return self._server.requests

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> LocalSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
