"""Stories right across processes: articles are placed one process at a time, against every article stored.

Each process keeps the story and copy indexes (dedup.Deduper) in memory. Placing happens inside the storing
transaction, under the store's placement lock; before placing, the process remembers the articles that other
processes stored since it last looked (their ids are higher than any it has seen: ids are handed out under
the same lock), so every process places against the same full set of recent articles.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from monitor.dedup import Deduper, Incoming, Placement, signature_from_bytes
from monitor.embed import from_bytes
from monitor.store import repository as repo
from monitor.store.leases import lock_placement

log = logging.getLogger(__name__)


def _remember(deduper: Deduper, row: repo.RecentArticle) -> None:
    deduper.stored_through = max(deduper.stored_through, row.id)
    if row.embedding is None or row.story_id is None:
        return
    incoming = Incoming(
        key=row.id,
        content_hash=row.content_hash,
        signature=signature_from_bytes(row.minhash) if row.minhash else None,
        vector=from_bytes(row.embedding),
        when=row.when,
        vendors=frozenset(row.vendors),
        countries=frozenset(row.countries),
        actions=frozenset(row.actions),
    )
    placement = Placement(duplicate_of=row.duplicate_of_id, copy_kind=row.copy_kind, story=row.story_id)
    deduper.remember(incoming, placement, story=row.story_id)


def _since(deduper: Deduper, now: datetime) -> datetime:
    return now - max(deduper.rules.window, deduper.rules.copy_window)


def load_deduper(deduper: Deduper, sessions: sessionmaker[Session], *, topic: str, now: datetime) -> Deduper:
    """Fill the deduper's indexes from the store: the articles its windows reach (restarts lose nothing)."""
    deduper.clear()
    with sessions() as session:
        for row in repo.recent_articles(session, since=_since(deduper, now), topic=topic):
            _remember(deduper, row)
    deduper.prune(now)
    return deduper


def catch_up(session: Session, deduper: Deduper, *, topic: str, now: datetime) -> int:
    """Take the placement lock for the caller's transaction, then remember what others stored since we last looked.

    Returns the number of articles caught up with (none when this process is the only one storing).
    """
    lock_placement(session)
    caught = 0
    for row in repo.recent_articles(session, since=_since(deduper, now), topic=topic, after_id=deduper.stored_through):
        _remember(deduper, row)
        caught += 1
    if caught:
        log.debug("caught up with %d articles stored by other processes", caught)
    return caught
