"""Embed, score, place in stories and store the articles feeds have read: one embedding batch for every feed's
arrivals at hand, one transaction per feed.

The model costs several times more per article one by one than in a batch, and a busy pass has pages of many
outlets ready at once; a quiet one has one at a time, which is stored at once. So the batch is whatever has
arrived while the model was busy with the last one, and the wait for it is never longer than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from monitor.classify import Document
from monitor.dedup import Incoming, content_hash, signature, signature_to_bytes
from monitor.deps import Deps
from monitor.domain import Candidate, FeedOutcome
from monitor.embed import to_bytes
from monitor.placement import catch_up, load_deduper
from monitor.store import facets, polling
from monitor.store import repository as repo
from monitor.times import article_time


@dataclass
class Arrivals:
    """Articles one feed's poll has read, in the feed's order; its outcome counts those stored."""

    feed_id: int
    outcome: FeedOutcome
    candidates: list[Candidate]


@dataclass(frozen=True)
class Prepared:
    """One article embedded, scored and signed, ready to be placed and stored."""

    item: repo.StoredArticle
    signature: np.ndarray | None
    vector: np.ndarray


Share = tuple[Arrivals, list[Prepared] | Exception]  # a feed's arrivals prepared, or why they could not be


def prepare_batch(batch: list[Arrivals], deps: Deps) -> list[Share]:
    """Every feed's arrivals embedded and scored in one batch, each with its share or why it could not be prepared.

    A failure of the whole batch is retried one feed at a time, so that one feed's bad article fails that feed alone.
    """
    batch = [arrivals for arrivals in batch if arrivals.candidates]
    if not batch:
        return []
    try:
        prepared = _prepare([c for arrivals in batch for c in arrivals.candidates], deps)
    except Exception:
        return [(arrivals, _prepare_alone(arrivals, deps)) for arrivals in batch]
    shares, start = [], 0
    for arrivals in batch:
        shares.append((arrivals, prepared[start : start + len(arrivals.candidates)]))
        start += len(arrivals.candidates)
    return shares


def store_prepared(shares: list[Share], deps: Deps) -> dict[int, Exception]:
    """Each feed's prepared articles stored (or rolled back) in a transaction of its own; the feeds that failed."""
    failures: dict[int, Exception] = {}
    for arrivals, prepared in shares:
        try:
            if isinstance(prepared, Exception):
                raise prepared
            _store(arrivals, prepared, deps)
        except Exception as exc:
            failures[arrivals.feed_id] = exc
    return failures


def store_articles(arrivals: Arrivals, deps: Deps) -> None:
    """One feed's arrivals stored; a failure is raised."""
    failure = store_prepared(prepare_batch([arrivals], deps), deps).get(arrivals.feed_id)
    if failure is not None:
        raise failure


def _prepare_alone(arrivals: Arrivals, deps: Deps) -> list[Prepared] | Exception:
    try:
        return _prepare(arrivals.candidates, deps)
    except Exception as exc:
        return exc


def _prepare(candidates: list[Candidate], deps: Deps) -> list[Prepared]:
    documents = [Document(c.title, c.text) for c in candidates]
    with deps.timings.measure("embed"):
        vectors = deps.embedder.embed([d.for_embedding for d in documents])
    with deps.timings.measure("score"):
        per_topic = [scorer.score(documents, vectors) for scorer in deps.scorers]
    with deps.timings.measure("dedup"):
        signatures = [signature(c.text) for c in candidates]
    return [
        Prepared(
            repo.StoredArticle(
                candidate=c,
                content_hash=content_hash(c.text),
                embedding=to_bytes(vectors[i]),
                verdicts=[verdicts[i] for verdicts in per_topic],
                minhash=signature_to_bytes(signatures[i]) if signatures[i] is not None else None,
            ),
            signatures[i],
            vectors[i],
        )
        for i, c in enumerate(candidates)
    ]


def _store(arrivals: Arrivals, prepared: list[Prepared], deps: Deps) -> None:
    """One feed's articles placed and stored in one transaction; a story made relevant is owed in it, and once it
    has committed, the sender is woken."""
    candidates, items = arrivals.candidates, [p.item for p in prepared]
    now, owed = deps.clock(), False
    with deps.deduper.lock:
        deps.deduper.prune(now)
        try:
            with deps.timings.measure("store"), deps.sessions.begin() as session:
                with deps.timings.measure("placement lock"):
                    catch_up(session, deps.deduper, topic=first_topic(deps), now=now)
                stored = repo.add_articles(session, items, now=now)
                for candidate, ready in zip(candidates, prepared):
                    if candidate.url in stored:
                        owed |= place(session, deps, stored[candidate.url], ready.item, ready.signature, ready.vector, now)
                    elif (updated := repo.update_article(session, ready.item, now=now)) is not None:
                        owed |= _refresh_story(session, deps, updated, ready.item.verdicts, now)
                failures = [(c.original_url, c.page_error) for c in candidates if c.page_error]
                polling.record_page_failures(session, arrivals.feed_id, failures, now=now)
                facets.record_values(session, stored.values())  # last: see its docstring
        except Exception:
            load_deduper(deps.deduper, deps.sessions, topic=first_topic(deps), now=now)  # forget what was rolled back
            raise
    if owed and deps.wake_sender:
        deps.wake_sender()
    outcome = arrivals.outcome
    outcome.new_articles += len(stored)
    outcome.page_errors += [c.page_error for c in candidates if c.page_error]
    outcome.relevant += sum(1 for c, item in zip(candidates, items) if item.verdicts and item.verdicts[0].relevant and c.url in stored)


def first_topic(deps: Deps) -> str:
    return deps.scorers[0].spec.name if deps.scorers else ""


def place(session: Session, deps: Deps, article_id: int, item: repo.StoredArticle, sig, vector, now: datetime) -> bool:
    """Place a new article in its story; True when that made a story relevant (and so owed to the outputs)."""
    tags = item.verdicts[0] if item.verdicts else None
    incoming = Incoming(
        key=article_id,
        content_hash=item.content_hash,
        signature=sig,
        vector=vector,
        when=article_time(item.candidate.published, now),
        vendors=frozenset(tags.vendors if tags else ()),
        countries=frozenset(tags.countries if tags else ()),
        actions=frozenset(tags.actions if tags else ()),
    )
    with deps.timings.measure("dedup"):
        placement = deps.deduper.place(incoming)
    story_id, newly_relevant = repo.place_article(
        session,
        article_id,
        story_id=placement.story,
        duplicate_of_id=placement.duplicate_of,
        copy_kind=placement.copy_kind,
        tags=tags,
        verdicts=item.verdicts,
        now=now,
    )
    deps.deduper.remember(incoming, placement, story=story_id)
    deps.deduper.stored_through = max(deps.deduper.stored_through, article_id)
    return _owe(session, deps, story_id, newly_relevant)


def _refresh_story(session: Session, deps: Deps, updated: tuple[int, int | None], verdicts, now: datetime) -> bool:
    article_id, story_id = updated
    if story_id is None:
        return False
    return _owe(session, deps, story_id, repo.update_story_topics(session, story_id, verdicts, now=now, article_id=article_id))


def _owe(session: Session, deps: Deps, story_id: int, topics) -> bool:
    if not deps.on_relevant_story:
        return False
    for topic in topics:
        deps.on_relevant_story(session, story_id, topic)
    return bool(topics)
