"""How often to poll a feed: as often as it publishes, within bounds, never sooner than its publisher or host allow.

A pure function of the feed's recent item times, its hints, its bounds and `now` (see README, "Polling"):

1. rate: new items per day over the last week (fewer days while the feed is new), leaving out the busiest day,
   so one burst does not swing it; none before two whole days are known: the configured interval holds till then;
2. interval: a day / rate / polls per item (a silent week: the maximum), clamped to the feed's bounds;
3. the publisher's hints (RSS ttl, sy:updatePeriod, Cache-Control max-age, Expires) are floors, up to the maximum;
4. the host's politeness is the last floor, above any bound: its feeds, one politeness delay apart, fill the interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.domain import PollHint, span

DAY = 86400.0
WINDOW_DAYS = 7
MIN_DAYS = 2  # whole days of history before the rate is trusted


@dataclass(frozen=True)
class Cadence:
    """A feed's interval, and why it is that in a few words ("3.2 items/day → 40 min")."""

    seconds: int
    reason: str


def _per_day(rate: Rate) -> str:
    return f"{rate.per_day:.0f}" if rate.per_day >= 10 else f"{rate.per_day:.1f}"


@dataclass(frozen=True)
class Rate:
    per_day: float  # new items per day, the busiest day left out
    days: int  # whole days measured
    items: int  # items in those days, the busiest included


def publication_rate(times: Iterable[datetime], *, now: datetime, watched_since: datetime) -> Rate | None:
    """How many new items a day the feed publishes; None while fewer than MIN_DAYS whole days are known.

    Known days reach back to when the feed was first watched, or to its oldest item in the week when older (a feed
    shows its past). Each day's count is taken, the busiest day is left out, and the rest is averaged.
    """
    times = [min(t, now) for t in times]
    oldest = min([watched_since, *(t for t in times if t > now - timedelta(days=WINDOW_DAYS))])
    days = min(WINDOW_DAYS, math.floor((now - oldest) / timedelta(days=1)))
    if days < MIN_DAYS:
        return None
    counts = [0] * days
    for t in times:
        age = (now - t) / timedelta(days=1)
        if age < days:
            counts[int(age)] += 1
    return Rate((sum(counts) - max(counts)) / (days - 1), days, sum(counts))


def host_floor(host: str, feeds_on_host: int, host_delay: float) -> PollHint | None:
    """The shortest interval at which every feed of a host can be polled with the politeness delay between requests."""
    seconds = feeds_on_host * host_delay
    return PollHint(f"host politeness: {feeds_on_host} feeds on {host}, {host_delay:g} s apart", seconds) if seconds > 0 else None


def choose_interval(
    times: Iterable[datetime],
    *,
    now: datetime,
    watched_since: datetime,
    start: float,
    bounds: tuple[float, float],
    polls_per_item: float,
    hints: Iterable[PollHint] = (),
    politeness: PollHint | None = None,
    adaptive: bool = True,
) -> Cadence:
    """The feed's next interval and its reason; `start` is the configured interval, kept while the rate is unknown
    (and always when not adaptive)."""
    low, high = bounds[0], max(bounds)
    rate = publication_rate(times, now=now, watched_since=watched_since) if adaptive else None
    if not adaptive:
        seconds, reason = start, f"configured {span(start)}, adaptive polling off"
    elif rate is None:
        seconds, reason = min(max(start, low), high), f"configured {span(start)} until {MIN_DAYS} days are seen"
        if seconds != start:
            reason += f", bounds {span(low)}–{span(high)}"
    elif rate.per_day == 0:
        items = f"{rate.items} item" + ("" if rate.items == 1 else "s")
        seconds, reason = high, f"quiet: {items} in {rate.days} days → {span(high)}"
    else:
        target = DAY / rate.per_day / polls_per_item
        seconds = min(max(target, low), high)
        reason = f"{_per_day(rate)} items/day → {span(target)}"
        if seconds != target:
            reason += f", bounds {span(low)}–{span(high)}"
    strongest = max(hints, key=lambda hint: hint.seconds, default=None)
    if strongest is not None and min(strongest.seconds, high) > seconds:
        capped = f", capped at {span(high)}" if strongest.seconds > high else ""
        seconds, reason = min(strongest.seconds, high), f"{strongest.source} {span(strongest.seconds)}{capped} {_instead(reason)}"
    if politeness is not None and politeness.seconds > seconds:
        seconds, reason = politeness.seconds, f"{politeness.source} {_instead(reason)}"
    return Cadence(max(1, round(seconds)), reason)


def _instead(reason: str) -> str:
    return f"(rather than {reason.split(' (rather than ')[0]})"
