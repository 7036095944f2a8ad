"""The one place that calls every stage in order, for one feed: fetch feed, parse, new?, fetch page, extract, then
store (monitor/storing.py: embed, score, place, store)."""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from monitor.cadence import WINDOW_DAYS, Cadence, choose_interval, host_floor
from monitor.config import Settings
from monitor.dedup import canonical_url
from monitor.deps import Deps, Timings
from monitor.domain import Candidate, FeedEntry, FeedOutcome, PollHint, http_link
from monitor.extract import MIN_TEXT_CHARS, extract
from monitor.feeds import NotAFeed, parse_feed
from monitor.fetch import Fetcher, FetchError, RetryLater, cache_hint
from monitor.hostpool import HostPool
from monitor.store import polling
from monitor.store import repository as repo
from monitor.store.terms import unmarked
from monitor.storing import Arrivals, store_articles
from monitor.times import backoff_delay
from monitor.websub import discover

log = logging.getLogger(__name__)


@dataclass
class FeedPoll:
    """A feed fetched and parsed, its new articles being read in the feed's order and stored as they come."""

    feed_id: int
    outcome: FeedOutcome
    reads: deque[Future[Candidate]] = field(default_factory=deque)
    # The feed's new ETag, Last-Modified and content hash: recorded only once every article is stored, so that a
    # crash in between reads the feed again and stores what is missing (stored URLs are skipped).
    feed_state: dict | None = None
    hints: tuple[PollHint, ...] = ()  # the publisher's, from the document and the response's headers
    pushed: bool = False  # a body a hub pushed: the feed's polling state (ETag, due time, errors) is left alone

    def ready(self) -> list[Candidate]:
        """The articles read since the last call, in the feed's order up to the first still being read; a read's crash is raised."""
        done = []
        while self.reads and self.reads[0].done():
            done.append(self.reads.popleft().result())
        return done

    def arrivals(self) -> Arrivals:
        """What `ready` gives, as the storing stage takes it."""
        return Arrivals(self.feed_id, self.outcome, self.ready())

    def abandon(self) -> None:
        """The reads not started yet are dropped (the poll crashed); the next poll reads them."""
        for future in self.reads:
            future.cancel()
        self.reads.clear()


def _fail(deps: Deps, state: polling.FeedState, message: str, *, retry_after: float | None = None) -> FeedPoll:
    now = deps.clock()
    delay = backoff_delay(state.current_interval, state.error_count + 1, deps.settings.max_backoff)
    if retry_after is not None:
        delay = max(delay, retry_after)
    log.info("feed %s failed: %s; next try in %.0fs", state.name, message, delay)  # the pass summary warns when most fail
    with deps.sessions.begin() as session:
        polling.record_feed_failure(
            session, state.id, url=state.url, message=message, now=now, next_due=now + timedelta(seconds=delay)
        )
    return FeedPoll(state.id, FeedOutcome(feed=state.name, ok=False, error=message))


def next_cadence(session: Session, deps: Deps, state: polling.FeedState, hints: tuple[PollHint, ...], now: datetime) -> Cadence:
    """The feed's next interval and why, from its items of the past week (those being stored included), the
    publisher's hints, its bounds and its host's politeness (monitor/cadence.py)."""
    settings, host = deps.settings, deps.fetcher.host_key(state.url)
    neighbours = sum(deps.fetcher.host_key(url) == host for url in polling.active_feed_urls(session))
    return choose_interval(
        polling.item_times(session, state.id, since=now - timedelta(days=WINDOW_DAYS)),
        now=now,
        watched_since=state.created_at or now,
        start=state.interval_seconds,
        bounds=(state.min_interval or settings.poll_min_interval, state.max_interval or settings.poll_max_interval),
        polls_per_item=settings.polls_per_item,
        hints=hints,
        politeness=host_floor(host, neighbours, deps.fetcher.host_delay),
        adaptive=settings.poll_adaptive,
    )


def _succeeded(session: Session, deps: Deps, state: polling.FeedState, hints: tuple[PollHint, ...], now: datetime, **feed_state) -> None:
    cadence = next_cadence(session, deps, state, hints, now)
    next_due = now + timedelta(seconds=cadence.seconds)
    polling.record_feed_success(
        session, state.id, now=now, next_due=next_due, poll_interval=cadence.seconds, poll_reason=cadence.reason, **feed_state
    )


def _unchanged(deps: Deps, state: polling.FeedState, hints: tuple[PollHint, ...], **feed_state) -> FeedPoll:
    now = deps.clock()
    with deps.sessions.begin() as session:
        _succeeded(session, deps, state, hints, now, **feed_state)
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
                    extracted = extract(response.content, url=response.url, feed=entry)
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
        author=(extracted.author if extracted else None) or entry.author,
        site_name=extracted.site_name if extracted else None,
        page_error=error,
    )
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
    """Fetch a feed and start reading its new articles through the page pool. Failures are recorded; nothing is stored yet."""
    with deps.sessions() as session:
        state = polling.feed_state(session, feed_id)
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
    served = cache_hint(response.cache_headers, now)
    hints = (*state.hints, *([served] if served else []))
    if response.not_modified:
        return _unchanged(deps, state, hints)
    digest = hashlib.sha256(response.content).hexdigest()
    feed_state = {"etag": response.etag, "last_modified": response.last_modified, "content_hash": digest}
    if full:
        feed_state["last_full_fetch_at"] = now
    if digest == state.content_hash:
        return _unchanged(deps, state, hints, **feed_state)
    try:
        with deps.timings.measure("parse"):
            parsed = parse_feed(response.content, url=response.url, content_type=response.content_type)
    except NotAFeed as exc:
        return _fail(deps, state, f"{exc} ({state.url})")
    if parsed.problem:
        log.info("feed %s is malformed but readable: %s", state.name, parsed.problem)
    feed_state["poll_hints"] = [[hint.source, hint.seconds] for hint in parsed.hints]
    hints = (*parsed.hints, *([served] if served else []))
    hub = discover(response.links, parsed, response.url)
    feed_state.update(hub_url=hub.hub if hub else None, topic_url=hub.topic if hub else None)
    return read_entries(state, parsed.entries, deps, feed_state=feed_state, hints=hints)


def read_entries(
    state: polling.FeedState, entries: list[FeedEntry], deps: Deps, *, feed_state: dict, hints: tuple[PollHint, ...] = (), pushed: bool = False
) -> FeedPoll:
    """Start reading the articles of a feed's entries that are new (or whose headline changed), polled or pushed."""
    settings = deps.settings
    entries = list({canonical_url(e.url): e for e in reversed(entries)}.values())[::-1]
    with deps.sessions() as session:
        known = repo.known_titles(session, [canonical_url(e.url) for e in entries])
    # New URLs, and stored ones whose headline the feed has since changed (an edited article), compared as stored.
    fresh = [
        e for e in entries
        if canonical_url(e.url) not in known or (e.title and known[canonical_url(e.url)] != unmarked(e.title))
    ]

    read = partial(read_article, feed_id=state.id, language=state.language, fetcher=deps.fetcher, settings=settings, timings=deps.timings)
    assert deps.page_pool is not None, "pages are read through deps.page_pool (poll_feed and run_pass provide one)"
    reads = deque(deps.page_pool.submit(e.url, partial(read, e)) for e in fresh)
    return FeedPoll(state.id, FeedOutcome(feed=state.name, ok=True), reads, feed_state=feed_state, hints=hints, pushed=pushed)


def finish_feed(poll: FeedPoll, deps: Deps) -> FeedOutcome:
    """Every article of the poll stored: the feed's new state and next interval are recorded (its new items counted)."""
    if poll.feed_state is not None and not poll.pushed:
        now = deps.clock()
        with deps.sessions.begin() as session:
            _succeeded(session, deps, polling.feed_state(session, poll.feed_id), poll.hints, now, **poll.feed_state)
    return poll.outcome


def ingest(poll: FeedPoll, deps: Deps) -> FeedOutcome:
    """Store each article as soon as it and those before it in the feed are read, then record the feed's new state."""
    while poll.reads:
        wait([poll.reads[0]])
        store_articles(poll.arrivals(), deps)
    return finish_feed(poll, deps)


def store_failure(exc: SQLAlchemyError) -> str:
    """A store error as a sentence for the feed's record: the driver's first line, never the SQL or its parameters."""
    reason = str(exc.orig) if isinstance(exc, DBAPIError) else type(exc).__name__
    first_line = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
    return f"the store refused this poll's changes ({first_line[:200]}); they were rolled back and are retried next time"


def record_crash(feed_id: int, deps: Deps, exc: Exception, poll: FeedPoll | None = None) -> FeedOutcome:
    """A bug or a store failure in one feed's poll: logged, recorded as a sentence, and the run goes on.

    The articles the poll stored before the crash stay, and are counted in the outcome.
    """
    if isinstance(exc, SQLAlchemyError):
        message = store_failure(exc)
        log.error("poll of feed %s: %s", feed_id, message)
        log.debug("poll of feed %s: the store's error in full", feed_id, exc_info=exc)
    else:
        log.exception("poll of feed %s crashed", feed_id, exc_info=exc)
        message = f"internal error: {type(exc).__name__}: {exc}"
    if poll is not None:
        poll.abandon()
    with deps.sessions() as session:
        state = polling.feed_state(session, feed_id)
    outcome = _fail(deps, state, message).outcome
    if poll is not None:
        outcome.new_articles, outcome.relevant, outcome.page_errors = poll.outcome.new_articles, poll.outcome.relevant, poll.outcome.page_errors
    return outcome


def poll_feed(feed_id: int, deps: Deps) -> FeedOutcome:
    """One full poll of one feed: the unit of work of the scheduler and of a worker. A crash is recorded as the feed's failure."""
    if deps.page_pool is None:
        with HostPool(deps.fetcher, 1) as pages:
            return poll_feed(feed_id, replace(deps, page_pool=pages))
    poll = None
    try:
        poll = collect_feed(feed_id, deps)
        outcome = ingest(poll, deps)
    except Exception as exc:
        outcome = record_crash(feed_id, deps, exc, poll)
    if deps.on_outcome:
        deps.on_outcome(outcome)
    return outcome
