"""The settle queue: bursts coalesce per key, keys run in parallel, never twice at once.

Time is a fake clock the tests move (no sleeping for the delay); waits are for
positive signals: an Event, a semaphore, pending() reaching 0.
"""
from __future__ import annotations

import threading
import time

from irisop_operator.debounce import Debouncer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float, debouncer: Debouncer) -> None:
        self.now += seconds
        debouncer.poke()


def settled(d: Debouncer, timeout: float = 3.0) -> bool:
    """True once every submitted run has finished (polls the queue's own count)."""
    deadline = time.monotonic() + timeout
    while d.pending():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_burst_runs_once_with_the_latest_value():
    clock, seen, done = FakeClock(), [], threading.Event()
    d = Debouncer(5.0, lambda v: (seen.append(v), done.set()), clock=clock)
    for i in range(10):
        d.submit("k", i)
    assert d.pending() == 1
    clock.advance(4.9, d)
    assert not done.is_set() and d.pending() == 1  # not due yet
    clock.advance(0.1, d)
    assert done.wait(3)
    assert settled(d)
    assert seen == [9]


def test_keys_run_in_parallel_but_one_key_never_overlaps():
    clock = FakeClock()
    active, overlaps, started, lock = {}, [], [], threading.Lock()
    began, finished, gate = threading.Semaphore(0), threading.Semaphore(0), threading.Event()

    def work(key):
        with lock:
            if active.get(key):
                overlaps.append(key)
            active[key] = True
            started.append(key)
        began.release()
        if key != "e":
            gate.wait(5)
        with lock:
            active[key] = False
        finished.release()

    d = Debouncer(1.0, work, workers=6, clock=clock)
    for key in ("a", "b", "c", "d"):
        d.submit(key, key)
    clock.advance(1.0, d)
    for _ in range(4):
        assert began.acquire(timeout=3)
    assert sorted(started) == ["a", "b", "c", "d"], "different keys run at the same time"
    # "a" again while its first run blocks, and "e" after it: two free workers,
    # so once "e" has started, a second "a" would have been handed out first.
    d.submit("a", "a")
    d.submit("e", "e")
    clock.advance(1.0, d)
    assert began.acquire(timeout=3)
    with lock:
        assert started[4:] == ["e"] and overlaps == []
    gate.set()
    for _ in range(6):
        assert finished.acquire(timeout=3)
    assert settled(d)
    assert overlaps == [] and started.count("a") == 2
