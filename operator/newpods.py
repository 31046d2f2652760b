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
    model_sha256: str
    phase: str  # the rollout reason when read: a new phase (e.g. stalled) is worth a fresh look
    said: podfacts.Explanation


class NewPodsInspector:
    def __init__(self, api: Any, interval: float = LOOK_INTERVAL, clock: Callable[[], float] = time.monotonic):
        self.api = api  # list_pods, pod_log_tail of a kube.KubeIO (ApiServer, or the unit tests' fake)
        self.interval = interval
        self.clock = clock
        self._looks: dict[tuple[str, str], _Look] = {}
        self._lock = threading.Lock()

    def explain(self, namespace: str, name: str, rollout: c.Rollout, model_sha256: str) -> tuple[c.Rollout, bool]:
        """The rollout as status should describe it, and whether to look again soon."""
        key = (namespace, name)
        if rollout.ready or rollout.reason not in _UNFINISHED:
            with self._lock:
                self._looks.pop(key, None)
            return rollout, False
        said = self._explanation(namespace, name, model_sha256, rollout.reason)
        finding = said.finding
        if finding is not None and finding.permanent:
            message = f"pod {finding.pod}: {finding.reason}"
            if rollout.stalled:
                message += f"; {rollout.message}"
            assert finding.kind is not None
            return dataclasses.replace(rollout, stalled=True, reason=finding.kind, message=message), False
        if rollout.stalled:
            if finding is not None:
                rollout = dataclasses.replace(rollout, message=f"pod {finding.pod}: {finding.reason}; {rollout.message}")
            return rollout, False  # the deadline decided; the Deployment's next event brings us back
        return rollout, said.starting

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._looks.pop((namespace, name), None)

    def _explanation(self, namespace: str, name: str, model_sha256: str, phase: str) -> podfacts.Explanation:
        key = (namespace, name)
        now = self.clock()
        with self._lock:
            last = self._looks.get(key)
        same = last is not None and (last.model_sha256, last.phase) == (model_sha256, phase)
        if same and now - last.at < self.interval:
            return last.said
        try:
            pods = podfacts.new_revision_pods(self.api.list_pods(namespace, names.selector_string(name)), model_sha256)
            said = podfacts.explain(
                pods, lambda pod: self.api.pod_log_tail(namespace, pod, names.CONTAINER_NAME))
        except kube.KubeError as exc:  # the explanation is a courtesy: never fail the status for it
            log.info("cannot read pods of %s/%s: %s", namespace, name, exc)
            return last.said if same else podfacts.Explanation(None, False)
        with self._lock:
            self._looks[key] = _Look(now, model_sha256, phase, said)
        return said
