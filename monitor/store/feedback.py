"""Readers' labels: stored with who and when, winning over the model for their article (a story's label for every
article of the story), settling the stories' relevance, and handed to `monitor train` as training items."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from monitor.domain import ReaderLabel, TopicVerdict
from monitor.store import outbox
from monitor.store.models import Article, ArticleTopic, Label, Story, StoryTopic

log = logging.getLogger(__name__)

BY_LIMIT = 200
NOTE_LIMIT = 2000
STORY_BATCH = 500


@dataclass(frozen=True)
class Target:
    """What a label is put on: an article (with the story it belongs to) or a whole story."""

    article_id: int | None
    story_id: int | None


@dataclass(frozen=True)
class LabelledText:
    """A labelled article as training data: the text the model reads and the reader's verdict."""

    key: str  # the article's URL: one training item per article, whichever label reached it
    title: str
    text: str
    relevant: bool


@dataclass(frozen=True)
class Settled:
    """What settling stories changed: stories that became relevant, and those that stopped being so."""

    turned_on: int = 0
    turned_off: int = 0
    withdrawn: int = 0  # deliveries owed to Slack or the digest that were dropped with them

    def __add__(self, other: Settled) -> Settled:
        return Settled(self.turned_on + other.turned_on, self.turned_off + other.turned_off, self.withdrawn + other.withdrawn)


@dataclass(frozen=True)
class Said:
    """The newest labels bearing on one article: its own, and its story's, by topic."""

    article: dict[str, ReaderLabel]
    story: dict[str, ReaderLabel]

    def for_article(self, topic: str) -> ReaderLabel | None:
        """An article's own label counts before its story's."""
        return self.article.get(topic) or self.story.get(topic)

    def story_allows(self, topic: str) -> bool:
        """Whether the story may be relevant to the topic: not when a reader labelled it not relevant."""
        label = self.story.get(topic)
        return label is None or label.relevant

    def verdicts(self, verdicts: list[TopicVerdict]) -> list[TopicVerdict]:
        """The model's verdicts with the reader's word in place of the model's where a label says otherwise; the score
        stays the model's, so that a reader sees how far they disagreed."""
        chosen = []
        for verdict in verdicts:
            label = self.for_article(verdict.topic)
            chosen.append(replace(verdict, relevant=label.relevant) if label is not None and label.relevant != verdict.relevant else verdict)
        return chosen


@dataclass(frozen=True)
class Labels:
    """The newest label of every labelled article and story of one topic, as exports show them."""

    articles: dict[int, ReaderLabel]
    stories: dict[int, ReaderLabel]

    @classmethod
    def of_topic(cls, session: Session, *, topic: str) -> Labels:
        articles: dict[int, ReaderLabel] = {}
        stories: dict[int, ReaderLabel] = {}
        for row in session.scalars(select(Label).where(Label.topic == topic).order_by(Label.id)):
            if row.article_id is not None:
                articles[row.article_id] = _plain(row)
            else:
                stories[row.story_id] = _plain(row)
        return cls(articles, stories)

    def exported(self, article_id: int, story_id: int | None) -> dict | None:
        """The label that decides an article (its own, else its story's) as plain JSON, or None."""
        label = self.articles.get(article_id) or (self.stories.get(story_id) if story_id is not None else None)
        if label is None:
            return None
        return {
            "relevant": label.relevant,
            "by": label.by,
            "at": label.at.isoformat(),
            "note": label.note,
            "on": "article" if label.article_id is not None else "story",
            "folded": label.folded_at is not None,
        }


def _plain(row: Label) -> ReaderLabel:
    return ReaderLabel(
        id=row.id,
        topic=row.topic,
        relevant=row.relevant,
        by=row.labelled_by,
        at=row.created_at,
        note=row.note,
        article_id=row.article_id,
        story_id=row.story_id,
        folded_at=row.folded_at,
    )


def article_target(session: Session, *, urls: Iterable[str] = (), article_id: int | None = None) -> Target | None:
    """The article stored under one of these URLs (canonical or as linked) or with this id, and its story."""
    query = select(Article.id, Article.story_id)
    if article_id is not None:
        query = query.where(Article.id == article_id)
    else:
        urls = list(dict.fromkeys(urls))
        query = query.where(or_(Article.url.in_(urls), Article.original_url.in_(urls))).order_by(Article.id)
    row = session.execute(query.limit(1)).first()
    return Target(row[0], row[1]) if row else None


def story_target(session: Session, story_id: int) -> Target | None:
    return Target(None, story_id) if session.get(Story, story_id) is not None else None


def add_label(
    session: Session, target: Target, *, topic: str, relevant: bool, by: str, note: str = "", now: datetime
) -> tuple[ReaderLabel, Settled]:
    """Store a label and apply it at once: its articles' verdicts follow it, and so does the story's relevance (a story
    turned off owes no more alerts). A label on an article of a story labels that article only."""
    row = Label(
        topic=topic,
        article_id=target.article_id,
        story_id=None if target.article_id is not None else target.story_id,
        relevant=relevant,
        labelled_by=_text(by)[:BY_LIMIT] or "unknown",
        note=_text(note)[:NOTE_LIMIT],
        created_at=now,
    )
    session.add(row)
    session.flush()
    members = (
        [target.article_id]
        if target.article_id is not None
        else list(session.scalars(select(Article.id).where(Article.story_id == target.story_id)))
    )
    for article_id in members:
        apply_labels(session, article_id=article_id, story_id=target.story_id)
    settled = settle_stories(session, [target.story_id] if target.story_id is not None else [], now=now)
    log.info("%s labelled %s to %s by %s", _target_name(target), "relevant" if relevant else "not relevant", topic, row.labelled_by)
    return _plain(row), settled


def _text(value: str) -> str:
    """A name or note as stored: trimmed, without NUL characters (PostgreSQL's text cannot hold them)."""
    return value.replace("\x00", "").strip()


def _target_name(target: Target) -> str:
    return f"article {target.article_id}" if target.article_id is not None else f"story {target.story_id}"


def labels_bearing_on(session: Session, *, article_id: int | None, story_id: int | None) -> Said:
    """The newest label of each topic on the article and on its story (one query)."""
    conditions = []
    if article_id is not None:
        conditions.append(Label.article_id == article_id)
    if story_id is not None:
        conditions.append(Label.story_id == story_id)
    if not conditions:
        return Said({}, {})
    article: dict[str, ReaderLabel] = {}
    story: dict[str, ReaderLabel] = {}
    for row in session.scalars(select(Label).where(or_(*conditions)).order_by(Label.id)):
        (article if row.article_id is not None else story)[row.topic] = _plain(row)
    return Said(article, story)


def apply_labels(session: Session, *, article_id: int, story_id: int | None) -> None:
    """An article's stored verdicts follow the labels bearing on it (its own, else its story's)."""
    said = labels_bearing_on(session, article_id=article_id, story_id=story_id)
    for topic in {*said.article, *said.story}:
        label = said.for_article(topic)
        session.execute(
            update(ArticleTopic)
            .where(ArticleTopic.article_id == article_id, ArticleTopic.topic == topic, ArticleTopic.relevant != label.relevant)
            .values(relevant=label.relevant)
        )


def settle_stories(session: Session, story_ids: Iterable[int], *, now: datetime) -> Settled:
    """Each story's view of each topic made to agree with its articles' stored verdicts: the best score, relevant when
    one of them is, unless the story's own label says otherwise. A story turned off owes nothing more; one turned on
    becomes relevant from now (it is not alerted: a reader or a rescore, not the news, turned it on)."""
    ids = list(dict.fromkeys(story_ids))
    if not ids:
        return Settled()
    rows = session.execute(
        select(Article.story_id, ArticleTopic.topic, func.max(ArticleTopic.score), func.sum(case((ArticleTopic.relevant.is_(True), 1), else_=0)))
        .join(ArticleTopic, ArticleTopic.article_id == Article.id)
        .where(Article.story_id.in_(ids))
        .group_by(Article.story_id, ArticleTopic.topic)
    )
    verdicts = {(story_id, topic): (score, relevant > 0) for story_id, topic, score, relevant in rows}
    views = {(v.story_id, v.topic): v for v in session.scalars(select(StoryTopic).where(StoryTopic.story_id.in_(ids)))}
    said = story_labels(session, ids)
    settled, turned = Settled(), []
    for (story_id, topic), (score, relevant) in verdicts.items():
        label = said.get((story_id, topic))
        relevant = label.relevant if label is not None else relevant
        view = views.get((story_id, topic))
        if view is None:
            view = StoryTopic(story_id=story_id, topic=topic, score=score, relevant=False)
            session.add(view)
        view.score = score
        if relevant and not view.relevant:
            view.relevant, view.relevant_since = True, now
            settled += Settled(turned_on=1)
        elif not relevant and view.relevant:
            view.relevant, view.relevant_since = False, None
            settled += Settled(turned_off=1, withdrawn=outbox.withdraw(session, story_id=story_id, topic=topic))
        else:
            continue
        turned.append(story_id)
    if turned:  # what search holds in memory beside the vectors reads again the stories updated (memory_filters.py)
        session.execute(update(Story).where(Story.id.in_(turned)).values(last_updated_at=now))
    session.flush()
    return settled


def story_ids_after(session: Session, after_id: int, *, limit: int = STORY_BATCH) -> list[int]:
    """A page of story ids in order, for work over every story."""
    return list(session.scalars(select(Story.id).where(Story.id > after_id).order_by(Story.id).limit(limit)))


def story_labels(session: Session, story_ids: list[int], *, topic: str | None = None) -> dict[tuple[int, str], ReaderLabel]:
    """The newest label of each of these stories, by (story, topic)."""
    query = select(Label).where(Label.story_id.in_(story_ids)).order_by(Label.id)
    if topic is not None:
        query = query.where(Label.topic == topic)
    return {(row.story_id, row.topic): _plain(row) for row in session.scalars(query)}


def article_label(session: Session, article_id: int, story_id: int | None, *, topic: str) -> ReaderLabel | None:
    return labels_bearing_on(session, article_id=article_id, story_id=story_id).for_article(topic)


def fold(session: Session, *, topic: str, now: datetime) -> int:
    """Mark every label of a topic not yet in its training as folded in now; returns how many."""
    result = session.execute(
        update(Label).where(Label.topic == topic, Label.folded_at.is_(None)).values(folded_at=now).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def training_items(session: Session, *, topic: str, folded_only: bool = True) -> list[LabelledText]:
    """One training item per labelled article, from the newest folded labels: an article's own label before its
    story's; a story's label reaches each of its articles that has words of its own (a same-text copy has none)."""
    query = select(Label).where(Label.topic == topic).order_by(Label.id)
    if folded_only:
        query = query.where(Label.folded_at.is_not(None))
    own: dict[int, bool] = {}
    by_story: dict[int, bool] = {}
    for row in session.scalars(query):
        if row.article_id is not None:
            own[row.article_id] = row.relevant
        else:
            by_story[row.story_id] = row.relevant
    if not own and not by_story:
        return []
    verdict = dict(own)
    if by_story:
        members = session.execute(select(Article.id, Article.story_id).where(Article.story_id.in_(list(by_story))))
        for article_id, story_id in members:
            verdict.setdefault(article_id, by_story[story_id])
    items = []
    ids = sorted(verdict)
    for start in range(0, len(ids), STORY_BATCH):
        chunk = ids[start : start + STORY_BATCH]
        for article in session.scalars(select(Article).where(Article.id.in_(chunk)).order_by(Article.id)):
            text = article.text or article.summary
            if article.copy_kind != "text" and text.strip():
                items.append(LabelledText(article.url, article.title, text, verdict[article.id]))
    return items
