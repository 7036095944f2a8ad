"""The tables. Migrations in store/migrations/ create them; a test checks they agree."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Feed(Base):
    """A source, with the polling state that lets a restart resume where it stopped."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    interval_seconds: Mapped[int] = mapped_column(Integer)  # configured: where polling starts
    min_interval_seconds: Mapped[int | None] = mapped_column(Integer)  # the feed's own bounds; None: the settings'
    max_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    poll_interval: Mapped[int | None] = mapped_column(Integer)  # the interval chosen at the last poll (cadence.py)
    poll_reason: Mapped[str | None] = mapped_column(Text)  # why: "3.2 items/day → 1 h 52 min", "ttl 1 h (…)"
    poll_hints: Mapped[list | None] = mapped_column(JSON)  # the document's own hints, [[source, seconds], …]
    language: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    last_full_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a poll is enqueued or running until then
    leased_by: Mapped[str | None] = mapped_column(String(100))  # the lease's token: the task that may poll
    hub_url: Mapped[str | None] = mapped_column(Text)  # the WebSub hub the feed advertises, as last read
    topic_url: Mapped[str | None] = mapped_column(Text)  # its rel="self": the topic to subscribe to at the hub


class Story(Base):
    """One news event: its articles (copies, rewrites by other outlets) under one headline."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    article_count: Mapped[int] = mapped_column(Integer, default=1)
    vendors: Mapped[list] = mapped_column(JSON, default=list)
    countries: Mapped[list] = mapped_column(JSON, default=list)
    actions: Mapped[list] = mapped_column(JSON, default=list)


class StoryTopic(Base):
    """A topic's view of a story: its best score and whether any of its articles is relevant."""

    __tablename__ = "story_topics"

    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    relevant: Mapped[bool] = mapped_column(Boolean, index=True)
    relevant_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FacetValue(Base):
    """A value the search's filters list (a vendor, a country, an action, an outlet), kept as articles are placed in
    their stories: listing them from the stories themselves read the whole archive at every search (7.5 s at a million)."""

    __tablename__ = "facet_values"

    facet: Mapped[str] = mapped_column(String(16), primary_key=True)  # vendors | countries | actions | sources
    value: Mapped[str] = mapped_column(Text, primary_key=True)


class Article(Base):
    """One article, keyed by its canonical URL (exact dedup is this unique constraint)."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    original_url: Mapped[str] = mapped_column(Text)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    language: Mapped[str | None] = mapped_column(String(16))
    site_name: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    text_source: Mapped[str] = mapped_column(String(16))
    page_error: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"), index=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"), index=True)
    copy_kind: Mapped[str | None] = mapped_column(String(8))


class ArticleTopic(Base):
    """A topic's verdict on an article, with the tags and evidence behind it."""

    __tablename__ = "article_topics"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    relevant: Mapped[bool] = mapped_column(Boolean, index=True)
    vendors: Mapped[list] = mapped_column(JSON, default=list)
    countries: Mapped[list] = mapped_column(JSON, default=list)
    actions: Mapped[list] = mapped_column(JSON, default=list)
    why: Mapped[dict] = mapped_column(JSON, default=dict)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FetchFailure(Base):
    """A failed request, kept so that failures are visible after the log has scrolled away."""

    __tablename__ = "fetch_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Delivery(Base):
    """The outbox: a story owed to one channel, written in the transaction that made the story relevant.

    Slack rows are sent one by one and marked; digest rows wait until a day's digest takes them.
    """

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("channel", "route", "topic", "story_id", name="uq_deliveries_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))  # "slack" or "digest"
    route: Mapped[str] = mapped_column(String(100))  # a Slack route's name; "digest" for the email
    topic: Mapped[str] = mapped_column(String(100))
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE", name="fk_deliveries_story_id_stories"), index=True)
    status: Mapped[str] = mapped_column(String(8), index=True)  # pending, sent or failed (given up)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    held: Mapped[bool] = mapped_column(Boolean, default=False)  # held by quiet hours: goes out in one batch
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest_day: Mapped[str | None] = mapped_column(String(10), index=True)  # the digest that carried it
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a sender is sending it until then
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class DigestRun(Base):
    """One day's digest of one topic: due at its time, retried until sent, never sent twice."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("topic", "day", name="uq_digests_topic_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    day: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(8), index=True)  # pending, sent, skipped (nothing new) or failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    stories: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a sender is sending it until then
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class Spike(Base):
    """A day on which a topic, a vendor or a country within it drew far more new stories than usual: found once, kept."""

    __tablename__ = "spikes"
    __table_args__ = (UniqueConstraint("topic", "dimension", "value", "day", name="uq_spikes_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    dimension: Mapped[str] = mapped_column(String(16))  # topic, vendor or country
    value: Mapped[str] = mapped_column(String(200))  # the topic's name, the vendor or the country code
    day: Mapped[str] = mapped_column(String(10), index=True)  # the day in the digest's time zone
    stories: Mapped[int] = mapped_column(Integer)  # new stories that day, as last counted
    baseline: Mapped[float] = mapped_column(Float)  # new stories a day before it
    p_value: Mapped[float] = mapped_column(Float)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SpikeDelivery(Base):
    """The outbox of spikes: one owed to each Slack route and to the next digest, claimed and marked like a story's."""

    __tablename__ = "spike_deliveries"
    __table_args__ = (UniqueConstraint("spike_id", "channel", "route", name="uq_spike_deliveries_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spike_id: Mapped[int] = mapped_column(ForeignKey("spikes.id", ondelete="CASCADE", name="fk_spike_deliveries_spike_id_spikes"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # "slack" or "digest"
    route: Mapped[str] = mapped_column(String(100))
    topic: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(8), index=True)  # pending, sent or failed (given up)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest_day: Mapped[str | None] = mapped_column(String(10), index=True)  # the digest that carried it
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class Label(Base):
    """A reader's verdict on an article or a story for one topic: it wins over the model's, and `monitor train`
    folds it into the topic's training. Kept as a history: the newest label of a target is the one that counts."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), index=True)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"), index=True)
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    relevant: Mapped[bool] = mapped_column(Boolean)
    labelled_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    folded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when `monitor train` took it into the training set


class PushSubscription(Base):
    """A feed's WebSub subscription at its hub: the secret pushes are signed with, the lease, and how push is going.

    The id is random and unguessable: it names the callback (/websub/{id}) that the hub calls.
    """

    __tablename__ = "push_subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), unique=True)
    hub_url: Mapped[str] = mapped_column(Text)
    topic_url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending, active, failed or unsubscribing
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the last (re)subscription asked of the hub
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the hub's last verification of intent
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed requests in a row
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a failed subscription is asked again then
    last_error: Mapped[str | None] = mapped_column(Text)
    deferred_due: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the feed's next poll as push put it off
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Push(Base):
    """A feed body a hub pushed, signature checked, waiting to be read as that feed's bytes; deleted once read."""

    __tablename__ = "pushes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_try_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
