"""Say in status that a slow pipeline step is running or retrying (issue 13.3).

An S3 read or a registry push blocks its reconcile for as long as the store
takes (botocore's read timeout alone is 30 s), and a failed one is retried
by kopf seconds later. Without a word in status, the IrisModel would keep
showing the previous version's "sha256 … verified" all that time. Two small
pieces fix that:

- ``Attempts`` numbers the tries of one step for one source and remembers the
  last transient error, so a message can read
  "reading s3://b/iris/v2/ (attempt 2: S3 unreachable …)".
- ``SlowSteps.announce_if_slow`` runs a status write from a worker if the
  step is still running after a few seconds. Fast steps (the usual case) write
  nothing extra; the reconcile thread waits for a running announcement
  before it writes its own result, so the last word is always the result.
"""
from __future__ import annotations

import itertools
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from . import kube
from .debounce import Debouncer

log = logging.getLogger(__name__)

# Seconds a step may run before status says it is running: short enough that
# the condition changes well within 10 s, long enough that a normal fetch or
# push (well under a second) costs no extra status write.
ANNOUNCE_AFTER = 3.0


@dataclass(frozen=True)
class Attempt:
    number: int  # 1 for the first try of this step for this source
    last_error: str | None  # what the previous try failed with (transient), if any

    def describe(self, doing: str) -> str:
        """"reading s3://…" or "reading s3://… (attempt 2: <last error>)"."""
        if self.number == 1:
            return doing
        return f"{doing} (attempt {self.number}: {self.last_error})" if self.last_error else \
            f"{doing} (attempt {self.number})"


class Attempts:
    """Tries per pipeline step of one IrisModel, counted for one source at a time; thread-safe."""

    def __init__(self) -> None:
        self._tries: dict[str, tuple[str, int, str | None]] = {}  # step -> (source, failures, last error)
        self._lock = threading.Lock()

    def start(self, step: str, source: str) -> Attempt:
        with self._lock:
            known_source, failures, last = self._tries.get(step, (source, 0, None))
            if known_source != source:  # a new version: counting starts again
                failures, last = 0, None
            self._tries[step] = (source, failures, last)
            return Attempt(failures + 1, last)

    def failed(self, step: str, source: str, error: str) -> Attempt:
        """Record a transient failure; return the attempt that failed."""
        with self._lock:
            known_source, failures, _ = self._tries.get(step, (source, 0, None))
            failures = failures + 1 if known_source == source else 1
            self._tries[step] = (source, failures, error)
            return Attempt(failures, error)

    def finished(self, step: str) -> None:
        with self._lock:
            self._tries.pop(step, None)


class Notice:
    """One ``announce_if_slow`` block: announced at most once, and never after the block has ended."""

    def __init__(self, announce: Callable[[], None]) -> None:
        self._announce = announce
        self._lock = threading.Lock()
        self._done = False
        self._settled = threading.Event()  # fired, or cancelled
        self.announced = False

    def fire(self) -> None:
        with self._lock:
            if not self._done:
                try:
                    self._announce()
                    self.announced = True
                except kube.KubeError as exc:  # a courtesy: the step's own result is written anyway
                    log.info("could not announce a slow step: %s", exc)
        self._settled.set()

    def cancel(self) -> None:
        with self._lock:  # waits for an announcement in flight, and stops a late one
            self._done = True
        self._settled.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the notice has fired or been cancelled."""
        self._settled.wait(timeout)


class SlowSteps:
    """Every pending announcement on one timer thread and a few workers.

    A ``threading.Timer`` per step started two threads per reconcile; at 500
    IrisModels at once that was ~7 % of the reconcile threads' time, spent
    waiting in ``Thread.start`` (py-spy of benchmarks/operator_scale.py).
    Built on first use, so a Reconciler that never runs a step starts no thread.
    """

    def __init__(self, workers: int = 4) -> None:
        self._workers = workers
        self._queue: Debouncer | None = None
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @contextmanager
    def announce_if_slow(self, after: float, announce: Callable[[], None]) -> Iterator[Notice]:
        """Call ``announce()`` once, from a worker, if the block is still running after ``after`` seconds."""
        notice = Notice(announce)
        self._timer().submit(next(self._ids), notice, delay=after)
        try:
            yield notice
        finally:
            notice.cancel()

    def _timer(self) -> Debouncer:
        with self._lock:
            if self._queue is None:
                self._queue = Debouncer(0.0, Notice.fire, name="irisop-slow-step", workers=self._workers)
            return self._queue
