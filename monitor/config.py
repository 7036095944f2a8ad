"""Settings from MONITOR_* environment variables, and feeds.yaml loaded into typed specs."""

from __future__ import annotations

import logging
import re
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, IPvAnyNetwork, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from monitor.specs import MAX_INTERVAL, MIN_INTERVAL, Config

log = logging.getLogger(__name__)

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")  # what the demo and the tests serve from
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
    vector_search: Literal["auto", "memory", "database"] = Field(
        "auto",
        description="Where the archive searches by meaning: memory (NumPy beside the web server), database (pgvector, on a PostgreSQL that has it) or auto (memory: at a million articles faster and nearer to exact search than pgvector 0.6.2 and 0.8.5).",
    )
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
    poll_adaptive: bool = Field(
        True, description="Each feed's interval follows how often it publishes (README, Polling); false: every feed keeps its configured interval."
    )
    poll_min_interval: float = Field(300.0, ge=MIN_INTERVAL, le=MAX_INTERVAL, description="Shortest adaptive interval, in seconds, of a feed without its own min_interval.")
    poll_max_interval: float = Field(
        86400.0, ge=MIN_INTERVAL, le=MAX_INTERVAL, description="Longest adaptive interval, in seconds, of a feed without its own max_interval; also caps the publisher's hints."
    )
    polls_per_item: float = Field(4.0, gt=0, le=100, description="Polls per expected new item: the adaptive interval is a day / the feed's items a day / this.")
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
    @model_validator(mode="after")
    def _ordered_bounds(self) -> Settings:
        if self.poll_min_interval > self.poll_max_interval:
            raise ValueError("MONITOR_POLL_MIN_INTERVAL is longer than MONITOR_POLL_MAX_INTERVAL")
        return self

    poll_lease: float = Field(600.0, gt=0, description="Seconds a feed stays leased to one poll; a poll not finished by then is handed to another worker.")
    delivery_claim: float = Field(300.0, gt=0, description="Seconds a sender holds an alert or digest it is sending; a sender that died is replaced after it.")
    spike_interval: float = Field(300.0, gt=0, le=DAY, description="Seconds between two looks for coverage spikes (also after every `monitor poll`).")
    spike_baseline_days: int = Field(14, ge=2, le=365, description="Days before today whose mean number of new stories a day is the baseline of a spike.")
    spike_min_stories: int = Field(5, ge=1, description="Fewest new stories in a day that can be a spike.")
    spike_p_value: float = Field(0.0001, gt=0, lt=1, description="A day is a spike when so many stories would come by chance at the baseline rate less often than this (Poisson upper tail).")
    spike_rate_floor: float = Field(0.5, gt=0, description="Stories a day the baseline counts as at least, so that a rarely named vendor or country does not spike on a few stories.")
    spike_min_ratio: float = Field(2.0, ge=1, description="A spike is also at least this many times the baseline rate.")

    public_url: str = Field(
        "", description="Public address of `monitor serve` that WebSub hubs can reach (https://monitor.example.org); set: feeds that "
        "advertise a hub are subscribed and pushed to <url>/websub/<id>; empty: no push, polling only."
    )
    websub_lease: int = Field(10 * 86400, ge=300, le=365 * 86400, description="Seconds of lease asked of a WebSub hub; renewed at 80 % of the lease granted.")
    push_safety_poll: float = Field(
        6 * 3600, ge=60, le=30 * DAY, description="While push is healthy a feed is still polled this often (never more often than its interval), as a safety net."
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"{value!r} is not an http(s) address such as https://monitor.example.org")
        return value

    def webhook_url(self, variable: str) -> str:
        """A Slack route's webhook URL from the environment variable it names (MONITOR_SLACK_WEBHOOK_URL also through Settings)."""
        if variable == "MONITOR_SLACK_WEBHOOK_URL":
            return self.slack_webhook_url or os.environ.get(variable, "")
        return os.environ.get(variable, "")

    def digest_recipients(self, configured: list[str]) -> list[str]:
        override = [address.strip() for address in self.digest_to.split(",") if address.strip()]
        return override or configured


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


def _resolve_topic_files(raw: dict, base: Path) -> list[tuple[tuple, str]]:
    """Replace {file: path} examples by the file's text (a missing one is skipped with a warning);
    make training paths absolute. Returns (key path, problem) for each training file that is missing."""
    missing = []
    for index, topic in enumerate(raw.get("topics") or []):
        if not isinstance(topic, dict):
            continue
        if isinstance(topic.get("training"), list):
            topic["training"] = [str((base / str(p)).resolve()) for p in topic["training"]]
            missing += [(("topics", index, "training"), f"training file {p} not found") for p in topic["training"] if not Path(p).is_file()]
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
    return missing


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
    missing = _resolve_topic_files(raw, path.parent)
    problems = [f"{path}:{lines.get(loc, 1)}: {'.'.join(map(str, loc))}: {problem}" for loc, problem in missing]
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"]) + getattr(error.get("ctx", {}).get("error"), "loc", ())
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{line}: {field}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(problems)) from exc
    if problems:
        raise ConfigError("\n".join(problems))
    return config
