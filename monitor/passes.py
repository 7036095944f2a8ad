"""A pass over many feeds: feeds and pages read in threads while the calling thread embeds each article as it comes
and a storing thread places and stores the batch before, so the model never waits for the database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from monitor.deps import Deps
from monitor.domain import FeedOutcome
from monitor.hostpool import HostPool
from monitor.pipeline import FeedPoll, collect_feed, finish_feed, record_crash
from monitor.storing import Share, prepare_batch, store_prepared

# Feeds in hand at once per page thread: each outlet is asked at most once per politeness delay, so the page threads
# stay busy only when several outlets have pages waiting.
FEEDS_PER_PAGE_THREAD = 4
# Batches embedded but not yet stored: past this the model waits for the database, rather than holding more in memory.
BATCHES_STORING = 2


def run_pass(
    feed_ids: list[int],
    deps: Deps,
    *,
    on_done: Callable[[FeedOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Poll feeds once: feeds and pages are read in threads while the calling thread embeds each article as soon as
    it (and those before it in its feed) is read, so that no article waits for its feed's last page. What every
    feed has read while the model was busy is embedded in one batch, and stored (one batch after another, in order)
    by a thread of its own while the model embeds the next: storing and placing cost a sixth of the model's time,
    which the model would otherwise wait for."""
    outcomes: list[FeedOutcome] = []
    stop = stop or threading.Event()
    workers = deps.settings.fetch_workers
    in_flight = workers * FEEDS_PER_PAGE_THREAD

    def done(outcome: FeedOutcome) -> None:
        outcomes.append(outcome)
        if deps.on_outcome:
            deps.on_outcome(outcome)
        if on_done:
            on_done(outcome)

    with (
        ThreadPoolExecutor(in_flight, thread_name_prefix="feed") as feed_pool,
        HostPool(deps.fetcher, workers) as page_pool,
        ThreadPoolExecutor(1, thread_name_prefix="store") as storer,
    ):
        deps = replace(deps, page_pool=page_pool)
        collecting: dict[Future, int] = {}
        reading: dict[int, FeedPoll] = {}
        storing: dict[Future, set[int]] = {}  # batches handed to the storing thread, oldest first, and their feeds
        failures: dict[int, Exception] = {}
        store = _storing_in_order(deps)
        queue = list(feed_ids)
        while queue or collecting or reading:
            while queue and len(collecting) + len(reading) < in_flight and not stop.is_set():
                feed_id = queue.pop(0)
                collecting[feed_pool.submit(collect_feed, feed_id, deps)] = feed_id
            if stop.is_set():
                queue.clear()
            waiting = [*collecting, *(poll.reads[0] for poll in reading.values() if poll.reads), *storing]
            if waiting:
                wait(waiting, return_when=FIRST_COMPLETED)
            for future in [future for future in collecting if future.done()]:
                feed_id = collecting.pop(future)
                try:
                    reading[feed_id] = future.result()
                except Exception as exc:  # one feed's crash must not end the pass for the others
                    done(record_crash(feed_id, deps, exc))
            batch = []
            for feed_id, poll in list(reading.items()):
                try:
                    batch.append(poll.arrivals())
                except Exception as exc:  # a read that crashed
                    del reading[feed_id]
                    done(record_crash(feed_id, deps, exc, poll))
            if shares := prepare_batch(batch, deps):
                if len(storing) >= BATCHES_STORING:
                    wait([next(iter(storing))])
                storing[storer.submit(store, shares)] = {arrivals.feed_id for arrivals, _ in shares}
            for future in [future for future in storing if future.done()]:
                del storing[future]
                failures.update(future.result())
            being_stored = set().union(*storing.values())
            for feed_id, poll in list(reading.items()):
                if feed_id in being_stored:
                    continue
                try:
                    if feed_id in failures:
                        raise failures[feed_id]
                    if poll.reads:
                        continue
                    outcome = finish_feed(poll, deps)
                except Exception as exc:
                    outcome = record_crash(feed_id, deps, exc, poll)
                del reading[feed_id]
                done(outcome)
    return outcomes


def _storing_in_order(deps: Deps) -> Callable[[list[Share]], dict[int, Exception]]:
    """Stores batches one after another; a feed whose storing failed has its later batches dropped, as its poll is
    recorded as crashed and the next poll reads them again."""
    failed: set[int] = set()

    def store(shares: list[Share]) -> dict[int, Exception]:
        found = store_prepared([share for share in shares if share[0].feed_id not in failed], deps)
        failed.update(found)
        return found

    return store
