"""Passes over many feeds or articles: run_pass overlaps fetching (threads) with embedding; rescore_all scores the store again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace


from monitor.deps import Deps
from monitor.domain import FeedOutcome
from monitor.hostpool import HostPool
from monitor.pipeline import collect_feed, ingest, record_crash

# Feeds read at once per page thread: each outlet is asked at most once per politeness delay, so the page threads
# stay busy only when several outlets have pages waiting. A feed's thread mostly waits for its pages.
FEEDS_PER_PAGE_THREAD = 4


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
