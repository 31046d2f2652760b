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

Keys go to the pool only when a worker is free, so the heap, not the pool's
own FIFO queue, decides what runs next. And a key submitted as background
(the resume pass after a restart: 2,000 IrisModels that are already done)
runs only when no foreground key is due: handed to the pool as they fell
due, those 2,000 stood in front of a change made right after the restart,
which waited ~20-30 s behind them (benchmarks/operator_scale.py, N=2,000).

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
        self._workers = workers
        self._due: dict[Hashable, float] = {}
        self._background: set[Hashable] = set()  # pending keys that wait for the foreground
        self._latest: dict[Hashable, Any] = {}
        self._running: set[Hashable] = set()
        # One heap per lane, of (due, tie-breaker, key); they may hold stale
        # entries, see the module docstring.
        self._heaps: dict[bool, list[tuple[float, int, Hashable]]] = {False: [], True: []}
        self._order = itertools.count()  # keys are not comparable with each other
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, value: Any, delay: float | None = None, background: bool = False) -> None:
        """Run fn(value) for key after delay (default: the debouncer's); the latest value wins.

        The earliest deadline wins too: the first request of a burst sets it,
        later ones only refresh the value, and a request due sooner than a
        pending one (a spec change while a retry waits) brings the run forward.
        A foreground request for a key pending in the background moves it to
        the foreground.
        """
        with self._cond:
            self._latest[key] = value
            due = self._clock() + (self.delay if delay is None else delay)
            pending = self._due.get(key)
            promoted = not background and key in self._background
            if pending is not None and pending <= due and not promoted:
                return  # the pending run, due no later and in a lane no slower, takes the new value
            due = due if pending is None else min(due, pending)
            self._due[key] = due
            if background and pending is None:
                self._background.add(key)
            elif not background:
                self._background.discard(key)
            if key not in self._running:  # a running key is pushed again when its run ends (_run)
                self._push(key)
                self._cond.notify()

    def poke(self) -> None:
        """Look at the deadlines again now (the clock moved by more than the timer thread knows)."""
        with self._cond:
            self._cond.notify()

    def pending(self) -> int:
        """Keys waiting or running: 0 means every submitted run has finished."""
        with self._cond:
            return len(self._due.keys() | self._running)

    def _push(self, key: Hashable) -> None:
        heapq.heappush(self._heaps[key in self._background], (self._due[key], next(self._order), key))

    def _loop(self) -> None:
        while True:
            with self._cond:
                if len(self._running) >= self._workers:
                    self._cond.wait()  # a run that ends notifies
                    continue
                top = self._next_due()
                if top is None:
                    self._cond.wait()
                    continue
                due, key = top
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heaps[key in self._background])
                del self._due[key]
                self._background.discard(key)
                value = self._latest.pop(key)
                self._running.add(key)
            self._pool.submit(self._run, key, value)

    def _next_due(self) -> tuple[float, Hashable] | None:
        """The (due, key) to run next: a due foreground key first, then a due background key, else the earliest.

        Called under the lock.
        """
        tops = [top for top in (self._top(False), self._top(True)) if top is not None]
        if not tops:
            return None
        if tops[0][0] <= self._clock():
            return tops[0]  # the foreground's, if any is due; else the only lane's
        return min(tops, key=lambda top: top[0])

    def _top(self, background: bool) -> tuple[float, Hashable] | None:
        """The earliest live entry of one lane, dropping stale ones on the way."""
        heap = self._heaps[background]
        while heap:
            due, _, key = heap[0]
            if self._due.get(key) == due and (key in self._background) == background and key not in self._running:
                return due, key
            heapq.heappop(heap)  # superseded, moved lanes, already run, or running (re-pushed when it ends)
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
                    self._push(key)
                self._cond.notify()
