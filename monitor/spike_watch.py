"""Coverage spikes out: looked for after polls, each recorded once per day, then one Slack message per route and the
opening lines of the next digest, sent from their outbox with claims and retries as story alerts are."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from monitor.labels import as_utc, spike_sentence, spike_subject, topic_title
from monitor.notify.slack import SlackError, spike_message
from monitor.spikes import day_window, find_spikes, watched_days
from monitor.store import coverage, spikes
from monitor.store.outbox import DIGEST, SLACK

if TYPE_CHECKING:
    from monitor.delivery import Report, Sender

log = logging.getLogger(__name__)


def detect_spikes(sender: Sender) -> list[spikes.SpikeView]:
    """Look for today's spikes of every topic and owe each new one; a spike already recorded today raises nothing again.

    Reads first and writes only when something stands out, so the frequent look costs no write lock on a quiet day.
    """
    rule = sender.spike_rule
    if rule is None:
        return []
    now, zone = sender.clock(), sender.outputs.digest.timezone
    window = day_window(now, zone, rule.baseline_days)
    found = []
    with sender.sessions() as session:
        days = watched_days(window, coverage.first_story_seen(session), zone)
        for topic in sender.topics:
            today = coverage.coverage_counts(session, topic=topic, start=window.start, end=window.end)
            if days < rule.min_history or max(today.values(), default=0) < rule.min_stories:
                continue
            baseline = coverage.coverage_counts(session, topic=topic, start=window.baseline_start, end=window.start)
            found += [(topic, spike) for spike in find_spikes(today, baseline, days=days, rule=rule)]
    if not found:
        return []
    new = []
    with sender.sessions.begin() as session:
        for topic, spike in found:
            recorded = spikes.record(
                session, topic=topic, dimension=spike.dimension, value=spike.value, day=window.day.isoformat(),
                stories=spike.stories, baseline=spike.baseline, p_value=spike.p_value, now=now,
            )  # fmt: skip
            if recorded is not None:
                owe_spike(sender, session, recorded)
                new.append(recorded)
    for spike in new:
        log.info("coverage spike (%s): %s", spike.topic, sentence(sender, spike))
    return new


def owe_spike(sender: Sender, session, spike: spikes.SpikeView) -> None:
    """A new spike is owed to every Slack route that takes its topic (held through quiet hours) and to the next digest."""
    now = sender.clock()
    for channel in sender.slack:
        route = channel.route
        if route.topics and spike.topic not in route.topics:
            continue
        release = route.quiet_hours.release_time(now) if route.quiet_hours else None
        spikes.owe(session, spike, channel=SLACK, route=route.name, due_at=release or now, now=now)
    if sender.wants_digest(spike.topic):
        spikes.owe(session, spike, channel=DIGEST, route=DIGEST, due_at=now, now=now)


def sentence(sender: Sender, spike: spikes.SpikeView, *, today: date | None = None) -> str:
    """ "Hikvision: 9 stories today against 1.2 a day", today being the day in the digest's time zone at `today` or now."""
    if today is None:
        today = as_utc(sender.clock()).astimezone(ZoneInfo(sender.outputs.digest.timezone)).date()
    subject = spike_subject(spike.dimension, spike.value, topic_title(spike.topic, sender.titles.get(spike.topic)))
    return spike_sentence(subject, spike.stories, spike.baseline, date.fromisoformat(spike.day), today)


def archive_link(archive_url: str | None, spike: spikes.SpikeView) -> str | None:
    """The archive's search for the spike's stories of its day."""
    if not archive_url:
        return None
    query = [("topic", spike.topic), ("since", spike.day), ("until", spike.day)]
    if spike.dimension != "topic":
        query.append((spike.dimension, spike.value))
    return f"{archive_url.rstrip('/')}/?{urlencode(query)}"


def deliver_spikes(sender: Sender, report: Report) -> None:
    """Post each spike that is due, one message each; a failure is retried with the alerts' backoff, never raised."""
    channels = {channel.route.name: channel for channel in sender.slack}
    with sender.sessions() as session:
        due = spikes.due_spikes(session, now=sender.clock())
    for owed in due:
        channel = channels.get(owed.route)
        if channel is None:
            log.warning("Slack route %s is owed a coverage spike but has no webhook configured now", owed.route)
            continue
        with sender.sessions.begin() as session:
            if not spikes.claim(session, [owed.id], owner=sender.owner, now=sender.clock(), seconds=sender.claim_seconds):
                continue  # another sender has it
        spike = owed.spike
        title = topic_title(spike.topic, sender.titles.get(spike.topic))
        text, blocks = spike_message(sentence(sender, spike), topic=title, archive_link=archive_link(sender.outputs.archive_url, spike))
        try:
            channel.webhook.send(text, blocks)
        except SlackError as exc:
            retry_at = None if exc.permanent else sender._retry_at(owed.attempts, not_before=exc.retry_after)
            log.error("Slack route %s: coverage spike: %s%s", owed.route, exc, "" if retry_at else " (given up)")
            with sender.sessions.begin() as session:
                spikes.failed(session, [owed.id], error=str(exc), retry_at=retry_at)
            report.failed += 1
            continue
        with sender.sessions.begin() as session:
            spikes.sent(session, [owed.id], now=sender.clock())
        report.sent += 1
        log.info("Slack route %s: sent coverage spike %s %s %s", owed.route, spike.dimension, spike.value, spike.day)
