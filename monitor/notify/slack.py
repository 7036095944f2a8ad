"""Slack: Block Kit messages for one story or a batch, and an incoming-webhook client that retries what is worth retrying."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from monitor.domain import StoryView, http_link
from monitor.labels import action_label, as_utc, country_label, evidence, plural, short_time, shorten, tag_labels
from monitor.times import parse_retry_after

log = logging.getLogger(__name__)
# slack-sdk logs the full webhook URL (a secret) at DEBUG and every failed attempt at ERROR; our errors say it all.
SDK_LOG = logging.getLogger(__name__ + ".sdk")

SECTION_CHARS = 3000  # Block Kit: a section's text
CONTEXT_ELEMENTS = 10  # Block Kit: elements of one context block
MAX_BLOCKS = 50  # Block Kit: blocks of one message
HEADER_CHARS = 150  # Block Kit: a header's plain text
BUTTON_TEXT_CHARS = 75
TITLE_CHARS = 300
TEXT_CHARS = 3000  # the notification fallback; Slack truncates long ones anyway
ALSO_IN = 8  # other outlets named before "+N more"
EVIDENCE_CHARS = 400
SUMMARY_CHARS = 300
MIN_INTERVAL = 1.0  # seconds between posts to one webhook: Slack allows about one message a second
LINK_BAR = "∣"  # stands in for "|" inside link text, where Slack has no escape for it

REASONS = {
    "no_service": "the webhook was removed or the URL is wrong",
    "no_team": "the Slack workspace is gone or the URL is wrong",
    "invalid_token": "the webhook's token is no longer valid; create a new webhook",
    "team_disabled": "the Slack workspace is disabled",
    "action_prohibited": "a workspace admin has restricted posting to this channel",
    "channel_not_found": "the channel was deleted",
    "channel_is_archived": "the channel is archived",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "invalid_payload": "Slack rejected the message as malformed",
    "invalid_blocks": "Slack rejected the message's blocks",
    "invalid_blocks_format": "Slack rejected the message's blocks",
    "too_many_attachments": "the message is too large",
}


class SlackError(Exception):
    """A message Slack did not take; `permanent` says whether sending it again later can help."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > (https://docs.slack.dev/messaging/formatting-message-text#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    """<url|text> with the characters that would end the link early made harmless; the text alone when url is no http(s) link."""
    if http_link(url) is None:
        return escape(text)
    safe_url = escape(url.strip().replace(" ", "%20").replace("|", "%7C").replace("<", "%3C").replace(">", "%3E"))
    return f"<{safe_url}|{escape(text).replace('|', LINK_BAR)}>"


def slack_date(moment: datetime | None) -> str:
    """A time Slack shows in each reader's own zone, with a UTC fallback for old clients."""
    if moment is None:
        return ""
    moment = as_utc(moment)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{short_time(moment)} UTC>"


def _tag_elements(story: StoryView, topic: str) -> list[dict]:
    parts = [f"*Topic* {escape(topic)}"] if topic else []
    parts.append(f"*Score* {story.score:.2f}")
    if story.vendors:
        parts.append("*Vendors* " + escape(", ".join(story.vendors)))
    if story.countries:
        parts.append("*Where* " + escape(", ".join(country_label(code) for code in story.countries)))
    if story.actions:
        parts.append("*Action* " + escape(", ".join(action_label(code) for code in story.actions)))
    return [{"type": "mrkdwn", "text": part[:SECTION_CHARS]} for part in parts[:CONTEXT_ELEMENTS]]


def also_in(story: StoryView, *, limit: int = SECTION_CHARS) -> str:
    """ "Also in: <A>, <B> +3 more": the other outlets, each linked once, as many as fit."""
    seen = {story.outlet}
    others = []
    for source in story.sources:
        if source.url != story.url and source.outlet not in seen:
            seen.add(source.outlet)
            others.append(source)
    if not others:
        return ""
    text, shown = "Also in: ", 0
    for source in others[:ALSO_IN]:
        piece = (", " if shown else "") + link(source.url, source.outlet)
        if len(text) + len(piece) + len(" +999 more") > limit:
            break
        text += piece
        shown += 1
    if shown < len(others):
        text += f" +{len(others) - shown} more"
    return text


def _archive_link(archive_url: str | None, story: StoryView) -> str | None:
    return f"{archive_url.rstrip('/')}/stories/{story.id}" if archive_url else None


def _byline(story: StoryView) -> str:
    when = slack_date(story.published or story.first_seen)
    return " · ".join(part for part in (escape(story.outlet), when) if part)


def alert_message(story: StoryView, *, archive_url: str | None = None, topic: str = "") -> tuple[str, list[dict]]:
    """One story as (notification text, Block Kit blocks): headline linked, outlet and time, its opening, topic, tags, score, why, other sources.

    topic is the topic's title; the opening is the story's summary (labels.lead: no site furniture, no repeated headline).
    """
    title = shorten(story.title, TITLE_CHARS)
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{link(story.url, title)}*\n{_byline(story)}"}}]
    if story.summary.strip():
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(shorten(story.summary, SUMMARY_CHARS))}})
    blocks.append({"type": "context", "elements": _tag_elements(story, topic)})
    why = evidence(story.why)
    if why:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "_Why:_ " + escape(shorten(why, EVIDENCE_CHARS))}]})
    others = also_in(story)
    if others:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": others}})
    archive = _archive_link(archive_url, story)
    if archive:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open in the archive"}, "url": archive}
        blocks.append({"type": "actions", "elements": [button]})
    text = escape(shorten(f"{topic + ': ' if topic else ''}{story.title} ({story.outlet}, score {story.score:.2f})", TEXT_CHARS))
    return text, blocks


def _compact(story: StoryView, archive_url: str | None) -> dict:
    """One story of a batch in one section: headline; byline, score and reach; tags."""
    details = [_byline(story), f"score {story.score:.2f}"]
    outlets = len({source.outlet for source in story.sources})
    if outlets > 1:
        details.append(plural(outlets, "outlet"))
    archive = _archive_link(archive_url, story)
    if archive:
        details.append(link(archive, "archive"))
    tags = escape(", ".join(tag_labels(story.vendors, story.countries, story.actions)))
    text = f"*{link(story.url, shorten(story.title, TITLE_CHARS))}*\n" + " · ".join(details) + (f"\n{tags}" if tags else "")
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_CHARS]}}


def batch_message(
    stories: list[StoryView], *, archive_url: str | None = None, note: str = "", topic: str = "", heading: str = ""
) -> tuple[str, list[dict]]:
    """Several stories in one message (alerts held in quiet hours, or a burst), in the order given; what does not fit is counted at the end."""
    heading = (heading or f"{plural(len(stories), 'story', 'stories')} while you were away") + (f" · {topic}" if topic else "")
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": shorten(heading, HEADER_CHARS)}}]
    if note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(shorten(note, SECTION_CHARS))}]})
    room = MAX_BLOCKS - len(blocks) - 1  # one left for the overflow line
    shown = stories if len(stories) <= room + 1 else stories[:room]
    blocks.extend(_compact(story, archive_url) for story in shown)
    if len(shown) < len(stories):
        rest = len(stories) - len(shown)
        where = f": see {link(archive_url, 'the archive')}" if archive_url else ""
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {plural(rest, 'more story', 'more stories')}{where}"}]})
    titles = "; ".join(story.title for story in stories)
    return escape(shorten(f"{heading}: {titles}", TEXT_CHARS)), blocks


def spike_message(sentence: str, *, topic: str = "", archive_link: str | None = None) -> tuple[str, list[dict]]:
    """A coverage spike as (notification text, blocks): the sentence ("Hikvision: 9 stories today against 1.2 a day"),
    the topic, and a button to that day's stories in the archive."""
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"📈 *{escape(shorten(sentence, SECTION_CHARS - 40))}*"}}]
    if topic:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Coverage spike · *Topic* {escape(shorten(topic, SECTION_CHARS - 40))}"}]})
    if archive_link and http_link(archive_link):
        button = {"type": "button", "text": {"type": "plain_text", "text": "See the stories"}, "url": archive_link}
        blocks.append({"type": "actions", "elements": [button]})
    return escape(shorten(f"Coverage spike: {sentence}", TEXT_CHARS)), blocks


def redact(url: str) -> str:
    """A webhook URL is a secret: show its host and last four characters only."""
    host = urlsplit(url).hostname or "?"
    return f"{host}/…{url[-4:]}"


def retry_after(headers: dict[str, list[str]] | dict[str, str], now: datetime) -> float | None:
    """Seconds from the Retry-After header among slack-sdk's headers (its values may be lists); None when absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    return parse_retry_after(value, now)


class _WaitTooLong(Exception):
    def __init__(self, seconds: float):
        self.seconds = seconds


class _Backoff(RetryHandler):
    """Mixed into slack-sdk's handlers so that waits go through the injected sleep (tests, and no surprise blocking)."""

    sleep: Callable[[float], None] = time.sleep

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        state.next_attempt_requested = True
        self.sleep(self.interval_calculator.calculate_sleep_duration(state.current_attempt))
        state.increment_current_attempt()


class _ServerErrors(_Backoff, ServerErrorRetryHandler):
    """Every 5xx, not only slack-sdk's 500 and 503."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code >= 500


class _ConnectionErrors(_Backoff, ConnectionErrorRetryHandler):
    pass


class _RateLimit(RateLimitErrorRetryHandler):
    """slack-sdk's handler reads Retry-After as an integer and sleeps however long it says; this one caps the wait."""

    def __init__(self, max_retry_count: int, max_wait: float, sleep: Callable[[float], None], now: Callable[[], datetime]):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self.sleep, self.now = sleep, now

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        wait = retry_after(response.headers if response is not None else {}, self.now())
        wait = 1.0 if wait is None else wait
        if wait > self.max_wait:
            raise _WaitTooLong(wait)
        state.next_attempt_requested = True
        self.sleep(wait)
        state.increment_current_attempt()


class SlackWebhook:
    """An incoming webhook, built with its URL; retries 429 (Retry-After, up to max_wait seconds), 5xx and connection errors with backoff, a few times, in place."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_wait: float = 30.0,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        name: str | None = None,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"a Slack webhook URL must start with https:// (got one starting {url[:8]!r})")
        self.attempts = max(1, attempts)
        retries = self.attempts - 1
        server, connection = _ServerErrors(max_retry_count=retries), _ConnectionErrors(
            max_retry_count=retries, error_types=[URLError, ConnectionError, TimeoutError]
        )
        server.sleep = connection.sleep = sleep
        SDK_LOG.setLevel(logging.CRITICAL)
        self._client = WebhookClient(
            url, timeout=timeout, logger=SDK_LOG, retry_handlers=[_RateLimit(retries, max_wait, sleep, now), server, connection]
        )
        self.label = f"Slack webhook{f' for route {name}' if name else ''} ({redact(url)})"
        self.min_interval = min_interval
        self._sleep, self._clock, self._now = sleep, clock, now  # clock spaces the posts; now is the wall clock of Retry-After's dates
        self._last_post = float("-inf")

    def send(self, text: str, blocks: list[dict]) -> None:
        """Posts one message, min_interval after the last one at the soonest; raises SlackError saying what went wrong and whether a later try can help."""
        wait = self._last_post + self.min_interval - self._clock()
        if wait > 0:
            self._sleep(wait)
        try:
            response = self._client.send(text=text, blocks=blocks)
        except _WaitTooLong as exc:
            self._last_post = self._clock()
            raise SlackError(
                f"{self.label} is rate limited for {exc.seconds:.0f} s, longer than we wait in place", permanent=False, status=429, retry_after=exc.seconds
            ) from None
        except (URLError, OSError) as exc:
            self._last_post = self._clock()
            reason = getattr(exc, "reason", None) or exc
            raise SlackError(f"{self.label} could not be reached after {plural(self.attempts, 'attempt')}: {reason}", permanent=False) from None
        self._last_post = self._clock()
        if response.status_code == 200:
            log.debug("%s took the message", self.label)
            return
        raise self._error(response.status_code, (response.body or "").strip(), response.headers or {})

    def _error(self, status: int, body: str, headers: dict) -> SlackError:
        code = shorten(body, 200) or "(no body)"
        if status == 429:
            wait = retry_after(headers, self._now())
            return SlackError(f"{self.label} is still rate limited (429) after {plural(self.attempts, 'attempt')}", permanent=False, status=status, retry_after=wait)
        if status >= 500:
            return SlackError(f"{self.label} answered {status} {code} after {plural(self.attempts, 'attempt')}: Slack is having trouble", permanent=False, status=status)
        reason = REASONS.get(body, "check the webhook URL and the channel")
        return SlackError(f"{self.label} answered {status} {code}: {reason}", permanent=True, status=status)
