"""Watch the newest pods of an unfinished rollout for a reason to report (issue 13.2).

A Deployment says "no progress" only after ``progressDeadlineSeconds``; a
serving container that refuses its model says why within seconds, and says
whether the refusal is permanent (serving/contract.py, NOT_READY_MARKER). So
while a rollout has not finished, the operator reads its new pods: a
permanent refusal becomes ``Degraded=<Kind>`` at once (the rollout stays
held: ``maxUnavailable: 0`` keeps the old pods serving); anything else only
explains the stall once the deadline has passed.

Pod status changes do not reach the operator (it watches no pods), so the
caller re-runs the check while ``look_again`` says so: while some new pod is
not ready and has said nothing yet (scheduled, starting, loading). A pod that
already explains itself (unschedulable, image pull back-off, a transient
refusal) is left to the deadline, so a fleet of pods that cannot start costs
no polling. Reads are throttled to one pod list (plus a log tail per running,
unready pod) every ``interval`` seconds per IrisModel, and the last result is
reused in between so status never flaps.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import conditions as c
from . import kube, names, podfacts

log = logging.getLogger(__name__)

# Seconds between two reads of one IrisModel's pods. With the 1 s settle
# delay, a refusal is reported at most ~interval + 1 s after the pod logs it.
LOOK_INTERVAL = 3.0
# Rollout states in which the new pods may have something to say.
_UNFINISHED = (c.ROLLOUT_IN_PROGRESS, c.PODS_NOT_READY, c.ROLLOUT_STALLED)


@dataclass(frozen=True)
class _Look:
    at: float
    key: tuple[Any, ...]  # (model sha256, Deployment generation, rollout reason): any change is worth a fresh look
    said: podfacts.Explanation


class NewPodsInspector:
    def __init__(self, api: Any, interval: float = LOOK_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.api = api  # list_pods, pod_log_tail of a kube.KubeIO (ApiServer, or the unit tests' fake)
        self.interval = interval
        self.clock = clock
        self._looks: dict[tuple[str, str], _Look] = {}
        self._lock = threading.Lock()

    def explain(self, namespace: str, name: str, rollout: c.Rollout, model_sha256: str,
                revision: Any = None) -> tuple[c.Rollout, bool]:
        """The rollout as status should describe it, and whether to look again soon.

        ``revision`` (the Deployment's generation) tells a new pod template
        from the last one even when the model is the same (a new minAccuracy).
        """
        key = (namespace, name)
        if rollout.ready or rollout.reason not in _UNFINISHED:
            with self._lock:
                self._looks.pop(key, None)
            return rollout, False
        said, fresh = self._explanation(namespace, name, (model_sha256, revision, rollout.reason))
        finding = said.finding
        if finding is not None and finding.permanent:
            message = f"pod {finding.pod}: {finding.reason}"
            if rollout.stalled:
                message += f"; {rollout.message}"
            assert finding.kind is not None
            # Remembered rather than read just now: look once more when the throttle allows, in case
            # the pod that said it has gone since (a newer template replaced it).
            return dataclasses.replace(rollout, stalled=True, reason=finding.kind, message=message), not fresh
        if rollout.stalled:
            if finding is not None:
                rollout = dataclasses.replace(rollout, message=f"pod {finding.pod}: {finding.reason}; {rollout.message}")
            return rollout, False  # the deadline decided; the Deployment's next event brings us back
        return rollout, said.starting or not fresh

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._looks.pop((namespace, name), None)

    def _explanation(self, namespace: str, name: str, state: tuple[Any, ...]) -> tuple[podfacts.Explanation, bool]:
        """What the pods said, and whether that was read just now (False: remembered from the last read)."""
        key = (namespace, name)
        model_sha256 = state[0]
        now = self.clock()
        with self._lock:
            last = self._looks.get(key)
        same = last is not None and last.key == state
        if same and now - last.at < self.interval:
            return last.said, False
        try:
            pods = podfacts.new_revision_pods(self.api.list_pods(namespace, names.selector_string(name)), model_sha256)
            said = podfacts.explain(
                pods, lambda pod: self.api.pod_log_tail(namespace, pod, names.CONTAINER_NAME))
        except kube.KubeError as exc:  # the explanation is a courtesy: never fail the status for it
            log.info("cannot read pods of %s/%s: %s", namespace, name, exc)
            return (last.said if same else podfacts.Explanation(None, False)), True
        with self._lock:
            self._looks[key] = _Look(now, state, said)
        return said, True
