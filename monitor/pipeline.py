"""The one place that calls every stage in order: fetch feed, parse, new?, fetch page, extract, embed, score, store."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from monitor.classify import Document, TopicScorer
from monitor.config import Settings
from monitor.dedup import Deduper, Incoming, canonical_url, content_hash, signature, signature_to_bytes
from monitor.domain import Candidate, FeedEntry, FeedOutcome, http_link
from monitor.embed import Embedder, from_bytes, to_bytes
from monitor.placement import catch_up, load_deduper
from monitor.extract import MIN_TEXT_CHARS, extract
from monitor.feeds import NotAFeed, parse_feed
from monitor.fetch import Fetcher, FetchError, RetryLater
from monitor.hostpool import HostPool
from monitor.store import repository as repo
from monitor.store.terms import unmarked
from monitor.websub import discover

log = logging.getLogger(__name__)


# Feeds read at once per page thread: each outlet is asked at most once per politeness delay, so the page threads
# stay busy only when several outlets have pages waiting. A feed's thread mostly waits for its pages.
FEEDS_PER_PAGE_THREAD = 4


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Timings:
    """Seconds spent in each stage, summed over threads: where a pass spends its time; each step also goes to observe."""

    def __init__(self, observe: Callable[[str, float], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._observe = observe

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[stage] += elapsed
            if self._observe:
                self._observe(stage, elapsed)


@dataclass
class Deps:
    """The side effects a poll needs, built once by the composition root."""

    settings: Settings
    sessions: sessionmaker[Session]
    fetcher: Fetcher
    embedder: Embedder
    scorers: list[TopicScorer]
    clock: Callable[[], datetime] = utcnow
    page_pool: HostPool | None = None
    timings: Timings = field(default_factory=Timings)
    deduper: Deduper = field(default_factory=Deduper)
    on_relevant_story: Callable[[Session, int, str], None] | None = None  # called in the storing transaction
    on_outcome: Callable[[FeedOutcome], None] | None = None  # called once per finished poll (metrics)


@dataclass
class FeedPoll:
    """A feed fetched and its new articles read, not yet embedded or stored."""

    feed_id: int
    outcome: FeedOutcome
    candidates: list[Candidate] = field(default_factory=list)
    feed_state: dict | None = None  # recorded with the articles, in one transaction
    page_failures: list[tuple[str, str]] = field(default_factory=list)
    pushed: bool = False  # a body a hub pushed: the feed's polling state (ETag, due time, errors) is left alone


def backoff_delay(interval: float, failures: int, cap: float) -> float:
    """Seconds to wait after the n-th consecutive failure: the interval, doubled each time, capped."""
    return min(interval * 2 ** max(failures - 1, 0), cap)


def _fail(deps: Deps, state: repo.FeedState, message: str, *, retry_after: float | None = None) -> FeedPoll:
    now = deps.clock()
    delay = backoff_delay(state.interval_seconds, state.error_count + 1, deps.settings.max_backoff)
    if retry_after is not None:
        delay = max(delay, retry_after)
    log.info("feed %s failed: %s; next try in %.0fs", state.name, message, delay)  # the pass summary warns when most fail
    with deps.sessions.begin() as session:
        repo.record_feed_failure(
            session, state.id, url=state.url, message=message, now=now, next_due=now + timedelta(seconds=delay)
        )
    return FeedPoll(state.id, FeedOutcome(feed=state.name, ok=False, error=message))


def _unchanged(deps: Deps, state: repo.FeedState, **feed_state) -> FeedPoll:
    now = deps.clock()
    with deps.sessions.begin() as session:
        repo.record_feed_success(
            session, state.id, now=now, next_due=now + timedelta(seconds=state.interval_seconds), **feed_state
        )
    return FeedPoll(state.id, FeedOutcome(feed=state.name, ok=True, not_modified=True))


def read_article(
    entry: FeedEntry, *, feed_id: int, language: str | None, fetcher: Fetcher, settings: Settings, timings: Timings
) -> Candidate:
    """Fetch and extract one article page, falling back to the feed's summary when that fails.

    A link that is not http(s) (javascript:, data:, …) is neither fetched nor kept: the article has no link.
    """
    extracted, error = None, None
    link = http_link(entry.url)
    if link is None:
        error = f"no link kept: {entry.url.split(':', 1)[0][:20]!r} is not an http(s) link"
    else:
        try:
            with timings.measure("fetch"):
                allowed = fetcher.allowed(link)
                response = fetcher.get(link, max_bytes=settings.max_page_bytes, page=True) if allowed else None
            if response is None:
                error = "disallowed by robots.txt"
            else:
                with timings.measure("extract"):
                    extracted = extract(response.content, url=response.url)
                if extracted is None:
                    error = "no article text found in the page"
        except FetchError as exc:
            error = str(exc)
    if error:
        log.warning("article %s: %s; using the feed's summary", entry.url, error)
    candidate = Candidate(
        feed_id=feed_id,
        url=canonical_url(entry.url),
        original_url=link or canonical_url(entry.url),
        title=entry.title or (extracted.title if extracted else "") or link or "(no title)",
        text="",
        text_source="",
        summary=entry.summary,
        published=entry.published or (extracted.published if extracted else None),
        language=(extracted.language if extracted else None) or language,
        page_error=error,
    )
    if extracted:
        candidate.author, candidate.site_name = extracted.author, extracted.site_name
    if extracted and (len(extracted.text) >= MIN_TEXT_CHARS or len(extracted.text) >= len(entry.summary)):
        candidate.text, candidate.text_source = extracted.text, "page"
    elif entry.summary:
        candidate.text, candidate.text_source = entry.summary, "summary"
        if extracted and not error:
            candidate.page_error = "page text shorter than the feed's summary"
    else:
        candidate.text, candidate.text_source = candidate.title, "title"
    return candidate


def collect_feed(feed_id: int, deps: Deps) -> FeedPoll:
    """Fetch a feed and read its new articles. Failures are recorded; nothing new is stored yet."""
    with deps.sessions() as session:
        state = repo.feed_state(session, feed_id)
    settings, now = deps.settings, deps.clock()
    full = state.last_full_fetch_at is None or (now - state.last_full_fetch_at).total_seconds() >= settings.full_refresh
    try:
        with deps.timings.measure("fetch"):
            response = deps.fetcher.get(
                state.url,
                max_bytes=settings.max_feed_bytes,
                etag=None if full else state.etag,
                last_modified=None if full else state.last_modified,
            )
    except RetryLater as exc:
        return _fail(deps, state, str(exc), retry_after=exc.retry_after)
    except FetchError as exc:
        return _fail(deps, state, str(exc))
    if response.not_modified:
        return _unchanged(deps, state)
    digest = hashlib.sha256(response.content).hexdigest()
    feed_state = {"etag": response.etag, "last_modified": response.last_modified, "content_hash": digest}
    if full:
        feed_state["last_full_fetch_at"] = now
    if digest == state.content_hash:
        return _unchanged(deps, state, **feed_state)
    try:
        with deps.timings.measure("parse"):
            parsed = parse_feed(response.content, url=response.url, content_type=response.content_type)
    except NotAFeed as exc:
        return _fail(deps, state, f"{exc} ({state.url})")
    if parsed.problem:
        log.info("feed %s is malformed but readable: %s", state.name, parsed.problem)
    hub = discover(response.links, parsed, response.url)
    feed_state.update(hub_url=hub.hub if hub else None, topic_url=hub.topic if hub else None)
    return read_entries(state, parsed.entries, deps, feed_state=feed_state)


def read_entries(state: repo.FeedState, entries: list[FeedEntry], deps: Deps, *, feed_state: dict, pushed: bool = False) -> FeedPoll:
    """Read the articles of a feed's entries that are new (or whose headline changed), polled or pushed."""
    settings = deps.settings
    entries = list({canonical_url(e.url): e for e in reversed(entries)}.values())[::-1]
    with deps.sessions() as session:
        known = repo.known_titles(session, [canonical_url(e.url) for e in entries])
    # New URLs, and stored ones whose headline the feed has since changed (an edited article), compared as stored.
    fresh = [
        e for e in entries
        if canonical_url(e.url) not in known or (e.title and known[canonical_url(e.url)] != unmarked(e.title))
    ]

    def read(entry: FeedEntry) -> Candidate:
        return read_article(
            entry, feed_id=state.id, language=state.language, fetcher=deps.fetcher, settings=settings, timings=deps.timings
        )

    candidates = deps.page_pool.map(read, fresh, url=lambda e: e.url) if deps.page_pool else [read(e) for e in fresh]
    outcome = FeedOutcome(feed=state.name, ok=True, page_errors=[c.page_error for c in candidates if c.page_error])
    return FeedPoll(
        state.id,
        outcome,
        candidates,
        feed_state=feed_state,
        page_failures=[(c.original_url, c.page_error) for c in candidates if c.page_error],
        pushed=pushed,
    )


def _when(candidate: Candidate, now: datetime) -> datetime:
    return candidate.published if candidate.published and candidate.published <= now else now


def ingest(poll: FeedPoll, deps: Deps) -> FeedOutcome:
    """Embed, score, place in stories and store a poll's new articles with the feed's new state, in one transaction."""
    if poll.feed_state is None:
        return poll.outcome
    documents = [Document(c.title, c.text) for c in poll.candidates]
    with deps.timings.measure("embed"):
        vectors = deps.embedder.embed([d.for_embedding for d in documents])
    with deps.timings.measure("score"):
        per_topic = [scorer.score(documents, vectors) for scorer in deps.scorers]
    with deps.timings.measure("dedup"):
        signatures = [signature(c.text) for c in poll.candidates]
    items = [
        repo.StoredArticle(
            candidate=c,
            content_hash=content_hash(c.text),
            embedding=to_bytes(vectors[i]),
            verdicts=[verdicts[i] for verdicts in per_topic],
            minhash=signature_to_bytes(signatures[i]) if signatures[i] is not None else None,
        )
        for i, c in enumerate(poll.candidates)
    ]
    now = deps.clock()
    with deps.deduper.lock:
        deps.deduper.prune(now)
        try:
            with deps.timings.measure("store"), deps.sessions.begin() as session:
                with deps.timings.measure("placement lock"):
                    catch_up(session, deps.deduper, topic=_first_topic(deps), now=now)
                interval = repo.feed_state(session, poll.feed_id).interval_seconds
                stored = repo.add_articles(session, items, now=now)
                for index, candidate in enumerate(poll.candidates):
                    if candidate.url in stored:
                        _place(session, deps, stored[candidate.url], items[index], signatures[index], vectors[index], now)
                    elif (updated := repo.update_article(session, items[index], now=now)) is not None:
                        _refresh_story(session, deps, updated[1], items[index].verdicts, now)
                repo.record_page_failures(session, poll.feed_id, poll.page_failures, now=now)
                if not poll.pushed:
                    repo.record_feed_success(
                        session, poll.feed_id, now=now, next_due=now + timedelta(seconds=interval), **poll.feed_state
                    )
        except Exception:
            load_deduper(deps.deduper, deps.sessions, topic=_first_topic(deps), now=now)  # forget what was rolled back
            raise
    poll.outcome.new_articles = len(stored)
    if per_topic:
        poll.outcome.relevant = sum(
            1 for c, verdict in zip(poll.candidates, per_topic[0]) if verdict.relevant and c.url in stored
        )
    return poll.outcome


def _first_topic(deps: Deps) -> str:
    return deps.scorers[0].spec.name if deps.scorers else ""


def _place(session: Session, deps: Deps, article_id: int, item: repo.StoredArticle, sig, vector, now: datetime) -> None:
    tags = item.verdicts[0] if item.verdicts else None
    incoming = Incoming(
        key=article_id,
        content_hash=item.content_hash,
        signature=sig,
        vector=vector,
        when=_when(item.candidate, now),
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
    if deps.on_relevant_story:
        for topic in newly_relevant:
            deps.on_relevant_story(session, story_id, topic)


def _refresh_story(session: Session, deps: Deps, story_id: int | None, verdicts, now: datetime) -> None:
    if story_id is None:
        return
    for topic in repo.update_story_topics(session, story_id, verdicts, now=now):
        if deps.on_relevant_story:
            deps.on_relevant_story(session, story_id, topic)


def store_failure(exc: SQLAlchemyError) -> str:
    """A store error as a sentence for the feed's record: the driver's first line, never the SQL or its parameters."""
    reason = str(exc.orig) if isinstance(exc, DBAPIError) else type(exc).__name__
    first_line = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
    return f"the store refused this poll's changes ({first_line[:200]}); they were rolled back and are retried next time"


def record_crash(feed_id: int, deps: Deps, exc: Exception) -> FeedOutcome:
    """A bug or a store failure in one feed's poll: logged, recorded as a sentence, and the run goes on."""
    if isinstance(exc, SQLAlchemyError):
        message = store_failure(exc)
        log.error("poll of feed %s: %s", feed_id, message)
        log.debug("poll of feed %s: the store's error in full", feed_id, exc_info=exc)
    else:
        log.exception("poll of feed %s crashed", feed_id, exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {exc}"
    with deps.sessions() as session:
        state = repo.feed_state(session, feed_id)
    return _fail(deps, state, message).outcome


def poll_feed(feed_id: int, deps: Deps) -> FeedOutcome:
    """One full poll of one feed: the unit of work of the scheduler (and, later, of a worker)."""
    outcome = ingest(collect_feed(feed_id, deps), deps)
    if deps.on_outcome:
        deps.on_outcome(outcome)
    return outcome


def run_pass(
    feed_ids: list[int],
    deps: Deps,
    *,
    on_done: Callable[[FeedOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Poll feeds once, fetching in threads while the calling thread embeds and stores, so the model never waits."""
    outcomes: list[FeedOutcome] = []
    stop = stop or threading.Event()
    workers = deps.settings.fetch_workers
    in_flight = workers * FEEDS_PER_PAGE_THREAD
    with ThreadPoolExecutor(in_flight, thread_name_prefix="feed") as feed_pool, HostPool(deps.fetcher, workers) as page_pool:
        deps = replace(deps, page_pool=page_pool)
        pending: dict[Future, int] = {}
        queue = list(feed_ids)
        while queue or pending:
            while queue and len(pending) < in_flight and not stop.is_set():
                feed_id = queue.pop(0)
                pending[feed_pool.submit(collect_feed, feed_id, deps)] = feed_id
            if stop.is_set():
                queue.clear()
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                feed_id = pending.pop(future)
                try:
                    outcome = ingest(future.result(), deps)
                except Exception as exc:  # one feed's crash must not end the pass for the others
                    outcome = record_crash(feed_id, deps, exc)
                outcomes.append(outcome)
                if deps.on_outcome:
                    deps.on_outcome(outcome)
                if on_done:
                    on_done(outcome)
    return outcomes


def rescore_all(
    sessions: sessionmaker[Session], scorers: list[TopicScorer], embedder: Embedder, *, now: datetime, batch: int = 256
) -> dict[str, tuple[int, int]]:
    """Score stored articles again from their stored text and vectors: (articles, relevant) per topic."""
    counts = {scorer.spec.name: [0, 0] for scorer in scorers}
    after = 0
    while True:
        with sessions() as session:
            rows = repo.articles_after(session, after, limit=batch)
        if not rows:
            break
        documents = [Document(row.title, row.text) for row in rows]
        missing = [i for i, row in enumerate(rows) if row.embedding is None]
        vectors = [from_bytes(row.embedding) if row.embedding is not None else None for row in rows]
        for i, vector in zip(missing, embedder.embed([documents[i].for_embedding for i in missing])):
            vectors[i] = vector
        matrix = np.vstack(vectors)
        with sessions.begin() as session:
            for scorer in scorers:
                for row, verdict in zip(rows, scorer.score(documents, matrix)):
                    repo.save_verdicts(session, row.id, [verdict], now=now)
                    counts[scorer.spec.name][0] += 1
                    counts[scorer.spec.name][1] += verdict.relevant
        after = rows[-1].id
    return {name: (total, relevant) for name, (total, relevant) in counts.items()}
