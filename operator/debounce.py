"""Coalesce bursts of work per key: the latest request wins, run once after a delay.

A new Deployment produces several watch events within a second (ReplicaSet
created, pods created, counters updated). Publishing status on each would
make one write per event; running one resync shortly after the burst makes
one. This is the workqueue "add after" of Go controllers, on one thread.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable

log = logging.getLogger(__name__)


class Debouncer:
    def __init__(self, delay: float, fn: Callable[[Any], None], name: str = "debouncer") -> None:
        self.delay = delay
        self.fn = fn
        self._due: dict[Hashable, float] = {}
        self._latest: dict[Hashable, Any] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, value: Any) -> None:
        with self._cond:
            self._latest[key] = value
            # The first request of a burst sets the deadline; later ones only refresh the value.
            self._due.setdefault(key, time.monotonic() + self.delay)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                key, due = min(self._due.items(), key=lambda kv: kv[1])
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                del self._due[key]
                value = self._latest.pop(key)
            try:
                self.fn(value)
            except Exception:  # noqa: BLE001 - a failed run must not kill the loop; the next event retries
                log.exception("deferred run for %s failed", key)
