"""The time rules every layer shares: an article's date, the wait after failures, and a server's Retry-After."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone


def article_time(published: datetime | None, seen: datetime) -> datetime:
    """An article's date: when it says it was published, unless it says nothing or a time after we saw it
    (a clock set wrong, a date misread), then when we first saw it."""
    return published if published is not None and published <= seen else seen


def backoff_delay(base: float, failures: int, cap: float) -> float:
    """Seconds to wait after the n-th consecutive failure: the base, doubled each time, capped."""
    return min(base * 2 ** max(failures - 1, 0), cap)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date, counted from now); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = http_date(value)
    return None if when is None else max(0.0, (when - now).total_seconds())


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (Retry-After, Expires, Date) as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
