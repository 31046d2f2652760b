"""What the newest pods of a rollout say about why they are not ready (pure, unit-tested).

A Deployment only knows "no progress"; the reason users need is in its
newest pods: a waiting reason (ErrImagePull, CrashLoopBackOff, …), the last
termination message, or — for a model that passes every operator-side check
but not the serving container's — its own line "model not ready: <reason>",
which it logs while its readiness gate keeps the pod out of the Service (the
kubelet does not put HTTP probe bodies into events). That line also says
whether the refusal is permanent (serving/contract.py, NOT_READY_MARKER):
the operator reports a permanent one as Degraded at once, anything else only
once the rollout has stalled. Pods are read only while a rollout has not
finished, so a healthy cluster costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from irisop_serving.contract import NOT_READY_MARKER, Refusal, parse_not_ready

from . import names

MAX_MESSAGE = 400


@dataclass(frozen=True)
class PodClue:
    pod: str
    reason: str | None  # what the pod status says, if it says anything
    read_log: bool  # running but unready: the serving log has the reason


def new_revision_pods(pods: Sequence[Mapping[str, Any]], model_sha256: str) -> list[Mapping[str, Any]]:
    """Pods of the rollout being attempted: their template names the new model."""
    return [p for p in pods
            if (p.get("metadata", {}).get("annotations") or {}).get(names.ANNOTATION_MODEL_SHA) == model_sha256
            and not p.get("metadata", {}).get("deletionTimestamp")]


def clue(pod: Mapping[str, Any]) -> PodClue:
    """The most specific explanation one pod's status offers."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {}) or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting.get("reason") not in ("ContainerCreating", "PodInitializing"):
            last = ((cs.get("lastState") or {}).get("terminated") or {})
            detail = waiting.get("message") or last.get("message") or last.get("reason") or ""
            return PodClue(name, _short(f"{cs.get('name')}: {waiting['reason']}" + (f": {detail}" if detail else "")),
                           False)
    for cs in statuses:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            detail = terminated.get("message") or terminated.get("reason") or f"exit code {terminated.get('exitCode')}"
            return PodClue(name, _short(f"{cs.get('name')}: {detail}"), False)
    running_unready = any("running" in (cs.get("state") or {}) and not cs.get("ready")
                          for cs in status.get("containerStatuses") or [])
    if running_unready:
        return PodClue(name, None, True)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodClue(name, _short(f"unschedulable: {cond.get('message') or cond.get('reason', '')}"), False)
    return PodClue(name, None, False)


def reason_from_log(text: str) -> Refusal | None:
    """The serving container's last "model not ready" line in a log tail, parsed."""
    for line in reversed(text.splitlines()):
        found = parse_not_ready(line)
        if found is not None:
            return Refusal(reason=_short(found.reason, MAX_MESSAGE - len(NOT_READY_MARKER)), kind=found.kind)
    return None


@dataclass(frozen=True)
class Finding:
    """Why one pod of the new revision is not ready, as the condition will say it."""

    pod: str
    reason: str
    kind: str | None = None  # the refusal kind when the serving container says it is permanent

    @property
    def permanent(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class Explanation:
    finding: Finding | None  # a permanent refusal if any pod gives one, else the first clue
    starting: bool  # some pod is not ready and has said nothing yet: worth another look soon


def explain(pods: Sequence[Mapping[str, Any]], read_log: Callable[[str], str]) -> Explanation:
    """What the new revision's pods say, and whether one of them may still say something.

    ``read_log(pod_name)`` returns the serving container's log tail; it is only
    called for pods that run but are not ready.
    """
    first: Finding | None = None
    starting = False
    for pod in pods:
        found = clue(pod)
        finding = Finding(found.pod, found.reason) if found.reason else None
        if found.read_log:
            refusal = reason_from_log(read_log(found.pod))
            if refusal is not None:
                finding = Finding(found.pod, refusal.text(), refusal.kind)
        if finding is not None and finding.permanent:
            return Explanation(finding, False)
        starting = starting or (finding is None and not _ready(pod))
        first = first or finding
    return Explanation(first, starting)


def _ready(pod: Mapping[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


def _short(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
