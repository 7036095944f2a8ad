"""Page reads spread over outlets: no thread sleeps for one outlet's politeness slot while another outlet's page is ready.

Each host has its own queue (as Scrapy's download slots and Miniflux's per-host limits do). A free thread takes the
oldest page whose host may be asked now, so feeds still finish roughly in the order they came and the embedder is fed
steadily; the Fetcher's own spacing stays the rule, this only avoids waiting for it. A host's robots.txt, when not at
hand, is read as a task of its own ahead of the host's pages, at once (the Fetcher does not space it from the request
before it), so the page after it waits its delay in the queue, not in a thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from typing import Any, TypeVar

from monitor.fetch import Fetcher

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Task:
    order: int
    url: str
    run: Callable[[], Any]
    waits_turn: bool = True  # False for robots.txt, which the Fetcher reads without waiting for the host's slot
    future: Future = field(default_factory=Future)


@dataclass
class _Queue:
    tasks: deque[_Task] = field(default_factory=deque)
    in_flight: int = 0
    next_start: float = 0.0


class HostPool:
    """A fixed set of threads reading pages from per-host queues, each host spaced by the Fetcher's delay."""

    def __init__(self, fetcher: Fetcher, workers: int, *, name: str = "page"):
        self.fetcher = fetcher
        self._queues: dict[str, _Queue] = {}
        self._order = count()
        self._closed = False
        self._ready = threading.Condition()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def submit(self, url: str, fn: Callable[[], R]) -> Future:
        """Queue fn, which requests url, behind the earlier requests to the same host."""
        with self._ready:
            if self._closed:
                raise RuntimeError("the page pool is shut down")
            queue = self._queues.setdefault(self.fetcher.host_key(url), _Queue())
            if not queue.tasks and not queue.in_flight and not self.fetcher.has_robots(url):
                queue.tasks.append(_Task(next(self._order), url, partial(self.fetcher.read_robots, url), waits_turn=False))
            task = _Task(next(self._order), url, fn)
            queue.tasks.append(task)
            self._ready.notify()
        return task.future

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, url: Callable[[T], str]) -> list[R]:
        """fn over items, in their order; the first failure is raised, as Executor.map does."""
        futures = [self.submit(url(item), lambda item=item: fn(item)) for item in items]
        return [future.result() for future in futures]

    def shutdown(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()

    def _next(self) -> tuple[str, _Task] | None:
        """The oldest task whose host may be asked now; waits until one is. None once shut down and empty."""
        with self._ready:
            while True:
                now, wake, best = self.fetcher.clock(), None, None
                for host, queue in self._queues.items():
                    if not queue.tasks or queue.in_flight >= self.fetcher.host_concurrency:
                        continue
                    ready = max(queue.next_start, self.fetcher.ready_at(host)) if queue.tasks[0].waits_turn else now
                    if ready > now:
                        wake = ready if wake is None else min(wake, ready)
                    elif best is None or queue.tasks[0].order < self._queues[best].tasks[0].order:
                        best = host
                if best is not None:
                    queue = self._queues[best]
                    queue.in_flight += 1
                    queue.next_start = now + self.fetcher.host_delay
                    return best, queue.tasks.popleft()
                if self._closed and not any(q.tasks for q in self._queues.values()):
                    return None
                self._ready.wait(None if wake is None else wake - now)

    def _work(self) -> None:
        while (picked := self._next()) is not None:
            host, task = picked
            if task.future.set_running_or_notify_cancel():
                try:
                    task.future.set_result(task.run())
                except BaseException as exc:  # handed to whoever waits on the future
                    task.future.set_exception(exc)
            with self._ready:
                self._queues[host].in_flight -= 1
                self._ready.notify_all()
