"""A local WebSub hub, for the tests and the time-to-alert bench: a real HTTP server that takes (un)subscription
requests, verifies the subscriber's intent with a GET to its callback (after answering 202, as the spec has it), and
publishes signed content to the verified; and `serving`, the archive's app on a loopback port for the hub to reach."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
import uvicorn

from monitor.demo.server import LocalSite, Reply, Request


@dataclass
class Subscriber:
    callback: str
    secret: str
    lease_seconds: int


@dataclass(frozen=True)
class Verification:
    mode: str
    topic: str
    callback: str
    confirmed: bool


class Hub:
    """Serves /hub on loopback; grants leases of at most `max_lease` seconds. Use as a context manager."""

    def __init__(self, *, max_lease: int = 3600) -> None:
        self.max_lease = max_lease
        self.site = LocalSite({"/hub": self._request})
        self.requests: list[dict[str, str]] = []
        self.verifications: list[Verification] = []
        self.subscribers: dict[str, dict[str, Subscriber]] = {}  # topic -> callback -> subscriber
        self._changed = threading.Condition()

    @property
    def url(self) -> str:
        return self.site.url("/hub")

    def __enter__(self) -> Hub:
        self.site.start()
        return self

    def __exit__(self, *exc) -> None:
        self.site.stop()

    def _request(self, request: Request) -> Reply:
        form = dict(parse_qsl(request.body.decode()))
        if request.method != "POST" or form.get("hub.mode") not in ("subscribe", "unsubscribe"):
            return Reply(400, b"hub.mode must be subscribe or unsubscribe", {"Content-Type": "text/plain"})
        if not form.get("hub.topic") or not form.get("hub.callback", "").startswith("http"):
            return Reply(400, b"hub.topic and hub.callback are required", {"Content-Type": "text/plain"})
        with self._changed:
            self.requests.append(form)
        threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return Reply(202, b"", {})

    def _verify(self, form: dict[str, str]) -> None:
        mode, topic, callback = form["hub.mode"], form["hub.topic"], form["hub.callback"]
        challenge = secrets.token_hex(16)
        lease = min(int(form.get("hub.lease_seconds") or self.max_lease), self.max_lease)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        try:
            answer = httpx.get(callback, params=params, timeout=10)
            confirmed = answer.status_code == 200 and answer.text == challenge
        except httpx.HTTPError:
            confirmed = False
        with self._changed:
            if confirmed and mode == "subscribe":
                self.subscribers.setdefault(topic, {})[callback] = Subscriber(callback, form.get("hub.secret", ""), lease)
            elif confirmed:
                self.subscribers.get(topic, {}).pop(callback, None)
            self.verifications.append(Verification(mode, topic, callback, confirmed))
            self._changed.notify_all()

    def wait_verifications(self, count: int, timeout: float = 20.0) -> list[Verification]:
        """The verifications made so far, once there are at least `count` of them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.verifications) >= count, timeout=timeout):
                raise AssertionError(f"the hub made {len(self.verifications)} verifications, not {count}")
            return list(self.verifications)

    def publish(
        self,
        topic: str,
        body: bytes,
        *,
        content_type: str = "application/rss+xml",
        method: str = "sha256",
        secret: str | None = None,
        signed: bool = True,
    ) -> list[httpx.Response]:
        """Push content to every verified subscriber of the topic, signed with its secret (or `secret`, to forge one)."""
        with self._changed:
            subscribers = list(self.subscribers.get(topic, {}).values())
        answers = []
        for subscriber in subscribers:
            headers = {"Content-Type": content_type, "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"'}
            if signed:
                key = (subscriber.secret if secret is None else secret).encode()
                headers["X-Hub-Signature"] = f"{method}={hmac.new(key, body, getattr(hashlib, method)).hexdigest()}"
            answers.append(httpx.post(subscriber.callback, content=body, headers=headers, timeout=10))
        return answers


@contextmanager
def serving(app) -> Iterator[str]:
    """An ASGI app on a real uvicorn server on a free loopback port, in a thread: hubs must reach it over HTTP."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
