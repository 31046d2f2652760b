"""Events are posted behind the caller, in order of submission per poster, and dropped (counted) when full."""
from __future__ import annotations

import threading
import time

from irisop_operator import metrics
from irisop_operator.events import EventQueue


def event(reason: str) -> dict:
    return {"reason": reason, "involvedObject": {"namespace": "ns", "name": "m"}}


def drained(q: EventQueue, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while q.pending():
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.001)


def test_submit_returns_before_the_post_and_every_event_is_posted():
    gate, posted = threading.Event(), []
    q = EventQueue(lambda e: (gate.wait(5), posted.append(e["reason"])), posters=1)
    q.start()
    q.submit(event("ModelVersionReady"))
    q.submit(event("Ready"))
    assert q.pending() == 2  # queued while the poster waits on the "API server"
    gate.set()
    drained(q)
    assert posted == ["ModelVersionReady", "Ready"]
    q.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking():
    gate = threading.Event()
    q = EventQueue(lambda e: gate.wait(5), maxsize=1, posters=1)
    q.start()
    dropped = metrics.EVENTS_DROPPED._value.get()
    q.submit(event("a"))  # taken by the poster (waits on the gate)
    deadline = time.monotonic() + 5
    while q._queue.qsize():  # the poster holds "a": the queue's one slot is free again
        assert time.monotonic() < deadline
        time.sleep(0.001)
    q.submit(event("b"))  # fills the one slot
    q.submit(event("c"))  # dropped, at once
    assert metrics.EVENTS_DROPPED._value.get() == dropped + 1
    gate.set()
    drained(q)
    q.close()


def test_a_failing_post_does_not_stop_the_poster():
    posted = []

    def post(e):
        if e["reason"] == "bad":
            raise RuntimeError("boom")
        posted.append(e["reason"])

    q = EventQueue(post, posters=1)
    q.start()
    for reason in ("bad", "good"):
        q.submit(event(reason))
    drained(q)
    assert posted == ["good"]
    q.close()


def test_close_posts_what_is_queued_then_stops_the_posters():
    posted = []
    q = EventQueue(lambda e: posted.append(e["reason"]), posters=2)
    q.start()
    for i in range(20):
        q.submit(event(str(i)))
    q.close()
    assert sorted(posted, key=int) == [str(i) for i in range(20)]
    assert not any(t.is_alive() for t in q._threads)


def test_building_a_queue_starts_no_thread_and_events_wait_for_start():
    posted = []
    before = threading.active_count()
    q = EventQueue(lambda e: posted.append(e["reason"]), posters=2)
    q.submit(event("early"))
    assert threading.active_count() == before and q.pending() == 1
    q.close()  # closing a queue never started returns at once
    q.start()
    drained(q)
    assert posted == ["early"]
    q.close()
