"""WebSub (W3C Recommendation) as plain functions over plain data: where a feed's hub is, what to ask it and when,
and whether push can be trusted so that polling may rest. The clock is always an argument."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urljoin

from monitor.domain import ACTIVE, SUBSCRIBE, UNSUBSCRIBE, UNSUBSCRIBING, WEBSUB_PATH, ParsedFeed, Subscription, http_link

log = logging.getLogger(__name__)

FORGET = "forget"  # an unsubscription the hub never confirmed: the subscription is dropped here
RENEW_AT = 0.8  # share of a lease after which it is renewed, so a hub that is slow to verify still has time
VERIFY_WAIT = 600.0  # seconds a hub has to verify an intent before the request counts as unanswered
RETRY_FIRST = 300.0  # seconds before a failed request is made again (doubling per failure)


@dataclass(frozen=True)
class HubLinks:
    """Where to subscribe (the hub) and to what (the topic: the feed's rel="self")."""

    hub: str
    topic: str


def discover(header_links: Mapping[str, str], parsed: ParsedFeed, url: str) -> HubLinks | None:
    """The feed's hub and topic: the HTTP Link header first, then the feed's own links, as the spec orders;
    without rel="self" the topic is the URL fetched. None when no http(s) hub is named."""
    hub = header_links.get("hub") or parsed.hub
    hub = http_link(urljoin(url, hub)) if hub else None
    if hub is None:
        return None
    topic = header_links.get("self") or parsed.self_url
    return HubLinks(hub, http_link(urljoin(url, topic)) if topic else url)


def callback_url(public_url: str, subscription_id: str) -> str:
    return public_url.rstrip("/") + WEBSUB_PATH + subscription_id


def request_form(mode: str, *, topic: str, callback: str, secret: str | None = None, lease_seconds: int | None = None) -> dict[str, str]:
    """The form a subscriber POSTs to a hub (spec 5.1)."""
    form = {"hub.mode": mode, "hub.topic": topic, "hub.callback": callback}
    if mode == SUBSCRIBE:
        if secret:
            form["hub.secret"] = secret
        if lease_seconds:
            form["hub.lease_seconds"] = str(lease_seconds)
    return form


def renewal_due(sub: Subscription, now: datetime) -> bool:
    """A lease is renewed once RENEW_AT of it has passed (or when its length is unknown)."""
    if sub.lease_expires_at is None or sub.verified_at is None:
        return True
    span = sub.lease_expires_at - sub.verified_at
    return now >= sub.lease_expires_at - span * (1 - RENEW_AT)


def next_step(sub: Subscription | None, hub: HubLinks | None, *, now: datetime) -> str | None:
    """What to ask the hub now: SUBSCRIBE (new, moved, a renewal, or again after a failure or silence),
    UNSUBSCRIBE (the feed no longer names a hub, or is gone), FORGET (an unsubscription the hub never
    confirmed), or None (nothing, or waiting for the hub's verification or the next try)."""
    if sub is None:
        return SUBSCRIBE if hub else None
    waiting = sub.next_try_at is not None and now < sub.next_try_at
    if sub.state == UNSUBSCRIBING:
        return None if waiting else FORGET
    if hub is None:
        return UNSUBSCRIBE
    if (sub.hub_url, sub.topic_url) != (hub.hub, hub.topic):
        return SUBSCRIBE  # the feed moved hubs: a subscription of its own, with a new secret
    if waiting:
        return None
    if sub.state != ACTIVE:
        return SUBSCRIBE
    return SUBSCRIBE if renewal_due(sub, now) else None


def push_healthy(sub: Subscription | None, *, interval: float, now: datetime) -> bool:
    """Push is trusted while its lease runs and the hub has been heard from (a push, or a verification)
    within the feed's own polling interval; otherwise polling carries the feed."""
    if sub is None or sub.state != ACTIVE or sub.lease_expires_at is None or sub.lease_expires_at <= now:
        return False
    heard = [t for t in (sub.last_push_at, sub.verified_at) if t]
    return bool(heard) and now - max(heard) <= timedelta(seconds=interval)


def poll_due(
    *,
    healthy: bool,
    next_due: datetime | None,
    last_polled: datetime | None,
    deferred_due: datetime | None,
    safety: float,
    error_count: int,
    now: datetime,
) -> datetime | None:
    """The feed's next poll as push would set it, or None to leave it as the last poll set it.

    While push is healthy, polls are put off to one every `safety` seconds (a safety net; never sooner than the
    poll itself set, and a failing feed keeps its backoff). When push goes quiet, a poll that push put off is
    brought back to now, and polling carries the feed at its own interval again.
    """
    if healthy:
        if error_count or last_polled is None:
            return None
        target = last_polled + timedelta(seconds=safety)
        return target if next_due is None or next_due < target else None
    if deferred_due is not None and next_due == deferred_due:
        return now
    return None
