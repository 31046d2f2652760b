"""handlers.reconciler(): one Reconciler per process, even when kopf's worker
threads ask for it at the same instant (a race once built two, and objects
reconciled by the discarded one never got a status)."""
from __future__ import annotations

import threading

from irisop_operator import handlers


def test_concurrent_first_calls_share_one_reconciler(monkeypatch) -> None:
    monkeypatch.setattr(handlers, "_reconciler", None)
    monkeypatch.setattr(handlers, "_settle", None)
    barrier = threading.Barrier(16)
    seen: list[int] = []

    def first_call() -> None:
        barrier.wait()
        seen.append(id(handlers.reconciler()))

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 16 and len(set(seen)) == 1
