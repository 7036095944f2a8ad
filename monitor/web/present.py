"""How values read on the pages: dates, tag labels, evidence keys, and links that keep the query."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from jinja2 import Environment
from starlette.requests import Request

from monitor.domain import Config, http_link
from monitor.labels import action_label, country_name, evidence_key, matched_by, signal_words, topic_title


def _parsed(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def day(value: str | datetime | None) -> str:
    when = _parsed(value)
    return f"{when.day} {when:%b %Y}" if when else "date unknown"


def moment(value: str | datetime | None) -> str:
    when = _parsed(value)
    return f"{when.day} {when:%b %Y %H:%M} UTC" if when else "time unknown"


def query_url(request: Request, path: str | None = None, *, drop: tuple[str, ...] = (), **changes: object) -> str:
    """The current query string on another page or path (the token is never copied into links: the cookie has it)."""
    skip = {"token", *drop, *changes}
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in skip and v != ""]
    items += [(k, str(v)) for k, v in changes.items() if v is not None]
    target = path if path is not None else request.url.path
    return target + (f"?{urlencode(items)}" if items else "")


def install_filters(environment: Environment, config: Config) -> None:
    titles = {t.name: topic_title(t.name, t.title) for t in config.topics}
    environment.filters.update(
        day=day, moment=moment, action=action_label, key=evidence_key, country=country_name, signal=signal_words,
        matched_by=lambda hit: matched_by(hit["matched"], hit["similarity"]), topic=lambda name: titles.get(name) or topic_title(name),
        link=http_link, facet_value=lambda value: {"value": value, "count": 0},
    )  # fmt: skip
    environment.globals.update(query_url=query_url, topics=list(titles))
