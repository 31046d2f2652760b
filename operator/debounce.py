"""Coalesce bursts of work per key: the latest request wins, run once after a delay.

A new Deployment produces several watch events within a second (ReplicaSet
created, pods created, counters updated). Publishing status on each would
make one write per event; running one resync shortly after the burst makes
one. This is the workqueue "add after" of Go controllers: one timer thread
hands due keys to a small pool, so 500 IrisModels settling at once publish in
parallel (a serial loop made status the bottleneck: 500 x ~115 ms at N=500 in
benchmarks/operator_scale.py). A key is never run twice at the same time.

The deadlines are kept in a heap: with 2,000 IrisModels queued at once, a
scan of every pending key per dispatch was quadratic (~12% of the
operator's CPU in a 500-model burst, py-spy). Entries are never removed from
the heap in place; an entry whose key has since got another deadline, or has
run, is skipped when it comes to the top.

The clock is injected (``time.monotonic`` by default) so the tests move time
instead of sleeping; after moving it they call ``poke()``, since the timer
thread otherwise sleeps until the deadline it computed from the old time.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable

log = logging.getLogger(__name__)


class Debouncer:
    def __init__(self, delay: float, fn: Callable[[Any], None], name: str = "debouncer", workers: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.fn = fn
        self._clock = clock
        self._due: dict[Hashable, float] = {}
        self._latest: dict[Hashable, Any] = {}
        self._running: set[Hashable] = set()
        # (due, tie-breaker, key); may hold stale entries, see the module docstring.
        self._heap: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()  # keys are not comparable with each other
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, value: Any, delay: float | None = None) -> None:
        """Run fn(value) for key after delay (default: the debouncer's); the latest value wins.

        The earliest deadline wins too: the first request of a burst sets it,
        later ones only refresh the value, and a request due sooner than a
        pending one (a spec change while a retry waits) brings the run forward.
        """
        with self._cond:
            self._latest[key] = value
            due = self._clock() + (self.delay if delay is None else delay)
            if key in self._due and self._due[key] <= due:
                return  # the pending run, due no later, takes the new value
            self._due[key] = due
            if key not in self._running:  # a running key is pushed again when its run ends (_run)
                heapq.heappush(self._heap, (due, next(self._order), key))
                self._cond.notify()

    def poke(self) -> None:
        """Look at the deadlines again now (the clock moved by more than the timer thread knows)."""
        with self._cond:
            self._cond.notify()

    def pending(self) -> int:
        """Keys waiting or running: 0 means every submitted run has finished."""
        with self._cond:
            return len(self._due.keys() | self._running)

    def _loop(self) -> None:
        while True:
            with self._cond:
                top = self._next_due()
                if top is None:
                    self._cond.wait()
                    continue
                due, key = top
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._due[key]
                value = self._latest.pop(key)
                self._running.add(key)
            self._pool.submit(self._run, key, value)

    def _next_due(self) -> tuple[float, Hashable] | None:
        """The earliest (due, key) that may run now, dropping stale entries on the way. Called under the lock."""
        while self._heap:
            due, _, key = self._heap[0]
            if self._due.get(key) == due and key not in self._running:
                return due, key
            heapq.heappop(self._heap)  # superseded, already run, or running (re-pushed when it ends)
        return None

    def _run(self, key: Hashable, value: Any) -> None:
        try:
            self.fn(value)
        except Exception:  # noqa: BLE001 - a failed run must not kill the pool; the next event retries
            log.exception("deferred run for %s failed", key)
        finally:
            with self._cond:
                self._running.discard(key)
                if key in self._due:  # submitted again while it ran: now it may run
                    heapq.heappush(self._heap, (self._due[key], next(self._order), key))
                self._cond.notify()
