"""The store's figures for monitoring: articles, relevant articles, feeds failing, the last good poll, the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.store.models import Article, ArticleTopic, Feed
from monitor.store.outbox import outbox_counts


@dataclass(frozen=True)
class Vitals:
    """Read at each scrape, so every process that serves metrics reports the same figures."""

    articles: int
    relevant: dict[str, int]  # topic -> articles found relevant
    active_feeds: int
    failing_feeds: int  # active feeds whose last poll failed
    last_success_at: datetime | None  # the newest successful poll of any active feed
    deliveries: dict[tuple[str, str], int]  # (channel, status) -> deliveries


def vitals(session: Session) -> Vitals:
    relevant = session.execute(
        select(ArticleTopic.topic, func.count()).where(ArticleTopic.relevant.is_(True)).group_by(ArticleTopic.topic)
    )
    active, failing, last_success = session.execute(
        select(func.count(), func.count().filter(Feed.error_count > 0), func.max(Feed.last_success_at)).where(Feed.active.is_(True))
    ).one()
    return Vitals(
        articles=session.scalar(select(func.count()).select_from(Article)) or 0,
        relevant=dict(relevant.all()),
        active_feeds=active,
        failing_feeds=failing,
        last_success_at=last_success,
        deliveries=outbox_counts(session),
    )

