"""Events are posted behind the reconcile, not inside it.

An Event is best effort: telling the user must not slow or fail the work it
tells about. Posting one inside the reconcile made every reconcile wait for
one more API round trip (7% of a reconcile thread's time at 500 IrisModels in
benchmarks/operator_scale.py). client-go's event recorder works the same way:
the caller stamps and queues the Event, a background worker posts it.

The Event is built when it is queued, so its timestamps say when the decision
was made, and `kubectl describe` orders it by them. The queue is bounded: if
the API server cannot keep up, the newest Events are dropped and counted
(irisop_events_dropped_total), and the reconcile goes on.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Mapping

from . import metrics

log = logging.getLogger(__name__)

# Sends one Event, built by kube.event_manifest.
Post = Callable[[Mapping[str, Any]], None]

QUEUE_SIZE = 10_000  # ~20 MB of Events at most; 5 per IrisModel at 2,000
POSTERS = 2  # one posts while the other waits on the API server


class EventQueue:
    def __init__(self, post: Post, maxsize: int = QUEUE_SIZE, posters: int = POSTERS) -> None:
        self._post = post
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(maxsize)
        self._threads = [threading.Thread(target=self._loop, name=f"irisop-events-{i}", daemon=True)
                         for i in range(posters)]
        self._started = False

    def start(self) -> None:
        """Start the posters. Events submitted before wait in the queue; building one starts no thread."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def submit(self, event: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            metrics.EVENTS_DROPPED.inc()
            involved = event.get("involvedObject", {})
            log.warning("[%s/%s] event queue full: dropped %s", involved.get("namespace"), involved.get("name"),
                        event.get("reason"))

    def pending(self) -> int:
        """Events queued or being posted (``unfinished_tasks``): 0 once all were sent."""
        return self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (for up to ``timeout`` s each), then stop the posters."""
        if not self._started:
            return
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._post(event)
            except Exception:  # noqa: BLE001 - a poster thread must outlive one bad Event
                log.exception("posting an event failed")
            finally:
                self._queue.task_done()
