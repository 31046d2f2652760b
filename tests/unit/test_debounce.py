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


def settled(d: Debouncer, timeout: float = 3.0, left: int = 0) -> bool:
    """True once at most ``left`` submitted runs are unfinished (polls the queue's own count)."""
    deadline = time.monotonic() + timeout
    while d.pending() > left:
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


def test_runs_go_in_deadline_order_and_an_earlier_request_brings_a_run_forward():
    clock, order, lock = FakeClock(), [], threading.Lock()

    def work(key):
        with lock:
            order.append(key)

    # One worker, so the order of dispatch is the order of the runs.
    d = Debouncer(1.0, work, workers=1, clock=clock)
    for key, delay in (("c", 13.0), ("a", 11.0), ("b", 12.0)):
        d.submit(key, key, delay=delay)
    d.submit("c", "c", delay=0.5)  # a spec change while a retry waits: due sooner
    d.submit("a", "a", delay=30.0)  # later than its pending deadline: the earlier one stays
    clock.advance(0.5, d)
    assert settled(d, left=2)  # "c" ran; "a" and "b" are not due yet
    assert order == ["c"]
    clock.advance(12.0, d)
    assert settled(d)
    assert order == ["c", "a", "b"]


def test_many_keys_each_run_once():
    clock, seen, lock = FakeClock(), [], threading.Lock()

    def work(value):
        with lock:
            seen.append(value)

    d = Debouncer(1.0, work, workers=4, clock=clock)
    for round_ in range(3):  # later submits only refresh the value
        for i in range(2000):
            d.submit(i, (i, round_))
    clock.advance(1.0, d)
    assert settled(d)
    assert sorted(seen) == [(i, 2) for i in range(2000)]


def test_a_foreground_key_runs_before_background_keys_that_fell_due_earlier():
    # The restart at scale: finished IrisModels are queued in the background,
    # and a change made right after the restart must not wait behind them,
    # neither in the heap nor in the pool's own FIFO queue (keys go to the
    # pool only when a worker is free).
    clock, order, lock = FakeClock(), [], threading.Lock()
    started, release = threading.Semaphore(0), threading.Event()

    def work(key):
        with lock:
            order.append(key)
        if key in ("bg0", "bg1"):
            started.release()
            release.wait(5)  # hold both workers while everything else is due

    d = Debouncer(0.0, work, workers=2, clock=clock)
    for i in range(50):
        d.submit(f"bg{i}", f"bg{i}", background=True)
    assert started.acquire(timeout=3) and started.acquire(timeout=3)  # by then bg2..bg49 were due too
    d.submit("new", "new")
    release.set()
    assert settled(d)
    assert order[:3] == ["bg0", "bg1", "new"] and sorted(order[3:]) == sorted(f"bg{i}" for i in range(2, 50))


def test_a_foreground_request_moves_a_background_key_forward_and_never_more_runs_than_workers():
    clock, order, lock = FakeClock(), [], threading.Lock()
    active, peak = [0], [0]

    def work(key):
        with lock:
            order.append(key)
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.002)  # long enough for runs to overlap if dispatch were unbounded
        with lock:
            active[0] -= 1

    d = Debouncer(0.0, work, workers=2, clock=clock)
    for i in range(40):
        d.submit(f"bg{i}", f"bg{i}", delay=1.0, background=True)
    d.submit("bg39", "bg39")  # a real change for a queued resume: foreground now, and due now
    assert settled(d, left=40 - 1)
    assert order == ["bg39"]
    clock.advance(1.0, d)
    assert settled(d)
    assert len(order) == 40 and peak[0] <= 2
