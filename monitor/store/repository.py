"""Every query of the store. Functions take the session as a keyword and never commit on their own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor.domain import Candidate, TopicVerdict

from monitor.store import feedback
from monitor.store.models import Article, ArticleTopic, Story, StoryTopic
from monitor.store.terms import unmarked
from monitor.store.word_blocks import keep_blocks
from monitor.store.words import keep_recent
from monitor.times import article_time

URL_BATCH = 500


@dataclass(frozen=True)
class ArticleText:
    """What rescoring reads of a stored article."""

    id: int
    title: str
    text: str
    embedding: bytes | None


@dataclass(frozen=True)
class StoredArticle:
    """An article to store with its embedding and verdicts."""

    candidate: Candidate
    content_hash: str
    embedding: bytes | None
    verdicts: list[TopicVerdict]
    minhash: bytes | None = None


@dataclass(frozen=True)
class RecentArticle:
    """What the deduper needs to know of a stored article to place new ones against it."""

    id: int
    story_id: int | None
    duplicate_of_id: int | None
    copy_kind: str | None
    content_hash: str
    minhash: bytes | None
    embedding: bytes | None
    when: datetime
    vendors: list[str]
    countries: list[str]
    actions: list[str]


def known_titles(session: Session, urls: Iterable[str]) -> dict[str, str]:
    """The stored title of each URL already stored."""
    urls = list(dict.fromkeys(urls))
    found: dict[str, str] = {}
    for start in range(0, len(urls), URL_BATCH):
        chunk = urls[start : start + URL_BATCH]
        rows = session.execute(select(Article.url, Article.title).where(Article.url.in_(chunk)))
        found.update((url, title) for url, title in rows)
    return found


def known_urls(session: Session, urls: Iterable[str]) -> set[str]:
    return set(known_titles(session, urls))


def update_article(session: Session, item: StoredArticle, *, now: datetime) -> tuple[int, int | None] | None:
    """An edited article replaces its own text, vectors and verdicts and stays in its story.

    Returns its id and story id, or None when the URL is not stored or its title is unchanged.
    """
    c = item.candidate
    article = session.scalar(select(Article).where(Article.url == c.url))
    if article is None or article.title == c.title:
        return None  # not stored, or stored meanwhile by another process from the same feed item
    article.title, article.text, article.text_source, article.page_error = unmarked(c.title), unmarked(c.text), c.text_source, c.page_error
    article.summary, article.content_hash, article.embedding, article.minhash = unmarked(c.summary), item.content_hash, item.embedding, item.minhash
    article.copy_kind = article.duplicate_of_id = None
    save_verdicts(session, article.id, item.verdicts, now=now)
    if article.story_id is not None:
        story = session.get_one(Story, article.story_id)
        story.last_updated_at = now
        if story.url == article.url:
            story.title = article.title
    session.flush()
    return article.id, article.story_id


def add_articles(session: Session, items: list[StoredArticle], *, now: datetime) -> dict[str, int]:
    """Insert new articles with their verdicts; a URL stored meanwhile by another worker is skipped. The word index's
    next block is made before they go in where they near it, and the recent word index lets go of the articles that
    have aged out of it (monitor/store/word_blocks.py, monitor/store/words.py).

    Returns the id of each article stored, by URL.
    """
    keep_blocks(session)
    ids: dict[str, int] = {}
    already = known_urls(session, [item.candidate.url for item in items])
    for item in items:
        c = item.candidate
        if c.url in already:
            continue
        article = Article(
            url=c.url,
            original_url=c.original_url,
            feed_id=c.feed_id,
            title=unmarked(c.title),
            author=c.author,
            published_at=c.published,
            language=c.language,
            site_name=c.site_name,
            summary=unmarked(c.summary),
            text=unmarked(c.text),
            text_source=c.text_source,
            page_error=c.page_error,
            content_hash=item.content_hash,
            embedding=item.embedding,
            minhash=item.minhash,
            fetched_at=now,
        )
        try:
            with session.begin_nested():
                session.add(article)
                session.flush()
        except IntegrityError:
            continue
        already.add(c.url)
        ids[c.url] = article.id
        save_verdicts(session, article.id, item.verdicts, now=now, new=True)
    keep_recent(session, now)
    return ids


def save_verdicts(session: Session, article_id: int, verdicts: list[TopicVerdict], *, now: datetime, new: bool = False) -> list[TopicVerdict]:
    """The model's verdicts, where a reader's label on the article or its story says otherwise with the reader's word.
    An article just added has neither labels nor verdicts yet, so nothing is asked of the store for it."""
    if not new:
        verdicts = feedback.labels_bearing_on(session, article_id=article_id, story_id=session.get_one(Article, article_id).story_id).verdicts(verdicts)
    for verdict in verdicts:
        (session.add if new else session.merge)(
            ArticleTopic(
                article_id=article_id,
                topic=verdict.topic,
                score=verdict.score,
                relevant=verdict.relevant,
                vendors=verdict.vendors,
                countries=verdict.countries,
                actions=verdict.actions,
                why=verdict.why,
                scored_at=now,
            )
        )
    return verdicts


def articles_after(session: Session, after_id: int, *, limit: int) -> list[ArticleText]:
    """A page of stored articles in id order, for work over the whole store."""
    query = select(Article.id, Article.title, Article.text, Article.embedding).where(Article.id > after_id).order_by(Article.id).limit(limit)
    return [ArticleText(*row) for row in session.execute(query)]


def recent_articles(session: Session, *, since: datetime, topic: str, after_id: int = 0) -> Iterator[RecentArticle]:
    """Articles fetched since a time (and stored after an id), oldest first, with one topic's tags: the deduper's indexes.

    Only the columns the indexes need (no text): a busy week is tens of thousands of rows, read on every start.
    """
    query = (
        select(
            Article.id, Article.story_id, Article.duplicate_of_id, Article.copy_kind, Article.content_hash, Article.minhash,
            Article.embedding, Article.published_at, Article.fetched_at, ArticleTopic.vendors, ArticleTopic.countries, ArticleTopic.actions,
        )
        .outerjoin(ArticleTopic, (ArticleTopic.article_id == Article.id) & (ArticleTopic.topic == topic))
        .where(Article.fetched_at >= since, Article.id > after_id)
        .order_by(Article.id)
    )  # fmt: skip
    for row in session.execute(query).yield_per(1000):
        yield RecentArticle(
            id=row.id,
            story_id=row.story_id,
            duplicate_of_id=row.duplicate_of_id,
            copy_kind=row.copy_kind,
            content_hash=row.content_hash,
            minhash=row.minhash,
            embedding=row.embedding,
            when=article_time(row.published_at, row.fetched_at),
            vendors=row.vendors or [],
            countries=row.countries or [],
            actions=row.actions or [],
        )


def _merged(first: list, second: list) -> list:
    return list(dict.fromkeys([*first, *second]))


def place_article(
    session: Session,
    article_id: int,
    *,
    story_id: int | None,
    duplicate_of_id: int | None,
    copy_kind: str | None,
    tags: TopicVerdict | None,
    verdicts: list[TopicVerdict],
    now: datetime,
) -> tuple[int, list[str]]:
    """Put a stored article in its story (a new one when story_id is None).

    Returns the story id and the topics for which the story has just become relevant (the alerts to send).
    """
    article = session.get_one(Article, article_id)
    article.duplicate_of_id, article.copy_kind = duplicate_of_id, copy_kind
    if copy_kind == "text":
        article.text = ""  # the same words are stored once, with the original
    vendors, countries, actions = (tags.vendors, tags.countries, tags.actions) if tags else ([], [], [])
    if story_id is None:
        story = Story(
            title=article.title,
            url=article.url,
            first_seen_at=now,
            last_updated_at=now,
            published_at=article.published_at,
            article_count=1,
            vendors=vendors,
            countries=countries,
            actions=actions,
        )
        session.add(story)
        session.flush()
    else:
        story = session.get_one(Story, story_id, with_for_update=True)
        story.article_count += 1
        story.last_updated_at = now
        story.vendors = _merged(story.vendors, vendors)
        story.countries = _merged(story.countries, countries)
        story.actions = _merged(story.actions, actions)
        earlier = article.published_at and (story.published_at is None or article.published_at < story.published_at)
        if earlier and copy_kind is None:
            story.title, story.url, story.published_at = article.title, article.url, article.published_at
    article.story_id = story.id
    if story_id is not None:
        feedback.apply_labels(session, article_id=article_id, story_id=story_id)  # a story's label reaches its new article
    return story.id, update_story_topics(session, story.id, verdicts, now=now, new=story_id is None, article_id=article_id)


def update_story_topics(
    session: Session, story_id: int, verdicts: list[TopicVerdict], *, now: datetime, new: bool = False, article_id: int | None = None
) -> list[str]:
    """Fold an article's verdicts into its story's; returns the topics for which the story just became relevant.
    A reader's label wins: on the story, over every article's verdict; on the article, over the model's for it."""
    said = feedback.labels_bearing_on(session, article_id=None if new else article_id, story_id=None if new else story_id)
    newly_relevant = []
    for verdict in said.verdicts(verdicts):
        view = None if new else session.get(StoryTopic, (story_id, verdict.topic))
        if view is None:
            view = StoryTopic(story_id=story_id, topic=verdict.topic, score=verdict.score, relevant=False)
            session.add(view)
        view.score = max(view.score, verdict.score)
        if verdict.relevant and not view.relevant and said.story_allows(verdict.topic):
            view.relevant, view.relevant_since = True, now
            newly_relevant.append(verdict.topic)
    session.flush()
    return newly_relevant
