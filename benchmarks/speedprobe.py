"""How fast this machine's CPU runs right now: a fixed piece of work, timed in thread CPU time.

On the 2-core development VM the same loop takes 39 to 62 ms from one second
to the next, idle or not (the host's other tenants), so a window measured in
a slow minute is up to 1.6x longer for the same work, and a comparison of
two windows taken a minute apart measures the host as much as the code.

``SpeedProbe`` runs a fixed loop every 0.25 s (~0.3 % of a core) and times
it in the probing thread's own CPU time, which waiting for a core or for the
GIL does not inflate: it measures the CPU's speed, not how busy the machine
is. ``speed(start, end)`` is the median over a window, in work units per
CPU-second. A CPU-bound window's length times its speed is its work, so the
benchmarks print a "speed-normalized" comparison beside the raw one. The raw
figure stays the one the targets name; the normalized one says how much of
a difference between two windows was the host.
"""
from __future__ import annotations

import os
import statistics
import threading
import time


class SpeedProbe:
    LOOP = 20_000  # ~0.3-0.5 ms of CPU on the development VM

    def __init__(self, interval: float = 0.25, cpu: int | None = None) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time, work units per CPU-second)
        self._stop = threading.Event()
        self._interval = interval
        self._cpu = cpu
        self._thread = threading.Thread(target=self._loop, name="speed-probe", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self._cpu is not None:
            os.sched_setaffinity(0, {self._cpu})  # 0: this thread only (Linux)
        while not self._stop.wait(self._interval):
            started = time.thread_time()
            sum(range(self.LOOP))
            spent = time.thread_time() - started
            if spent > 0:
                self.samples.append((time.monotonic(), 1e-6 * self.LOOP / spent))

    def speed(self, start: float, end: float) -> float:
        """The median speed between two ``time.monotonic()`` readings.

        A window shorter than the interval may hold no sample: then the one
        nearest its middle (NaN only before the first sample exists).
        """
        samples = list(self.samples)
        inside = [v for t, v in samples if start <= t <= end]
        if inside:
            return statistics.median(inside)
        middle = (start + end) / 2
        return min(samples, key=lambda s: abs(s[0] - middle))[1] if samples else float("nan")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
