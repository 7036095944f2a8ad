"""The WebSub callback (/websub/{id}): a hub verifies our intent with a GET and pushes signed feed bodies with a POST.

Hubs cannot send the archive's token, so these paths never need it; the random id names the subscription and the
HMAC signature with its secret proves each push. A verified body is only kept: the pipeline reads it as the feed's bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from monitor.domain import DENIED, SUBSCRIBE, UNSUBSCRIBE, UNSUBSCRIBING, WEBSUB_PATH
from monitor.store import websub as store

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
SIGNATURES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
DENIAL_RETRY = 86400.0  # a hub that denied a subscription is asked again a day later


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def signature_ok(secret: str, header: str | None, body: bytes) -> bool:
    """Whether X-Hub-Signature (method=hex digest, method sha1, sha256, sha384 or sha512) is the body's HMAC with the secret."""
    method, _, given = (header or "").partition("=")
    digest = SIGNATURES.get(method.strip().lower())
    if digest is None or not given.strip():
        return False
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


def _text(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message, status_code=status)


@router.get(WEBSUB_PATH + "{subscription_id}")
def verify_intent(subscription_id: str, request: Request) -> PlainTextResponse:
    """The hub asks whether we asked for this: the challenge is echoed only for a subscription we want, for its topic."""
    params, archive = request.query_params, request.app.state.archive
    mode, topic, challenge = params.get("hub.mode", ""), params.get("hub.topic", ""), params.get("hub.challenge", "")
    now = request.app.state.clock()
    with archive.sessions.begin() as session:
        if mode == DENIED:
            known = store.record_denial(
                session, subscription_id, topic=topic, reason=params.get("hub.reason", "")[:500], retry_at=now + timedelta(seconds=DENIAL_RETRY)
            )
            if known:
                log.warning("a hub denied the push subscription to %s: %s", topic, params.get("hub.reason") or "no reason given")
            return _text(200 if known else 404, "noted" if known else "no such subscription")
        lease = _lease(params.get("hub.lease_seconds"), archive.settings.websub_lease)
        confirmed = mode in (SUBSCRIBE, UNSUBSCRIBE) and bool(challenge) and store.confirm_intent(
            session, subscription_id, mode=mode, topic=topic, lease_seconds=lease, now=now
        )
    if not confirmed:
        return _text(404, "no such subscription")
    log.info("hub verified the %s of %s (lease %ds)", mode, topic, lease)
    return _text(200, challenge)


@router.post(WEBSUB_PATH + "{subscription_id}")
async def receive_push(subscription_id: str, request: Request) -> PlainTextResponse:
    """A hub's push: kept for the pipeline when its signature is right; refused, and kept nowhere, otherwise."""
    archive = request.app.state.archive
    cap = archive.settings.max_feed_bytes
    sub = await run_in_threadpool(_subscription, archive.sessions, subscription_id)
    if sub is None:
        return _text(404, "no such subscription")
    if sub.state == UNSUBSCRIBING:
        return _text(410, "this subscription is being ended")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return _text(413, f"a push may hold at most {cap} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return _text(413, f"a push may hold at most {cap} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not signature_ok(sub.secret, request.headers.get("x-hub-signature"), body):
        log.warning("push for feed %s refused: its X-Hub-Signature is missing or wrong; nothing kept", sub.feed_id)
        return _text(403, "the signature is missing or does not match")
    content_type = request.headers.get("content-type", "")[:200]
    kept = await run_in_threadpool(_keep, archive.sessions, subscription_id, body, content_type, request.app.state.clock())
    return _text(202, "accepted") if kept else _text(404, "no such subscription")


def _subscription(sessions, subscription_id: str):
    with sessions() as session:
        return store.subscription(session, subscription_id)


def _keep(sessions, subscription_id: str, body: bytes, content_type: str, now: datetime) -> bool:
    with sessions.begin() as session:
        return store.add_push(session, subscription_id, body=body, content_type=content_type, now=now)


def _lease(given: str | None, asked: int) -> int:
    """The lease the hub granted; the one asked for when it says none (or nonsense)."""
    return int(given) if given and given.isdigit() and 0 < int(given) <= 10 * 365 * 86400 else asked
