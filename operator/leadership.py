"""Whether this replica leads: kopf's peering rule, read from kopf's peering objects.

With two replicas and kopf peering, kopf pauses its own handlers while
another live peer has a priority at least ours, but it tells the program
nothing. The watch cache (watchcache.py) runs outside kopf, so before the
operator writes on behalf of a child event it asks here. The rule is
kopf's (``kopf._core.engines.peering.process_peering_event``): paused while
any other peer whose lastseen + lifetime is still ahead has a priority
greater than or equal to ours. kopf writes one record per peer into the
peering object's status: ``{identity: {priority, lastseen, lifetime}}``.

The answer is re-read every ``ttl`` seconds, one GET per peering object;
an API error keeps the last answer (no write could succeed then). Work that
was queued while this replica led (a resume pass, retries) asks again when
it runs: ``active()`` re-reads an answer older than ``fresh`` seconds, so a
replica that kopf has just paused does not go on writing from its queues.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol

from . import kube

log = logging.getLogger(__name__)
GROUP_VERSION = "/apis/kopf.dev/v1"


class Reader(Protocol):
    def get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]: ...


def peering_paths(name: str, namespaces: tuple[str, ...]) -> list[str]:
    """kopf's peering objects: one ClusterKopfPeering cluster-wide, else a KopfPeering per namespace."""
    if not namespaces:
        return [f"{GROUP_VERSION}/clusterkopfpeerings/{name}"]
    return [f"{GROUP_VERSION}/namespaces/{ns}/kopfpeerings/{name}" for ns in namespaces]


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def outranked(peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: datetime) -> bool:
    """Whether a live peer other than us has a priority >= ours (kopf then pauses us)."""
    for other, record in peers.items():
        if other == identity or not isinstance(record, Mapping):
            continue
        try:
            # kopf's defaults for a missing field: seen now, for 60 s.
            seen = _parse_time(str(record["lastseen"])) if "lastseen" in record else now
            alive = (now - seen).total_seconds() < float(record.get("lifetime", 60))
            if alive and int(record.get("priority", 0)) >= priority:
                return True
        except (TypeError, ValueError):
            return True  # a record we cannot read: assume it outranks us rather than write twice
    return False


class Leadership:
    """``active()``: True without peering; with it, while no peering object says we are outranked.

    With peering a thread re-reads the peering objects every ``ttl`` seconds
    (``poll``) and calls ``on_gain`` when this replica becomes the leader:
    children may have drifted while it stood by, and kopf's relist on resume
    only re-delivers the IrisModels.
    """

    def __init__(self, peering: str, identity: str, priority: int, namespaces: tuple[str, ...] = (),
                 reader: Reader | None = None, ttl: float = 5.0, fresh: float = 1.0,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.peering, self.identity, self.priority = peering, identity, priority
        self._paths = peering_paths(peering, namespaces) if peering else []
        self._reader, self._ttl, self._fresh, self._now, self._clock = reader, ttl, fresh, now, clock
        self._active = not peering  # with peering: standby until a peering object says otherwise
        self._read_at: float | None = None  # clock() of the last read
        self._lock = threading.Lock()  # one read at a time; the others take its answer
        self._on_gain: Callable[[], None] = lambda: None
        self._stop = threading.Event()

    def active(self) -> bool:
        """Whether this replica leads, by an answer at most ``fresh`` seconds old (read again if older)."""
        if self.peering and (self._read_at is None or self._clock() - self._read_at > self._fresh):
            self.poll()
        return self._active

    def cached(self) -> bool:
        """The last answer, read at most ``ttl`` seconds ago, without reading: for callers that must not block."""
        return self._active

    def start(self, on_gain: Callable[[], None]) -> None:
        if not self.peering:
            return
        self._on_gain = on_gain

        def loop() -> None:
            while not self._stop.is_set():
                self.poll()
                self._stop.wait(self._ttl)

        threading.Thread(target=loop, name="irisop-leadership", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> bool:
        """Read the peering objects once; call the ``on_gain`` given to start() on becoming active. The new answer."""
        asked = self._clock()
        with self._lock:
            if self._read_at is not None and self._read_at >= asked:
                return self._active  # another thread read while we waited: its answer is as fresh
            was, self._active = self._active, self._read()
            self._read_at = self._clock()
        if self._active != was:
            log.info("peering %s: this replica is now %s", self.peering, "active" if self._active else "standby")
            if self._active:
                self._on_gain()
        return self._active

    def _read(self) -> bool:
        """What the peering objects say now; the last answer if they cannot be read."""
        if self._reader is None:
            return False
        try:
            bodies = [self._reader.get(path, []) for path in self._paths]
        except kube.KubeError as exc:
            log.warning("peering %s: %s; keeping the last answer (%s)", self.peering, exc,
                        "active" if self._active else "standby")
            return self._active
        now = self._now()
        # Only our own record in the status counts as being in the race: kopf
        # writes it at start-up, before it resumes any handler.
        return all(self.identity in (body.get("status") or {})
                   and not outranked(body.get("status") or {}, self.identity, self.priority, now)
                   for body in bodies)
