"""Settings from MONITOR_* environment variables, and feeds.yaml loaded into typed specs."""

from __future__ import annotations

import logging
import os
import re
import string
import datetime as dt
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger(__name__)

DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")  # what the demo and the tests serve from
MIN_INTERVAL = 60
MAX_INTERVAL = 30 * 86400
DAY = 86400.0
YAML_EXPANSION_BUDGET = 100_000  # nodes a document may hold once its aliases are expanded; the shipped file has ~600


class Settings(BaseSettings):
    """Every setting, read from the environment with the prefix MONITOR_ (see README)."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", allow_inf_nan=False)

    config: Path = Field(Path("feeds.yaml"), description="Path of feeds.yaml.")
    database_url: str = Field("sqlite:///data/monitor.db", description="SQLAlchemy URL of the store.")
    model: str = Field("", description="sentence-transformers model name or path; empty: the packaged all-MiniLM-L6-v2.")
    embed_batch_size: int = Field(32, ge=1, description="Texts embedded per model call.")
    embed_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="What runs the model: torch, ONNX Runtime (onnx), or its int8 form (onnx-int8; needs the onnx extra)."
    )
    embed_max_tokens: int = Field(256, ge=16, le=512, description="Tokens of each article the model reads (the packaged model's limit is 256).")
    model_cache: Path = Field(Path("data/models"), description="Folder of trained topic models (retrained when a topic changes) and of the ONNX export of the embedding model.")
    user_agent: str = Field(
        "monitor/0.1 (news monitoring bot; set MONITOR_USER_AGENT to add a contact address)",
        description="User-Agent of every request; add a contact address in production.",
    )
    connect_timeout: float = Field(10.0, gt=0, le=3600, description="Seconds to wait for a connection.")
    read_timeout: float = Field(20.0, gt=0, le=3600, description="Seconds to wait for each read.")
    max_feed_bytes: int = Field(10_000_000, gt=0, description="Largest feed document read.")
    max_page_bytes: int = Field(5_000_000, gt=0, description="Largest article page read.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed per request.")
    host_concurrency: int = Field(2, ge=1, description="Requests in flight to one host at once.")
    host_delay: float = Field(0.5, ge=0, le=3600, description="Seconds between two requests to one host.")
    fetch_workers: int = Field(8, ge=1, description="Threads fetching feeds and pages.")
    retry_after_wait: float = Field(10.0, ge=0, le=DAY, description="Longest Retry-After waited for in place; longer ones reschedule.")
    max_backoff: float = Field(6 * 3600, gt=0, le=30 * DAY, description="Longest wait, in seconds, before retrying a failing feed.")
    full_refresh: float = Field(
        6 * 3600, ge=0, le=30 * DAY, description="Seconds after which a feed is fetched without conditional headers, to catch servers whose ETag lies."
    )
    smtp_host: str = Field("", description="SMTP server of the digest; empty: no digest is sent.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 implicit TLS, 25 plain).")
    smtp_tls: Literal["none", "starttls", "ssl"] = Field("starttls", description="SMTP security: none, starttls or ssl (implicit TLS).")
    smtp_user: str = Field("", description="SMTP user; empty: no login.")
    smtp_password: str = Field("", description="SMTP password (a secret: environment only).")
    smtp_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds to wait for the SMTP server.")
    mail_from: str = Field("monitor@localhost", description="From address of the digest.")
    digest_to: str = Field("", description="Comma-separated digest recipients; overrides the recipients in feeds.yaml.")
    slack_webhook_url: str = Field("", description="The default Slack incoming webhook (a secret); routes may name other variables.")
    delivery_interval: float = Field(15.0, gt=0, le=DAY, description="Seconds between two looks at the outbox for alerts and digests to send; a commit that owes an alert wakes the sender at once.")
    delivery_max_backoff: float = Field(3600.0, gt=0, le=30 * DAY, description="Longest wait, in seconds, before retrying a failed delivery.")
    slack_max_wait: float = Field(30.0, ge=0, le=DAY, description="Longest Slack Retry-After waited for in place; longer ones retry later from the outbox.")
    api_token: str = Field("", description="When set, the archive's pages and API require it (a secret); empty: open.")
    broker_url: str = Field(
        "", description="Celery broker (redis://… or amqp://…); set: `monitor run` only schedules and `monitor worker`s poll; empty: one process does all."
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Port on which a process that polls serves its own /metrics; 0: none.")
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) that may be fetched from although not public, e.g. 10.1.0.0/16; "
        "loopback, private, link-local and other non-public addresses are refused otherwise.",
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    poll_lease: float = Field(600.0, gt=0, description="Seconds a feed stays leased to one poll; a poll not finished by then is handed to another worker.")
    delivery_claim: float = Field(300.0, gt=0, description="Seconds a sender holds an alert or digest it is sending; a sender that died is replaced after it.")

    def digest_recipients(self, configured: list[str]) -> list[str]:
        override = [address.strip() for address in self.digest_to.split(",") if address.strip()]
        return override or configured


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
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:  # also refuses .inf and .nan
        raise ValueError("an interval must be between 1 minute and 30 days")
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
    title: str | None = Field(None, description="What readers see in the digest, Slack and the archive; default: the name in words.")
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


def _clock_time(value: str) -> time:
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day such as 07:00") from None


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone such as Europe/London or UTC") from None
    return name


SUBJECT_FIELDS = ("count", "stories", "topic", "day", "articles", "countries")
DEFAULT_SUBJECT = "{stories} on {topic}, {day:%d %b %Y}"


def check_subject_template(template: str) -> str:
    """The template back when str.format can fill it with the digest's fields; else ValueError saying what is wrong.

    Fields: {count} (a number), {stories} ("1 story", "7 stories"), {topic}, {day} (a date: {day:%d %b} works),
    {articles}, {countries}.
    """
    allowed = ", ".join("{" + name + "}" for name in SUBJECT_FIELDS)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"subject template {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name in fields:
        if name not in SUBJECT_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            raise ValueError(f"subject template {template!r}: unknown field {shown}; use {allowed}")
    try:
        template.format(count=7, stories="7 stories", topic="topic", day=dt.date(2026, 1, 1), articles=19, countries=3)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"subject template {template!r}: {exc}") from None
    return template



class QuietHours(BaseModel):
    """A daily window in which alerts are held, then sent as one message when it ends."""

    model_config = ConfigDict(extra="forbid")

    start: time
    end: time
    timezone: str = "UTC"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> time:
        return value if isinstance(value, time) else _clock_time(str(value))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _zone(value)

    def release_time(self, now: datetime) -> datetime | None:
        """When an alert made at `now` may go out: None when now is outside the window."""
        local = now.astimezone(ZoneInfo(self.timezone))
        start, end = self.start, self.end
        clock = local.time().replace(tzinfo=None)
        inside = start <= clock < end if start < end else (clock >= start or clock < end)
        if not inside or start == end:
            return None
        release = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
        if release <= local:
            release += timedelta(days=1)
        return release.astimezone(now.tzinfo)


class SlackRoute(BaseModel):
    """Where a topic's alerts go: a webhook named by the environment variable that holds its URL."""

    model_config = ConfigDict(extra="forbid")

    webhook: str = Field("MONITOR_SLACK_WEBHOOK_URL", pattern=r"^[A-Z_][A-Z0-9_]*$")
    name: str = ""
    topics: list[str] = Field(default_factory=list)  # empty: every topic
    min_score: float = Field(0.0, ge=0, le=1)
    quiet_hours: QuietHours | None = None

    @model_validator(mode="after")
    def _named(self) -> SlackRoute:
        self.name = self.name or self.webhook
        return self

    def url(self, settings: Settings) -> str:
        """The webhook URL from the environment (MONITOR_SLACK_WEBHOOK_URL also through Settings)."""
        if self.webhook == "MONITOR_SLACK_WEBHOOK_URL":
            return settings.slack_webhook_url or os.environ.get(self.webhook, "")
        return os.environ.get(self.webhook, "")

    def wants(self, topic: str, score: float) -> bool:
        return (not self.topics or topic in self.topics) and score >= self.min_score


class DigestSpec(BaseModel):
    """The daily email: when, to whom, and how its subject reads."""

    model_config = ConfigDict(extra="forbid")

    time: dt.time = Field(default_factory=lambda: dt.time(7, 0))
    timezone: str = "UTC"
    recipients: list[str] = Field(default_factory=list)
    subject: str = DEFAULT_SUBJECT
    when_empty: Literal["send", "skip"] = "send"
    topics: list[str] = Field(default_factory=list)  # empty: every topic

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> dt.time:
        return value if isinstance(value, dt.time) else _clock_time(str(value))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _zone(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return check_subject_template(value)


class Outputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack: list[SlackRoute] = Field(default_factory=lambda: [SlackRoute()])
    digest: DigestSpec = Field(default_factory=DigestSpec)
    archive_url: str | None = None  # where `monitor serve` is reachable by readers: links in alerts and digests

    @field_validator("archive_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else None


class Misplaced(ValueError):
    """A model-level error that knows the field it is about, so the error names that field's line."""

    def __init__(self, message: str, loc: tuple) -> None:
        super().__init__(message)
        self.loc = loc


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feeds: list[FeedSpec] = Field(default_factory=list)
    topics: list[TopicSpec] = Field(min_length=1)
    outputs: Outputs = Field(default_factory=Outputs)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (("feed", [f.name for f in self.feeds]), ("topic", [t.name for t in self.topics])):
            seen: dict[str, int] = {}
            for index, name in enumerate(names):
                if name in seen:
                    raise Misplaced(f"two {kind}s are named {name!r} ({kind}s.{seen[name]} and this one)", (f"{kind}s", index, "name"))
                seen[name] = index
        known = {topic.name for topic in self.topics}
        routed = [t for route in self.outputs.slack for t in route.topics] + self.outputs.digest.topics
        for name in routed:
            if name not in known:
                raise ValueError(f"outputs name the topic {name!r}, which is not defined; known: {', '.join(sorted(known))}")
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


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if seen != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (first on line {seen})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node, budget: int = YAML_EXPANSION_BUDGET) -> None:
    """Refuse a document whose aliases expand past the budget (a "billion laughs"), or refer to themselves.

    Each node's expanded size is counted once (memoised), so the check itself costs the size of the text.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to the collection it is in", node.start_mark)
        open_nodes.add(id(node))
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else []
        )
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(id(node))
        if total > budget:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand this to more than {budget} values; write them out instead", node.start_mark
            )
        sizes[id(node)] = total
        return total

    size(root)


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
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save the file as UTF-8") from None
    loader = _ConfigLoader(source)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: collections nested too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping with 'feeds' and 'topics'")
    lines = _line_index(node) if node is not None else {}
    _resolve_topic_files(raw, path.parent)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"]) + getattr(error.get("ctx", {}).get("error"), "loc", ())
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{line}: {field}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(problems)) from exc
