"""Coalesce bursts of work per key: the latest request wins, run once after a delay.

A new Deployment produces several watch events within a second (ReplicaSet
created, pods created, counters updated). Publishing status on each would
make one write per event; running one resync shortly after the burst makes
one. This is the workqueue "add after" of Go controllers: one timer thread
hands due keys to a small pool, so 500 IrisModels settling at once publish in
parallel (a serial loop made status the bottleneck: 500 x ~115 ms at N=500 in
benchmarks/operator_scale.py). A key is never run twice at the same time.

The clock is injected (``time.monotonic`` by default) so the tests move time
instead of sleeping; after moving it they call ``poke()``, since the timer
thread otherwise sleeps until the deadline it computed from the old time.
"""
from __future__ import annotations

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
            self._due[key] = min(self._due.get(key, due), due)
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
                ready = [(k, d) for k, d in self._due.items() if k not in self._running]
                if not ready:
                    self._cond.wait()
                    continue
                key, due = min(ready, key=lambda kv: kv[1])
                wait = due - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                del self._due[key]
                value = self._latest.pop(key)
                self._running.add(key)
            self._pool.submit(self._run, key, value)

    def _run(self, key: Hashable, value: Any) -> None:
        try:
            self.fn(value)
        except Exception:  # noqa: BLE001 - a failed run must not kill the pool; the next event retries
            log.exception("deferred run for %s failed", key)
        finally:
            with self._cond:
                self._running.discard(key)
                self._cond.notify()
