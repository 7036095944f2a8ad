"""Coverage spikes: today's new stories of a topic, vendor or country against the days before, by a Poisson upper-tail test.

Pure: the counts, the day's boundaries and the rule come in; the store counts and the sender posts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scipy.stats import poisson

from monitor.config import Settings
from monitor.domain import SPIKE_DIMENSIONS
from monitor.labels import as_utc

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (dimension, value): ("topic", name), ("vendor", "Hikvision"), ("country", "GB")


@dataclass(frozen=True)
class SpikeRule:
    """When a day's count is a spike (README, "Coverage spikes"): all of min_stories, min_ratio × rate and p ≤ p_value."""

    baseline_days: int = 14
    min_stories: int = 5
    p_value: float = 0.0001
    rate_floor: float = 0.5
    min_ratio: float = 2.0
    interval: float = 300.0  # seconds between two looks, in the service

    @classmethod
    def from_settings(cls, settings: Settings) -> SpikeRule:
        return cls(
            baseline_days=settings.spike_baseline_days,
            min_stories=settings.spike_min_stories,
            p_value=settings.spike_p_value,
            rate_floor=settings.spike_rate_floor,
            min_ratio=settings.spike_min_ratio,
            interval=settings.spike_interval,
        )

    @property
    def min_history(self) -> int:
        """Days the monitor must have watched before a day can stand out: half the baseline (a new monitor's first busy day is no spike)."""
        return max(1, self.baseline_days // 2)


@dataclass(frozen=True)
class Window:
    """Today in the desk's time zone, and the baseline days before it, as UTC instants."""

    day: date
    baseline_start: datetime
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Found:
    dimension: str
    value: str
    stories: int  # today's new stories so far
    baseline: float  # new stories a day over the baseline days (before the floor)
    p_value: float


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return as_utc(datetime.combine(day, time(0, 0), tzinfo=zone))


def day_window(now: datetime, timezone: str, baseline_days: int) -> Window:
    """The local day holding `now` in `timezone` (midnight to midnight, right across DST), and the baseline_days before it."""
    zone = ZoneInfo(timezone)
    today = as_utc(now).astimezone(zone).date()
    return Window(
        day=today,
        baseline_start=_midnight(today - timedelta(days=baseline_days), zone),
        start=_midnight(today, zone),
        end=_midnight(today + timedelta(days=1), zone),
    )


def watched_days(window: Window, first_seen: datetime | None, timezone: str) -> int:
    """Baseline days on which the monitor was already watching (it first saw a story on `first_seen`'s day)."""
    if first_seen is None:
        return 0
    start = max(window.baseline_start, _midnight(as_utc(first_seen).astimezone(ZoneInfo(timezone)).date(), ZoneInfo(timezone)))
    return max(0, round((window.start - start).total_seconds() / 86400))


def upper_tail(stories: int, rate: float) -> float:
    """P(X ≥ stories) for X ~ Poisson(rate): how often a day this busy comes by chance."""
    return float(poisson.sf(stories - 1, rate))


def find_spikes(today: dict[Key, int], baseline: dict[Key, int], *, days: int, rule: SpikeRule) -> list[Found]:
    """The keys whose count today stands out against their baseline (totals over `days` watched days), most unlikely first.

    A spike needs at least rule.min_stories stories, at least rule.min_ratio times the baseline rate, and an upper tail
    of at most rule.p_value; the rate is floored at rule.rate_floor so that a value never or rarely seen before needs
    several stories in one day. Nothing is a spike before the monitor has watched rule.min_history days.
    """
    if days < rule.min_history:
        return []
    found = []
    for key, stories in today.items():
        if stories < rule.min_stories:
            continue
        mean = baseline.get(key, 0) / days
        rate = max(mean, rule.rate_floor)
        if stories < rule.min_ratio * rate:
            continue
        tail = upper_tail(stories, rate)
        if tail <= rule.p_value:
            found.append(Found(dimension=key[0], value=key[1], stories=stories, baseline=mean, p_value=tail))
    return sorted(found, key=lambda spike: (spike.p_value, SPIKE_DIMENSIONS.index(spike.dimension), spike.value))
