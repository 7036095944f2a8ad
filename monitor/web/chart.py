"""The coverage chart: a search's stories per day (or week, or month, over long spans) as JSON-ready series, and the
geometry of the inline SVG the search page draws from them (no script, nothing fetched: it holds under the strict CSP)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from monitor.labels import plural
from monitor.store.coverage import DailyCounts

log = logging.getLogger(__name__)

SERIES = 6  # values drawn as lines, the most covered first; the others are counted
DAILY_UP_TO = 120  # days: longer spans are drawn by week
WEEKLY_UP_TO = 3 * 366  # days: longer spans are drawn by month
WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 34, 8, 10, 22  # room for the axis labels
DOTS_UP_TO = 45  # bins: fewer than this, each point of a line is marked


def _bin_start(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _next_bin(start: date, unit: str) -> date:
    if unit == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=7 if unit == "week" else 1)


def coverage_series(counts: DailyCounts, *, split: str, since: date | None, until: date | None) -> dict:
    """The chart's data: bins (first day of each) from since (default: the first story's day) to until (default: the
    last story's), stories in all per bin, and the SERIES values of the split most covered over the span, each per bin."""
    days = sorted(counts.total)
    first, last = since or (days[0] if days else None), until or (days[-1] if days else None)
    if first is None or last is None or first > last:
        return {"split": split, "unit": "day", "since": None, "until": None, "bins": [], "total": [], "series": [], "others": 0}
    span = (last - first).days + 1
    unit = "day" if span <= DAILY_UP_TO else "week" if span <= WEEKLY_UP_TO else "month"
    starts, start = [], _bin_start(first, unit)
    while start <= last:
        starts.append(start)
        start = _next_bin(start, unit)
    place = {start: number for number, start in enumerate(starts)}

    def binned(per_day: dict[date, int]) -> list[int]:
        values = [0] * len(starts)
        for day, number in per_day.items():
            if first <= day <= last:
                values[place[_bin_start(day, unit)]] += number
        return values

    lines = [(value, binned(per_day)) for value, per_day in counts.by_value.items()]
    lines = sorted((line for line in lines if sum(line[1])), key=lambda line: (-sum(line[1]), line[0].casefold()))
    return {
        "split": split,
        "unit": unit,
        "since": first.isoformat(),
        "until": last.isoformat(),
        "bins": [start.isoformat() for start in starts],
        "total": binned(counts.total),
        "series": [{"value": value, "stories": sum(values), "counts": values} for value, values in lines[:SERIES]],
        "others": max(0, len(lines) - SERIES),
    }


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the bin's date and count, shown on hover


@dataclass(frozen=True)
class Line:
    value: str
    points: str  # the polyline's "x,y x,y …"
    dots: list[tuple[float, float]]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    lines: list[Line]
    top: int  # the count at the top of the axis
    axis: list[tuple[float, str]]  # (x, date label) under the bars
    baseline: float  # y of the zero line


def _label(start: str, unit: str) -> str:
    day = date.fromisoformat(start)
    if unit == "month":
        return f"{day:%b %Y}"
    return f"{'week of ' if unit == 'week' else ''}{day.day} {day:%b %Y}"


def _nice_top(peak: int) -> int:
    """The axis' top: the peak rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= step * factor:
                return step * factor
        step *= 10


def layout(series: dict) -> Chart | None:
    """The SVG geometry of coverage_series' data: a bar per bin for all stories, a line per value; None when nothing to draw."""
    bins = series["bins"]
    if not bins or not any(series["total"]):
        return None
    top = _nice_top(max(series["total"]))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_width / len(bins)
    base = TOP + plot_height

    def y(count: int) -> float:
        return round(base - plot_height * count / top, 1)

    unit = series["unit"]
    bars = [
        Bar(round(LEFT + i * step + step * 0.1, 1), y(count), round(max(step * 0.8, 0.5), 1), round(base - y(count), 1), f"{_label(start, unit)}: {plural(count, 'story', 'stories')}")
        for i, (start, count) in enumerate(zip(bins, series["total"]))
    ]
    centre = [round(LEFT + (i + 0.5) * step, 1) for i in range(len(bins))]
    lines = []
    for line in series["series"]:
        points = [(x, y(count)) for x, count in zip(centre, line["counts"])]
        lines.append(Line(line["value"], " ".join(f"{x},{py}" for x, py in points), points if len(bins) <= DOTS_UP_TO else []))
    ticks = sorted({0, len(bins) // 2, len(bins) - 1})
    axis = [(centre[i], _label(bins[i], unit)) for i in ticks]
    return Chart(WIDTH, HEIGHT, bars, lines, top, axis, base)
