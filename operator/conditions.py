"""Status and conditions: pure functions from observed facts to the status we publish.

Conditions follow the Kubernetes convention (type/status/reason/message/
lastTransitionTime/observedGeneration). ``lastTransitionTime`` moves only when
``status`` flips, and ``status_patch`` returns only what differs from the
current status, so an unchanged world produces no write.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# Condition types.
ARTIFACT_READY = "ArtifactReady"
IMAGE_READY = "ImageReady"
READY = "Ready"
DEGRADED = "Degraded"
CONDITION_ORDER = (ARTIFACT_READY, IMAGE_READY, READY, DEGRADED)

# Reasons (CamelCase, stable: alerts and scripts match on them).
AS_EXPECTED = "AsExpected"
SERVING = "Serving"
SPEC_INVALID = "SpecInvalid"
PENDING = "Pending"
DEPLOYMENT_MISSING = "DeploymentMissing"
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
PODS_NOT_READY = "PodsNotReady"
ROLLOUT_STALLED = "RolloutStalled"
SCALED_TO_ZERO = "ScaledToZero"
USER_PROVIDED_IMAGE = "UserProvidedImage"
VERIFIED = "Verified"
READING = "Reading"  # the artifact is being read from S3 (slow, or after a failed try)
PUSHING = "Pushing"  # the model image is being pushed (slow, or after a failed try)
IMAGE_BUILT = "Built"
IMAGE_REUSED = "Reused"

# Why a pipeline step failed (PipelineError.reason), reported on ArtifactReady,
# ImageReady and Degraded. Spelled here only; the modules that raise them
# import them. Refusals of the serving container (ModelRejected,
# QualityGateFailed, ...) are the pod contract's: irisop_serving.contract.REFUSAL_KINDS.
# the artifact in S3 (artifact.py) and the credentials Secret
ARTIFACT_NOT_FOUND = "ArtifactNotFound"
CHECKSUM_MISMATCH = "ChecksumMismatch"
INVALID_METADATA = "InvalidMetadata"
TOO_LARGE = "TooLarge"
FORMAT_MISMATCH = "FormatMismatch"
ACCESS_DENIED = "AccessDenied"
INVALID_URI = "InvalidURI"
S3_UNAVAILABLE = "S3Unavailable"
CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
CREDENTIALS_INVALID = "CredentialsInvalid"
# the model image (images/)
RUNTIME_NOT_CONFIGURED = "RuntimeImageNotConfigured"
RUNTIME_NOT_FOUND = "RuntimeImageNotFound"
ARTIFACT_UNAVAILABLE = "ArtifactUnavailable"
REGISTRY_UNAVAILABLE = "RegistryUnavailable"
REGISTRY_UNAUTHORIZED = "RegistryUnauthorized"
REGISTRY_ERROR = "RegistryError"
ECR_ERROR = "ECRError"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str = ""

    @property
    def status_str(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


@dataclass(frozen=True)
class Rollout:
    """What the Deployment says about serving, reduced to what status needs."""

    ready: bool
    reason: str
    message: str
    replicas: int = 0
    ready_replicas: int = 0
    desired: int = 0
    stalled: bool = False


def observe_rollout(deployment: Mapping[str, Any] | None, image: str | None, was_ready: bool = False) -> Rollout:
    """Derive readiness from the Deployment's own status, never from "we applied it".

    ``was_ready`` is whether Ready is already True for this image. Until it is,
    Ready waits for the old version's pods to finish terminating: they keep
    answering through the Service during their grace period, so "Ready" earlier
    would let a client that saw Ready still get the previous model. Once Ready,
    a terminating pod is a scale-down, not a rollout, and does not revoke it.
    """
    if deployment is None:
        return Rollout(False, DEPLOYMENT_MISSING, "the Deployment does not exist yet")
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    st = deployment.get("status", {}) or {}
    desired = int(spec.get("replicas", 1))
    replicas = int(st.get("replicas", 0))
    ready = int(st.get("readyReplicas", 0))
    updated = int(st.get("updatedReplicas", 0))
    available = int(st.get("availableReplicas", 0))
    base = dict(replicas=replicas, ready_replicas=ready, desired=desired)
    conds = {c.get("type"): c for c in st.get("conditions", []) or []}
    progressing = conds.get("Progressing", {})

    if meta.get("deletionTimestamp"):
        return Rollout(False, DEPLOYMENT_MISSING, "the Deployment is being deleted", **base)
    running_image = next(iter(spec.get("template", {}).get("spec", {}).get("containers", [])), {}).get("image")
    if image and running_image != image:
        return Rollout(False, ROLLOUT_IN_PROGRESS, "the Deployment has not been updated to the new image yet", **base)
    if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        msg = f"rollout made no progress: {ready}/{desired} pods ready, {updated} updated; {progressing.get('message', '')}".strip()
        return Rollout(False, ROLLOUT_STALLED, msg, stalled=True, **base)
    if int(st.get("observedGeneration", 0)) < int(meta.get("generation", 0)):
        return Rollout(False, ROLLOUT_IN_PROGRESS, "the Deployment controller has not seen the latest spec", **base)
    if desired == 0:
        return Rollout(False, SCALED_TO_ZERO, "replicas is 0", **base)
    if updated < desired:
        return Rollout(False, ROLLOUT_IN_PROGRESS, f"{updated}/{desired} pods run the new version", **base)
    if replicas > updated:
        return Rollout(False, ROLLOUT_IN_PROGRESS, f"{replicas - updated} old pods still terminating", **base)
    if available < desired or ready < desired:
        return Rollout(False, PODS_NOT_READY, f"{ready}/{desired} pods ready", **base)
    # terminatingReplicas: Kubernetes >= 1.35 (DeploymentReplicaSetTerminatingReplicas, beta, on by default).
    terminating = int(st.get("terminatingReplicas") or 0)
    if terminating and not was_ready:
        return Rollout(False, ROLLOUT_IN_PROGRESS, f"{terminating} old pods still terminating", **base)
    return Rollout(True, SERVING, f"{ready}/{desired} pods ready", **base)


def merge_conditions(
    current: Sequence[Mapping[str, Any]], updates: Sequence[Condition], generation: int, now: str | None = None
) -> list[dict[str, Any]]:
    """Apply updates to the current conditions, keeping lastTransitionTime unless status flips."""
    by_type = {c.get("type"): dict(c) for c in current or []}
    stamp = now or now_iso()
    for cond in updates:
        old = by_type.get(cond.type)
        flipped = old is None or old.get("status") != cond.status_str
        by_type[cond.type] = {
            "type": cond.type,
            "status": cond.status_str,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": stamp if flipped else old.get("lastTransitionTime", stamp),
            "observedGeneration": generation,
        }
    ordered = [by_type.pop(t) for t in CONDITION_ORDER if t in by_type]
    return ordered + [by_type[t] for t in sorted(by_type)]


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == type_:
            return cond
    return {}


def is_true(status: Mapping[str, Any], type_: str) -> bool:
    return condition(status, type_).get("status") == "True"


@dataclass(frozen=True)
class StatusFacts:
    """Everything the published status is computed from."""

    generation: int
    selector: str
    rollout: Rollout
    url: str | None = None
    image: str | None = None
    model: Mapping[str, Any] | None = None
    # Conditions decided by this reconcile (artifact, image, spec); others are kept.
    decided: Sequence[Condition] = field(default_factory=tuple)
    # A problem that keeps the newest generation from serving (spec, artifact or image).
    blocking: Condition | None = None


def desired_status(current: Mapping[str, Any], facts: StatusFacts, now: str | None = None) -> dict[str, Any]:
    rollout = facts.rollout
    ready = Condition(READY, rollout.ready, rollout.reason, rollout.message)
    if facts.blocking is not None:
        degraded = Condition(DEGRADED, True, facts.blocking.reason, facts.blocking.message)
        if rollout.ready:
            # The previous version keeps serving; say so rather than hiding it.
            ready = Condition(READY, True, SERVING, f"{rollout.message}; serving the previous version")
    elif rollout.stalled:
        # RolloutStalled (the progress deadline), or the refusal kind the new pods gave (issue 13.2).
        degraded = Condition(DEGRADED, True, rollout.reason, rollout.message)
    else:
        degraded = Condition(DEGRADED, False, AS_EXPECTED, "")
    new: dict[str, Any] = {
        "observedGeneration": facts.generation,
        "replicas": rollout.replicas,
        "readyReplicas": rollout.ready_replicas,
        "replicaSummary": f"{rollout.ready_replicas}/{rollout.desired}",
        "selector": facts.selector,
        "conditions": merge_conditions(
            current.get("conditions", []), [*facts.decided, ready, degraded], facts.generation, now
        ),
    }
    for key, value in (("url", facts.url), ("image", facts.image), ("model", facts.model)):
        if value is not None:
            new[key] = value
        elif key in current:
            new[key] = current[key]
    return new


def status_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level status keys whose value changed; empty means "write nothing"."""
    return {k: v for k, v in new.items() if current.get(k) != v}
