"""What the pods of a stalled rollout say about why (pure, unit-tested).

A stalled Deployment only knows "no progress"; the reason users need is in
its newest pods: a waiting reason (ErrImagePull, CrashLoopBackOff, …), the
last termination message, or — for a model that passes every check but does
not load — the serving container's own line "model not ready: <reason>",
which it logs while its readiness gate keeps the pod out of the Service
(the kubelet does not put HTTP probe bodies into events). The operator reads
these only once a rollout has stalled, so a healthy cluster costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import names

# Logged by irisop_serving.service.load_state when the model is refused.
NOT_READY_MARKER = "model not ready: "
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


def reason_from_log(text: str) -> str | None:
    """The serving container's last "model not ready" reason in a log tail."""
    for line in reversed(text.splitlines()):
        at = line.find(NOT_READY_MARKER)
        if at != -1:
            return _short(line[at:].strip())
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
