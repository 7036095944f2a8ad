"""Slack: the Block Kit the builders make, and the webhook client against a real local webhook with faults."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.domain import Source, StoryView
from monitor.notify.slack import (
    MAX_BLOCKS,
    SECTION_CHARS,
    SlackError,
    SlackWebhook,
    alert_message,
    batch_message,
    redact,
)

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
WHY = {
    "closest_example": "example 8: An investigation found hundreds of Chinese-made cameras on military bases…",
    "similarity": 0.69,
    "vendor_phrases": ["Hikvision", "Dahua", "Hangzhou Hikvision"],
    "subject_phrases": ["Chinese-made security cameras"],
    "action_phrases": ["stripped", "remove", "disconnect", "replace the devices"],
    "country_phrases": ["Canada", "OTTAWA"],
    "strongest_signals": ["action_mentions +2.4"],
}


def story(sources: int = 3, **changes) -> StoryView:
    made = [
        Source(
            article_id=i + 1,
            outlet=f"Outlet {i}" if i else "CBC News",
            title=f"Canada strips cameras ({i})",
            url=f"https://news{i}.example/canada-cameras?utm=x&page={i}",
            published=NOW - timedelta(hours=6 - i / 10),
        )
        for i in range(sources)
    ]
    base = StoryView(
        id=12,
        topic="china-surveillance-bans",
        title="Canada orders Hikvision and Dahua cameras stripped from federal buildings",
        url=made[0].url,
        outlet="CBC News",
        published=NOW - timedelta(hours=6),
        first_seen=NOW - timedelta(hours=5),
        relevant_since=NOW - timedelta(hours=5),
        score=0.9731,
        relevant=True,
        vendors=["Hikvision", "Dahua"],
        countries=["CA", "AU"],
        actions=["removal", "procurement_restriction"],
        why=WHY,
        summary="OTTAWA — The Canadian government ordered all federal departments to remove cameras made by Hikvision and Dahua.",
        sources=made,
    )
    return replace(base, **changes)


def texts(blocks: list[dict]) -> list[str]:
    """Every mrkdwn/plain text in the blocks, in order."""
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            found.append(element["text"]["text"] if element["type"] == "button" else element["text"])
    return found


def check_block_kit(text: str, blocks: list[dict]) -> None:
    """The limits Slack enforces (https://docs.slack.dev/reference/block-kit/blocks), so a message is never refused as invalid_blocks."""
    assert text and len(blocks) <= MAX_BLOCKS
    for block in blocks:
        assert block["type"] in {"section", "context", "actions", "header", "divider"}
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn" and 0 < len(block["text"]["text"]) <= SECTION_CHARS
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(len(element["text"]) <= SECTION_CHARS for element in block["elements"])
    for mrkdwn in [text, *texts(blocks)]:
        # outside links, no raw < or >; inside a link, the text part has no raw | or >
        outside = re.sub(r"<(https?://[^|<>\s]+|!date\^[^<>]+)\|[^|<>]*>", "", mrkdwn)
        assert "<" not in outside and ">" not in outside, mrkdwn
        assert not re.search(r"&(?!amp;|lt;|gt;)", outside), mrkdwn


def test_alert_has_the_headline_link_tags_score_evidence_and_other_sources():
    text, blocks = alert_message(story(), archive_url="https://monitor.example/")
    check_block_kit(text, blocks)
    first = blocks[0]["text"]["text"]
    assert first.startswith("*<https://news0.example/canada-cameras?utm=x&amp;page=0|Canada orders Hikvision and Dahua cameras stripped")
    assert "CBC News" in first and "<!date^" in first
    everything = "\n".join(texts(blocks))
    assert "0.97" in everything
    assert "Hikvision, Dahua" in everything
    assert "🇨🇦 Canada" in everything and "🇦🇺 Australia" in everything
    assert "removal" in everything and "procurement restriction" in everything and "procurement_restriction" not in everything
    assert "“stripped”" in everything and "An investigation found hundreds" in everything
    assert "Also in: <https://news1.example/canada-cameras?utm=x&amp;page=1|Outlet 1>, <https://news2.example/" in everything
    assert blocks[-1]["elements"][0]["url"] == "https://monitor.example/stories/12"
    assert "Canada orders Hikvision" in text and "CBC News" in text


def test_alert_without_other_sources_evidence_or_archive_is_short():
    text, blocks = alert_message(story(sources=1, why={}, summary=""))
    check_block_kit(text, blocks)
    assert [block["type"] for block in blocks] == ["section", "context"]
    assert "Also in" not in json.dumps(blocks)


def test_alert_opens_with_the_summary_and_names_the_topic_by_its_title():
    text, blocks = alert_message(story(), topic="Bans on Chinese surveillance technology")
    check_block_kit(text, blocks)
    assert blocks[1]["text"]["text"].startswith("OTTAWA — The Canadian government ordered")
    assert blocks[2]["elements"][0]["text"] == "*Topic* Bans on Chinese surveillance technology"
    assert text.startswith("Bans on Chinese surveillance technology: Canada orders") and "china-surveillance-bans" not in json.dumps(blocks)
    _text, blocks = batch_message([story(id=i) for i in range(5)], topic="Bans on Chinese surveillance technology", heading="5 new stories")
    assert blocks[0]["text"]["text"] == "5 new stories · Bans on Chinese surveillance technology"


def test_titles_with_markup_characters_are_escaped():
    nasty = "Bans <b>now</b> & later | a > b <!channel>"
    text, blocks = alert_message(story(title=nasty, outlet="A&B <News>", url="https://x.example/a?b=1&c=<2>|3"))
    check_block_kit(text, blocks)
    first = blocks[0]["text"]["text"]
    assert "<!channel>" not in first + text  # an article cannot ping the channel
    assert "Bans &lt;b&gt;now&lt;/b&gt; &amp; later ∣ a &gt; b &lt;!channel&gt;" in first
    assert "<https://x.example/a?b=1&amp;c=%3C2%3E%7C3|" in first
    assert "A&amp;B &lt;News&gt;" in first
    assert "&lt;!channel&gt;" in text


def test_forty_sources_and_long_urls_stay_within_block_limits():
    long = story(sources=40)
    long = replace(long, sources=[replace(s, url=s.url + "&" + "x" * 400) for s in long.sources])
    text, blocks = alert_message(long)
    check_block_kit(text, blocks)
    also = next(t for t in texts(blocks) if t.startswith("Also in"))
    assert re.search(r"\+\d+ more$", also)
    shown = also.count("|Outlet ")
    assert 1 <= shown <= 8 and also.endswith(f"+{39 - shown} more")


def test_batch_of_thirty_stories_fits_and_a_batch_of_sixty_counts_the_rest():
    stories = [story(id=i, title=f"Story {i} & co") for i in range(30)]
    text, blocks = batch_message(stories, archive_url="https://monitor.example", note="Held during quiet hours (22:00–07:00 Europe/London).")
    check_block_kit(text, blocks)
    assert blocks[0]["text"]["text"] == "30 stories while you were away"
    assert "quiet hours" in blocks[1]["elements"][0]["text"]
    sections = [block for block in blocks if block["type"] == "section"]
    assert len(sections) == 30 and "Story 29 &amp; co" in sections[-1]["text"]["text"]
    assert "<https://monitor.example/stories/29|archive>" in sections[-1]["text"]["text"]

    text, blocks = batch_message([story(id=i) for i in range(60)], archive_url="https://monitor.example")
    check_block_kit(text, blocks)
    assert len(blocks) == MAX_BLOCKS
    shown = sum(block["type"] == "section" for block in blocks)
    assert blocks[-1]["elements"][0]["text"].startswith(f"…and {60 - shown} more stories: see <https://monitor.example|the archive>")


def test_redact_keeps_the_secret_out():
    url = "https://hooks.slack.com/services/T000/B000/XXXXXXXXsecretABCD"
    assert redact(url) == "hooks.slack.com/…ABCD"


@dataclass
class Webhook:
    """A local incoming webhook: answers each POST with the next scripted reply (the last one repeats) and records the bodies."""

    replies: list[tuple[int, str, dict[str, str]]] = field(default_factory=lambda: [(200, "ok", {})])
    bodies: list[dict] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.bodies.append(json.loads(body))
            hook.times.append(time.monotonic())
            status, reply, headers = hook.replies.pop(0) if len(hook.replies) > 1 else hook.replies[0]
            data = reply.encode()
            self.send_response(status)
            for name, value in {"Content-Type": "text/plain", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T1/B2/secretWXYZ"
    yield hook
    server.shutdown()
    server.server_close()


def test_delivers_the_blocks_to_the_webhook(webhook):
    text, blocks = alert_message(story())
    SlackWebhook(webhook.url).send(text, blocks)
    assert webhook.bodies == [{"text": text, "blocks": blocks}]


def test_500_then_200_is_retried_and_delivered_once(webhook):
    webhook.replies = [(500, "rollup_error", {}), (502, "bad gateway", {}), (200, "ok", {})]
    waits: list[float] = []
    SlackWebhook(webhook.url, attempts=3, sleep=waits.append).send("hi", [])
    assert len(webhook.bodies) == 3 and len(waits) == 2 and all(0 < wait < 5 for wait in waits)


def test_5xx_every_time_gives_a_transient_error_after_the_attempts(webhook):
    webhook.replies = [(503, "service_unavailable", {})]
    with pytest.raises(SlackError) as caught:
        SlackWebhook(webhook.url, attempts=3, sleep=lambda s: None, name="alerts").send("hi", [])
    assert not caught.value.permanent and caught.value.status == 503 and len(webhook.bodies) == 3
    assert "route alerts" in str(caught.value) and "503" in str(caught.value)


def test_429_waits_for_retry_after_then_delivers(webhook):
    webhook.replies = [(429, "rate_limited", {"Retry-After": "1"}), (200, "ok", {})]
    started = time.monotonic()
    SlackWebhook(webhook.url).send("hi", [])
    assert len(webhook.bodies) == 2
    assert 0.95 <= webhook.times[1] - webhook.times[0] and time.monotonic() - started < 5


def test_429_longer_than_max_wait_is_not_waited_in_place(webhook):
    webhook.replies = [(429, "rate_limited", {"Retry-After": "120"})]
    waits: list[float] = []
    with pytest.raises(SlackError) as caught:
        SlackWebhook(webhook.url, max_wait=30, sleep=waits.append).send("hi", [])
    assert not caught.value.permanent and caught.value.retry_after == 120 and not waits and len(webhook.bodies) == 1


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, "no_service", "the webhook was removed or the URL is wrong"),
        (403, "action_prohibited", "restricted posting"),
        (410, "channel_is_archived", "archived"),
        (400, "invalid_blocks", "rejected the message"),
    ],
)
def test_a_bad_webhook_is_a_permanent_error_without_retries(webhook, status, body, reason):
    webhook.replies = [(status, body, {})]
    waits: list[float] = []
    with pytest.raises(SlackError) as caught:
        SlackWebhook(webhook.url, sleep=waits.append, name="alerts").send("hi", [])
    error = caught.value
    assert error.permanent and error.status == status and len(webhook.bodies) == 1 and not waits
    message = str(error)
    assert f"Slack webhook for route alerts (127.0.0.1/…WXYZ) answered {status} {body}" in message and reason in message
    assert "secret" not in message


def test_nothing_listening_is_a_transient_error(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T1/B2/secretWXYZ"
    waits: list[float] = []
    with caplog.at_level("DEBUG"), pytest.raises(SlackError) as caught:
        SlackWebhook(url, attempts=3, sleep=waits.append).send("hi", [])
    assert not caught.value.permanent and caught.value.status is None and len(waits) == 2
    assert "could not be reached after 3 attempts" in str(caught.value) and "refused" in str(caught.value).lower()
    assert "secret" not in caplog.text  # the webhook URL is a secret, even at DEBUG


def test_a_url_that_is_not_http_is_refused_at_once():
    with pytest.raises(ValueError, match="must start with https://"):
        SlackWebhook("hooks.slack.com/services/x")


class FakeTime:
    """A monotonic clock that only sleep moves, recording each wait: pacing tested without waiting."""

    def __init__(self) -> None:
        self.now, self.waits = 100.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


def test_posts_to_one_webhook_are_paced_a_second_apart(webhook):
    fake = FakeTime()
    client = SlackWebhook(webhook.url, sleep=fake.sleep, clock=fake.clock)
    for n in range(3):
        client.send(f"message {n}", [])
    assert fake.waits == [1.0, 1.0] and [body["text"] for body in webhook.bodies] == ["message 0", "message 1", "message 2"]
    fake.now += 0.4
    client.send("a little later", [])
    assert fake.waits[-1] == 0.6
    fake.now += 5
    client.send("much later", [])
    assert len(fake.waits) == 3 and len(webhook.bodies) == 5  # no wait when the last post is old enough
