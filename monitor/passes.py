"""A pass over many feeds: feeds and pages read in threads while the calling thread stores each article as it comes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from monitor.deps import Deps
from monitor.domain import FeedOutcome
from monitor.hostpool import HostPool
from monitor.pipeline import FeedPoll, collect_feed, finish_feed, record_crash
from monitor.storing import store_batch

# Feeds in hand at once per page thread: each outlet is asked at most once per politeness delay, so the page threads
# stay busy only when several outlets have pages waiting.
FEEDS_PER_PAGE_THREAD = 4


def run_pass(
    feed_ids: list[int],
    deps: Deps,
    *,
    on_done: Callable[[FeedOutcome], None] | None = None,
    stop: threading.Event | None = None,
) -> list[FeedOutcome]:
    """Poll feeds once: feeds and pages are read in threads while the calling thread embeds and stores each article
    as soon as it (and those before it in its feed) is read, so the model never waits and no article waits for its
    feed's last page. What every feed has read while the model was busy is embedded in one batch."""
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

    with ThreadPoolExecutor(in_flight, thread_name_prefix="feed") as feed_pool, HostPool(deps.fetcher, workers) as page_pool:
        deps = replace(deps, page_pool=page_pool)
        collecting: dict[Future, int] = {}
        reading: dict[int, FeedPoll] = {}
        queue = list(feed_ids)
        while queue or collecting or reading:
            while queue and len(collecting) + len(reading) < in_flight and not stop.is_set():
                feed_id = queue.pop(0)
                collecting[feed_pool.submit(collect_feed, feed_id, deps)] = feed_id
            if stop.is_set():
                queue.clear()
            waiting = [*collecting, *(poll.reads[0] for poll in reading.values() if poll.reads)]
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
            failures = store_batch(batch, deps)
            for feed_id, poll in list(reading.items()):
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
