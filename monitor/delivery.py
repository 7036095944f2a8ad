"""The sender: owes deliveries in the story's transaction, then sends them from the outbox and marks each one.

At-least-once: a delivery is marked sent only after the channel accepted it, one at a time, so a crash
between the two repeats at most the delivery that was in flight (once its claim has expired). Each delivery
and digest is claimed before it is sent, so any number of senders never send one twice.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from monitor.domain import DigestSpec, Outputs, SlackRoute
from monitor.labels import plural, topic_title
from monitor.notify.digest import Digest, build_digest, to_email
from monitor.notify.email import Mailer, MailError
from monitor.notify.slack import SlackError, SlackWebhook, alert_message, batch_message
from monitor.spike_watch import deliver_spikes, sentence
from monitor.spikes import SpikeRule
from monitor.store import outbox, spikes
from monitor.store.views import story_views
from monitor.times import backoff_delay

log = logging.getLogger(__name__)

FIRST_RETRY = 30.0
BATCH_SIZE = 20
BURST = 3  # more alerts than this due at once for one route go as one message: Slack takes about one a second


@dataclass
class SlackChannel:
    route: SlackRoute
    webhook: SlackWebhook


@dataclass
class MailChannel:
    mailer: Mailer
    sender: str
    recipients: list[str]


@dataclass
class Report:
    """What one look at the outbox did."""

    sent: int = 0
    failed: int = 0
    digests: list[str] = field(default_factory=list)


@dataclass
class Sender:
    """Every output channel, built once by the composition root; the clock and clients come in from outside."""

    outputs: Outputs
    topics: list[str]
    sessions: sessionmaker[Session]
    slack: list[SlackChannel]
    mail: MailChannel | None
    clock: Callable[[], datetime]
    max_backoff: float = 3600.0
    claim_seconds: float = 300.0  # how long a claim holds: longer than any one send takes
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    titles: dict[str, str] = field(default_factory=dict)  # topic name -> its title in feeds.yaml
    burst: int = BURST
    spike_rule: SpikeRule | None = None  # None: no coverage spikes are looked for

    def owe_story(self, session: Session, story_id: int, topic: str) -> None:
        """The pipeline's hook, inside the transaction that made the story relevant: owe it to each route and the digest."""
        now = self.clock()
        score = outbox.story_score(session, story_id, topic)
        for channel in self.slack:
            route = channel.route
            if not route.wants(topic, score):
                continue
            release = route.quiet_hours.release_time(now) if route.quiet_hours else None
            outbox.owe(
                session, channel=outbox.SLACK, route=route.name, topic=topic, story_id=story_id,
                due_at=release or now, held=release is not None, now=now,
            )
        if self.wants_digest(topic):
            outbox.owe(
                session, channel=outbox.DIGEST, route=outbox.DIGEST, topic=topic, story_id=story_id,
                due_at=now, held=False, now=now,
            )

    def wants_digest(self, topic: str) -> bool:
        wanted = self.outputs.digest.topics
        return not wanted or topic in wanted

    def deliver_due(self) -> Report:
        """Send every Slack alert and digest that is due; failures are recorded and retried later, never raised."""
        report = Report()
        self.deliver_slack(report)
        deliver_spikes(self, report)
        self.deliver_digests(report)
        return report

    def _retry_at(self, attempts: int, *, not_before: float | None = None) -> datetime:
        """Backoff doubling per failed attempt, but never sooner than the channel asked (a Slack Retry-After)."""
        backoff = backoff_delay(FIRST_RETRY, attempts + 1, self.max_backoff)
        return self.clock() + timedelta(seconds=max(backoff, not_before or 0.0))

    def deliver_slack(self, report: Report) -> None:
        channels = {channel.route.name: channel for channel in self.slack}
        with self.sessions() as session:
            due = outbox.due_deliveries(session, channel=outbox.SLACK, now=self.clock())
        by_route: dict[str, list[outbox.Owed]] = defaultdict(list)
        for owed in due:
            by_route[owed.route].append(owed)
        for route, items in by_route.items():
            channel = channels.get(route)
            if channel is None:
                log.warning("Slack route %s is owed %d alerts but has no webhook configured now", route, len(items))
                continue
            fresh = [item for item in items if not item.held]
            groups = _batches(fresh) if len(fresh) > self.burst else [[item] for item in fresh]
            groups += _batches([item for item in items if item.held])
            for group in groups:
                if not self._send_slack_group(channel, group, report):
                    break  # the webhook is failing: the rest of this route waits for the retry

    def _send_slack_group(self, channel: SlackChannel, group: list[outbox.Owed], report: Report) -> bool:
        with self.sessions.begin() as session:
            ids = outbox.claim_deliveries(
                session, [item.id for item in group], owner=self.owner, now=self.clock(), seconds=self.claim_seconds
            )
        if not ids:
            return True  # another sender has them
        group = [item for item in group if item.id in ids]
        with self.sessions() as session:
            stories = story_views(session, [item.story_id for item in group], topic=group[0].topic)
        if not stories:
            with self.sessions.begin() as session:
                outbox.mark_failed(session, ids, error="the story no longer exists", retry_at=None)
            return True
        archive = self.outputs.archive_url
        title = topic_title(group[0].topic, self.titles.get(group[0].topic))
        if len(group) == 1 and not group[0].held:
            text, blocks = alert_message(stories[0], archive_url=archive, topic=title)
        elif group[0].held:
            text, blocks = batch_message(stories, archive_url=archive, note=self._quiet_note(channel.route), topic=title)
        else:
            text, blocks = batch_message(stories, archive_url=archive, topic=title, heading=plural(len(stories), "new story", "new stories"))
        try:
            channel.webhook.send(text, blocks)
        except SlackError as exc:
            attempts = max(item.attempts for item in group)
            retry_at = None if exc.permanent else self._retry_at(attempts, not_before=exc.retry_after)
            log.error("Slack route %s: %s%s", channel.route.name, exc, "" if retry_at else " (given up)")
            with self.sessions.begin() as session:
                outbox.mark_failed(session, ids, error=str(exc), retry_at=retry_at)
            report.failed += len(ids)
            return False
        with self.sessions.begin() as session:
            outbox.mark_sent(session, ids, now=self.clock())
        report.sent += len(ids)
        log.info("Slack route %s: sent %s", channel.route.name, ", ".join(f"story {item.story_id}" for item in group))
        return True

    @staticmethod
    def _quiet_note(route: SlackRoute) -> str:
        quiet = route.quiet_hours
        return f"Held during quiet hours ({quiet.start:%H:%M}–{quiet.end:%H:%M} {quiet.timezone})." if quiet else ""

    def plan_digests(self, day: date) -> None:
        """The daily job: each topic's digest of `day` becomes due now (idempotent: a second call plans nothing new)."""
        now = self.clock()
        with self.sessions.begin() as session:
            for topic in self.topics:
                if self.wants_digest(topic):
                    outbox.plan_digest(session, topic=topic, day=day.isoformat(), due_at=now, now=now)

    def plan_if_missed(self) -> None:
        """On start: today's digest, when its time passed while the service was down, is planned now."""
        spec = self.outputs.digest
        local = self.clock().astimezone(ZoneInfo(spec.timezone))
        if local.time() >= spec.time:
            self.plan_digests(local.date())

    def deliver_digests(self, report: Report) -> None:
        if self.mail is None:
            return
        with self.sessions() as session:
            due = outbox.due_digests(session, now=self.clock())
        for run in due:
            self._send_digest(run, report)

    def _send_digest(self, run: outbox.DueDigest, report: Report) -> None:
        assert self.mail is not None
        with self.sessions.begin() as session:
            if not outbox.claim_digest(session, run.id, owner=self.owner, now=self.clock(), seconds=self.claim_seconds):
                return  # another sender has it
        day = date.fromisoformat(run.day)
        with self.sessions() as session:
            spiked = spikes.digest_spikes(session, topic=run.topic, day=run.day, until=day_end(day, self.outputs.digest))
        digest, owed = self.build(run.topic, day, spiked=spiked)
        ids = [item.id for item in owed]
        if not owed and not spiked and self.outputs.digest.when_empty == "skip":
            with self.sessions.begin() as session:
                outbox.finish_digest(session, run.id, status="skipped", stories=0, message_id=None, delivery_ids=[], now=self.clock())
            report.digests.append(f"{run.topic} {run.day}: nothing new, not sent")
            return
        message = to_email(digest, sender=self.mail.sender, recipients=self.mail.recipients)
        try:
            self.mail.mailer.send(message)
        except MailError as exc:
            retry_at = None if exc.permanent else self._retry_at(run.attempts)
            log.error("digest %s %s: %s%s", run.topic, run.day, exc, "" if retry_at else " (given up)")
            with self.sessions.begin() as session:
                outbox.fail_digest(session, run.id, error=str(exc), retry_at=retry_at)
            report.failed += 1
            return
        with self.sessions.begin() as session:
            outbox.finish_digest(
                session, run.id, status="sent", stories=digest.stories, message_id=message["Message-ID"], delivery_ids=ids, now=self.clock()
            )
            if spiked:
                spikes.sent(session, [item.id for item in spiked], now=self.clock(), digest_day=run.day)
        report.sent += 1
        report.digests.append(f"{run.topic} {run.day}: {digest.stories} stories to {len(self.mail.recipients)} recipients")
        log.info("digest %s %s sent: %d stories", run.topic, run.day, digest.stories)

    def build(self, topic: str, day: date, *, spiked: list[spikes.OwedSpike] | None = None) -> tuple[Digest, list[outbox.Owed]]:
        """A day's digest and the deliveries it settles: what it carried if already sent, else what is owed up to the day's end.

        It opens with the coverage spikes owed to it (`spiked`: the sender reads them first, to mark them sent after).
        """
        spec = self.outputs.digest
        with self.sessions() as session:
            owed = outbox.digest_deliveries(session, topic=topic, day=day.isoformat(), until=day_end(day, spec))
            stories = story_views(session, [item.story_id for item in owed], topic=topic)
            if spiked is None:
                spiked = spikes.digest_spikes(session, topic=topic, day=day.isoformat(), until=day_end(day, spec))
        digest = build_digest(
            stories,
            day=day,
            topic=topic,
            now=self.clock(),
            subject_template=spec.subject,
            archive_url=self.outputs.archive_url,
            timezone=spec.timezone,
            title=self.titles.get(topic),
            spikes=[sentence(self, item.spike, today=day) for item in spiked],
        )
        return digest, owed


def _batches(items: list[outbox.Owed]) -> list[list[outbox.Owed]]:
    """Deliveries in messages of up to BATCH_SIZE stories, one topic to a message (a story is shown with its topic's score)."""
    by_topic: dict[str, list[outbox.Owed]] = defaultdict(list)
    for item in items:
        by_topic[item.topic].append(item)
    return [same[i : i + BATCH_SIZE] for same in by_topic.values() for i in range(0, len(same), BATCH_SIZE)]


def day_end(day: date, spec: DigestSpec) -> datetime:
    """Midnight after `day` in the digest's time zone: a story relevant before it belongs to that day's digest."""
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=ZoneInfo(spec.timezone))


def digest_day(now: datetime, spec: DigestSpec) -> date:
    """The day a digest sent at `now` reports on: today in the digest's zone (the morning's email covers what came in up to it)."""
    return now.astimezone(ZoneInfo(spec.timezone)).date()
