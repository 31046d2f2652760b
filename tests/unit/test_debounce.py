"""The settle queue: bursts coalesce per key, keys run in parallel, never twice at once."""
from __future__ import annotations

import threading
import time

from irisop_operator.debounce import Debouncer


def test_a_burst_runs_once_with_the_latest_value():
    seen, done = [], threading.Event()
    d = Debouncer(0.05, lambda v: (seen.append(v), done.set()))
    for i in range(10):
        d.submit("k", i)
    assert done.wait(2)
    time.sleep(0.1)
    assert seen == [9]


def test_keys_run_in_parallel_but_one_key_never_overlaps():
    active, overlaps, peak, lock = {}, [], [0], threading.Lock()
    finished = threading.Semaphore(0)

    def work(key):
        with lock:
            if active.get(key):
                overlaps.append(key)
            active[key] = True
            peak[0] = max(peak[0], sum(active.values()))
        time.sleep(0.2)
        with lock:
            active[key] = False
        finished.release()

    d = Debouncer(0.01, work, workers=4)
    for key in ("a", "b", "c", "d"):
        d.submit(key, key)
    time.sleep(0.05)
    d.submit("a", "a")  # arrives while "a" runs: must wait for it
    for _ in range(5):
        assert finished.acquire(timeout=3)
    assert overlaps == []
    assert peak[0] >= 2, "different keys run at the same time"
