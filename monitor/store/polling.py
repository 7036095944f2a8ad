"""What choosing a feed's interval reads from the store: when its items appeared, and the feeds sharing its host."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.store.models import Article, Feed


def item_times(session: Session, feed_id: int, *, since: datetime) -> list[datetime]:
    """When each of the feed's articles since then appeared: published, or first stored when undated (or dated later)."""
    rows = session.execute(
        select(Article.published_at, Article.fetched_at).where(
            Article.feed_id == feed_id, (Article.published_at >= since) | (Article.fetched_at >= since)
        )
    )
    return [published if published is not None and published <= fetched else fetched for published, fetched in rows]


def active_feed_urls(session: Session) -> list[str]:
    return list(session.scalars(select(Feed.url).where(Feed.active)))
