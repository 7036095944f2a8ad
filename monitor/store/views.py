"""Read models for the outputs: stories with their sources and evidence, as Slack, the digest and the archive show them;
articles as the exports write them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from monitor.domain import ReaderLabel, Source, StoryView
from monitor.labels import lead
from monitor.store import feedback
from monitor.store.models import Article, ArticleTopic, Feed, Story, StoryTopic



def outlet_name(site_name: str | None, feed_name: str | None, url: str) -> str:
    """The outlet as a reader knows it: the page's own site name, else the feed's, else the host."""
    return site_name or feed_name or (urlsplit(url).hostname or url).removeprefix("www.")


def as_source(article: Article, feed_name: str | None) -> Source:
    return Source(
        article_id=article.id,
        outlet=outlet_name(article.site_name, feed_name, article.url),
        title=article.title,
        url=article.url,
        published=article.published_at,
        copy_kind=article.copy_kind,
    )


def story_views(session: Session, story_ids: Iterable[int], *, topic: str) -> list[StoryView]:
    """The stories with their sources (earliest first) and the evidence of their best article, in the order asked."""
    ids = list(dict.fromkeys(story_ids))
    if not ids:
        return []
    stories = {
        story.id: (story, view)
        for story, view in session.execute(
            select(Story, StoryTopic)
            .outerjoin(StoryTopic, (StoryTopic.story_id == Story.id) & (StoryTopic.topic == topic))
            .where(Story.id.in_(ids))
        )
    }
    rows = session.execute(
        select(Article, Feed.name, ArticleTopic)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .outerjoin(ArticleTopic, (ArticleTopic.article_id == Article.id) & (ArticleTopic.topic == topic))
        .where(Article.story_id.in_(ids))
    )
    labels = feedback.story_labels(session, ids, topic=topic)
    articles: dict[int, list[tuple[Article, str | None, ArticleTopic | None]]] = defaultdict(list)
    for article, feed_name, verdict in rows:
        articles[article.story_id].append((article, feed_name, verdict))
    views = []
    for story_id in ids:
        if story_id not in stories:
            continue
        story, topic_view = stories[story_id]
        members = sorted(articles[story_id], key=lambda row: (_when(row[0]), row[0].id))
        best = max(members, key=lambda row: (row[2].score if row[2] else -1.0, -row[0].id), default=None)
        lead_row = next((row for row in members if row[0].url == story.url), best)
        sources = [as_source(article, feed_name) for article, feed_name, _ in members]
        text_of = best[0].text or best[0].summary if best else ""
        views.append(
            StoryView(
                id=story.id,
                topic=topic,
                title=story.title,
                url=story.url,
                outlet=outlet_name(lead_row[0].site_name, lead_row[1], story.url) if lead_row else "",
                published=story.published_at,
                first_seen=story.first_seen_at,
                relevant_since=topic_view.relevant_since if topic_view else None,
                score=topic_view.score if topic_view else 0.0,
                relevant=bool(topic_view and topic_view.relevant),
                vendors=list(story.vendors),
                countries=list(story.countries),
                actions=list(story.actions),
                why=best[2].why if best and best[2] else {},
                summary=lead(text_of or "", title=best[0].title if best else ""),
                sources=sources,
                label=labels.get((story.id, topic)),
            )
        )
    return views


def _when(article: Article) -> datetime:
    """The date a source is listed by: the one the reader sees beside it (published, else fetched)."""
    return article.published_at or article.fetched_at


@dataclass(frozen=True)
class ArticleView:
    """One stored article as the archive shows it: text, metadata, one topic's verdict, and its story."""

    id: int
    url: str
    original_url: str
    title: str
    outlet: str
    author: str | None
    published: datetime | None
    fetched: datetime
    language: str | None
    text: str
    text_source: str
    page_error: str | None
    story_id: int | None
    story_title: str | None
    copy_kind: str | None
    duplicate_of: Source | None
    topic: str
    score: float | None
    relevant: bool | None
    vendors: list[str]
    countries: list[str]
    actions: list[str]
    why: dict
    label: ReaderLabel | None = None  # the reader's label that decides it: its own, else its story's


def article_view(session: Session, article_id: int, *, topic: str) -> ArticleView | None:
    """The article, or None when there is none; a text copy shows the text of the article it copies."""
    row = session.execute(
        select(Article, Feed.name, ArticleTopic, Story.title)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .outerjoin(ArticleTopic, (ArticleTopic.article_id == Article.id) & (ArticleTopic.topic == topic))
        .outerjoin(Story, Story.id == Article.story_id)
        .where(Article.id == article_id)
    ).first()
    if row is None:
        return None
    article, feed_name, verdict, story_title = row
    original = session.get(Article, article.duplicate_of_id) if article.duplicate_of_id else None
    copied = as_source(original, None) if original is not None else None
    text = original.text if original is not None and article.copy_kind == "text" else article.text
    return ArticleView(
        id=article.id,
        url=article.url,
        original_url=article.original_url,
        title=article.title,
        outlet=outlet_name(article.site_name, feed_name, article.url),
        author=article.author,
        published=article.published_at,
        fetched=article.fetched_at,
        language=article.language,
        text=text or article.summary,
        text_source=article.text_source,
        page_error=article.page_error,
        story_id=article.story_id,
        story_title=story_title,
        copy_kind=article.copy_kind,
        duplicate_of=copied,
        topic=topic,
        score=verdict.score if verdict else None,
        relevant=verdict.relevant if verdict else None,
        vendors=list(verdict.vendors) if verdict else [],
        countries=list(verdict.countries) if verdict else [],
        actions=list(verdict.actions) if verdict else [],
        why=verdict.why if verdict else {},
        label=feedback.labels_bearing_on(session, article_id=article.id, story_id=article.story_id).for_article(topic),
    )


def export_rows(session: Session, *, topic: str, relevant_only: bool = False) -> Iterator[dict]:
    """Every stored article with its verdict on one topic, oldest first."""
    original = aliased(Article)
    query = (
        select(Article, Feed.name, ArticleTopic, original.url, original.text)
        .outerjoin(Feed, Feed.id == Article.feed_id)
        .outerjoin(ArticleTopic, (ArticleTopic.article_id == Article.id) & (ArticleTopic.topic == topic))
        .outerjoin(original, original.id == Article.duplicate_of_id)
        .order_by(Article.id)
    )
    if relevant_only:
        query = query.where(ArticleTopic.relevant.is_(True))
    labels = feedback.Labels.of_topic(session, topic=topic)
    for article, source, verdict, original_url, original_text in session.execute(query).yield_per(200):
        yield {
            "url": article.url,
            "title": article.title,
            "source": source or article.site_name,
            "published": article.published_at.isoformat() if article.published_at else None,
            "text": original_text if article.copy_kind == "text" else article.text,
            "text_source": article.text_source,
            "topic": topic,
            "score": verdict.score if verdict else None,
            "relevant": verdict.relevant if verdict else None,
            "story_id": article.story_id,
            "duplicate_of": original_url,
            "copy_kind": article.copy_kind,
            "vendors": verdict.vendors if verdict else [],
            "countries": verdict.countries if verdict else [],
            "actions": verdict.actions if verdict else [],
            "why": verdict.why if verdict else {},
            "label": labels.exported(article.id, article.story_id),
        }
