"""Concurrent calls for the same key share one call: the first runs, the rest wait for its answer.

Many IrisModels often name one artifact (a GitOps repository stamping out a
model per team, a burst of creates from one template). Each would read
``model.json`` and size up the model file in S3, the same requests at the
same moment. Here the first reconcile of a source makes them and the ones
that arrive while it runs take its result, or its error.

Nothing is kept once the call returns: the next reconcile reads S3 again, so
an artifact replaced at its URI is seen as soon as it would have been without
this. A caller that joins a running call gets an answer read at most one
call's duration before it asked, the same as if its event had come a moment
earlier.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    def __init__(self, on_join: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future[V]] = {}
        self._on_join = on_join
        self.joined = 0  # calls answered by another call's result (for metrics and tests)

    def run(self, key: Hashable, fn: Callable[[], V]) -> V:
        """fn(), or the result of the fn() already running for key."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine: Future[V] = Future()
                self._running[key] = mine
            else:
                self.joined += 1
        if running is not None:
            self._on_join()
            return running.result()  # re-raises the leader's exception
        try:
            result = fn()
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        else:
            mine.set_result(result)
            return result
        finally:
            with self._lock:
                del self._running[key]

    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)
