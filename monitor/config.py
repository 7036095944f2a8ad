"""Settings from MONITOR_* environment variables, and feeds.yaml loaded into typed specs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class Settings(BaseSettings):
    """Every setting, read from the environment with the prefix MONITOR_ (see README)."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    config: Path = Field(Path("feeds.yaml"), description="Path of feeds.yaml.")
    database_url: str = Field("sqlite:///data/monitor.db", description="SQLAlchemy URL of the store.")
    model: str = Field("", description="sentence-transformers model name or path; empty: the packaged all-MiniLM-L6-v2.")
    embed_batch_size: int = Field(32, ge=1, description="Texts embedded per model call.")
    model_cache: Path = Field(Path("data/models"), description="Folder of trained topic models (retrained when a topic changes).")
    user_agent: str = Field(
        "monitor/0.1 (news monitoring bot; set MONITOR_USER_AGENT to add a contact address)",
        description="User-Agent of every request; add a contact address in production.",
    )
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(20.0, gt=0, description="Seconds to wait for each read.")
    max_feed_bytes: int = Field(10_000_000, gt=0, description="Largest feed document read.")
    max_page_bytes: int = Field(5_000_000, gt=0, description="Largest article page read.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed per request.")
    host_concurrency: int = Field(2, ge=1, description="Requests in flight to one host at once.")
    host_delay: float = Field(0.5, ge=0, description="Seconds between two requests to one host.")
    fetch_workers: int = Field(8, ge=1, description="Threads fetching feeds and pages.")
    retry_after_wait: float = Field(10.0, ge=0, description="Longest Retry-After waited for in place; longer ones reschedule.")
    max_backoff: float = Field(6 * 3600, gt=0, description="Longest wait, in seconds, before retrying a failing feed.")
    full_refresh: float = Field(
        6 * 3600, ge=0, description="Seconds after which a feed is fetched without conditional headers, to catch servers whose ETag lies."
    )


def parse_duration(value: Any) -> int:
    """Seconds from 30m, 1h30m, 90s, 2d or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 1h or 900")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and DURATION_PART.sub("", text).strip() == "":
            seconds = sum(float(n) * DURATION_UNITS[u.lower()] for n, u in DURATION_PART.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration such as 30m, 1h or 900")
    if seconds < 60:
        raise ValueError("polling more often than once a minute is not allowed")
    return int(seconds)


class FeedSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    url: str
    interval: int = 1800
    language: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)


class TopicSpec(BaseModel):
    """A watched topic: what it is about and the words that show it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str
    threshold: float | None = Field(None, ge=0, le=1)
    examples: list[str] = Field(default_factory=list)
    negative_examples: list[str] = Field(default_factory=list)
    vendors: dict[str, list[str]] = Field(default_factory=dict)
    countries: dict[str, list[str]] = Field(default_factory=dict)
    actions: dict[str, list[str]] = Field(default_factory=dict)
    subjects: list[str] = Field(default_factory=list)
    training: list[Path] = Field(default_factory=list)

    @field_validator("training")
    @classmethod
    def _files_exist(cls, paths: list[Path]) -> list[Path]:
        for path in paths:
            if not path.is_file():
                raise ValueError(f"training file {path} not found")
        return paths


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feeds: list[FeedSpec] = Field(default_factory=list)
    topics: list[TopicSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (("feed", [f.name for f in self.feeds]), ("topic", [t.name for t in self.topics])):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"two {kind}s are named {name!r}")
                seen.add(name)
        return self

    def topic(self, name: str | None) -> TopicSpec:
        if name is None:
            return self.topics[0]
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"no topic named {name!r}; known: {', '.join(t.name for t in self.topics)}")


class ConfigError(Exception):
    """feeds.yaml is unreadable or invalid; the message names file, line and field."""


def _line_index(node: yaml.Node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map each key path of a YAML document to the 1-based line it starts on."""
    index = {} if index is None else index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            index[child] = key.start_mark.line + 1
            _line_index(value, child, index)
            index[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), index)
    return index


def _resolve_topic_files(raw: dict, base: Path) -> None:
    """Replace {file: path} examples by the file's text (a missing one is skipped with a warning);
    make training paths absolute."""
    for topic in raw.get("topics") or []:
        if not isinstance(topic, dict):
            continue
        if isinstance(topic.get("training"), list):
            topic["training"] = [str((base / str(p)).resolve()) for p in topic["training"]]
        for key in ("examples", "negative_examples"):
            items = topic.get(key)
            if not isinstance(items, list):
                continue
            texts = []
            for item in items:
                if isinstance(item, dict) and set(item) == {"file"}:
                    path = (base / str(item["file"])).resolve()
                    if path.is_file():
                        texts.append(path.read_text(encoding="utf-8", errors="replace"))
                    else:
                        log.warning("topic %s: example file %s not found, skipped", topic.get("name"), path)
                else:
                    texts.append(item)
            topic[key] = texts


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping with 'feeds' and 'topics'")
    lines = _line_index(node) if node is not None else {}
    _resolve_topic_files(raw, path.parent)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{line}: {field}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(problems)) from exc
