"""The reconcile loop, as a short list of named steps.

    spec      = validate(body)                      # SpecError -> Degraded, no retry
    artifact  = ensure_artifact(body, spec)         # S3 -> verified copy (never unpickled)
    image     = ensure_image(spec, artifact)        # content-addressed model image, by digest
    live      = apply_children(owner, spec, image)  # server-side apply, only what drifted
    publish_status(body, facts)                     # written only when it changes

Two entry points share these steps: ``reconcile`` runs all of them when the
IrisModel itself changes; ``resync_children`` runs the last two when a child
changes (drift, rollout progress), using the image already in status, so a
child event never touches S3 or a registry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import conditions as c
from . import kube, names
from .builders import Owner, build_children
from .drift import needs_apply
from .pipeline import ImageResult, ModelSource, PipelineError, VerifiedArtifact
from .settings import Settings
from .spec import IrisModelSpec, SpecError, parse_spec

log = logging.getLogger(__name__)

# kind -> live object lookup (backed by kopf indexes in the running operator)
LiveLookup = Callable[[str, str, str], "dict[str, Any] | None"]
# Emit a Kubernetes Event about the IrisModel: (body, type, reason, message)
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


class Pipeline:
    """The artifact and image steps, injectable so unit tests need no S3."""

    def fetch_artifact(self, source: ModelSource, settings: Settings) -> VerifiedArtifact:
        from .artifact import fetch_artifact

        return fetch_artifact(source, settings)

    def ensure_model_image(self, artifact: VerifiedArtifact, repository: str, settings: Settings) -> ImageResult:
        from .images import ensure_model_image

        return ensure_model_image(artifact, repository, settings)


class Reconciler:
    def __init__(self, settings: Settings, live: LiveLookup, emit: EventSink, pipeline: Pipeline | None = None,
                 api: Any = kube):
        self.settings = settings
        self.api = api  # the kube module; unit tests pass a recording fake
        self.live = live
        self.emit = emit
        self.pipeline = pipeline or Pipeline()
        # One reconcile per IrisModel at a time: child events and spec changes
        # arrive on different threads and must not publish stale status.
        self._locks: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        # The status we last wrote, fresher than the watch cache right after a write.
        self._published: dict[tuple[str, str], dict[str, Any]] = {}

    # ---- entry points -------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> None:
        """Full reconcile after a change of the IrisModel (or operator start)."""
        owner = Owner.from_body(body)
        with self._locks[(owner.namespace, owner.name)]:
            spec = self.validate(body)
            served = self.ensure_served_version(body, spec)
            live = self.apply_children(owner, spec, served.image, served.sha256)
            self.publish_status(body, spec, live.get("Deployment"), served)

    def resync_children(self, body: Mapping[str, Any]) -> None:
        """A child changed: restore drift and refresh status, nothing else."""
        owner = Owner.from_body(body)
        with self._locks[(owner.namespace, owner.name)]:
            status = self.current_status(body)
            try:
                spec = parse_spec(body.get("spec") or {})
            except SpecError:
                return  # the full reconcile reports it
            served = ServedVersion.from_status(status, decided=())
            if served is None:
                return  # the pipeline has not produced an image yet
            live = self.apply_children(owner, spec, served.image, served.sha256)
            self.publish_status(body, spec, live.get("Deployment"), served)

    def forget(self, namespace: str, name: str) -> None:
        self._published.pop((namespace, name), None)
        self._locks.pop((namespace, name), None)

    # ---- steps --------------------------------------------------------

    def validate(self, body: Mapping[str, Any]) -> IrisModelSpec:
        try:
            spec = parse_spec(body.get("spec") or {})
            if not spec.image and not (spec.repository or self.settings.default_repository):
                raise SpecError("spec.repository: no image repository (set spec.repository or IRISOP_DEFAULT_REPOSITORY)")
        except SpecError as exc:
            blocking = c.Condition(c.DEGRADED, True, c.SPEC_INVALID, str(exc))
            self._report_failure(body, blocking, decided=())
            raise
        return spec

    def ensure_served_version(self, body: Mapping[str, Any], spec: IrisModelSpec) -> "ServedVersion":
        """Artifact then image, skipped when status already records both for this source."""
        status = self.current_status(body)
        key = source_key(spec, self.settings)
        known = ServedVersion.from_status(status, decided=())
        if known is not None and status.get("model", {}).get("source") == key and c.is_true(status, c.IMAGE_READY):
            return known
        try:
            source = self._with_credentials(body, spec.source, spec)
            artifact = self.pipeline.fetch_artifact(source, self.settings)
            artifact_ok = c.Condition(c.ARTIFACT_READY, True, c.VERIFIED, f"sha256 {artifact.sha256[:12]} verified")
        except PipelineError as exc:
            self._report_pipeline_error(body, c.ARTIFACT_READY, exc)
            raise
        try:
            if spec.image:
                image = spec.image
                image_ok = c.Condition(c.IMAGE_READY, True, c.USER_PROVIDED_IMAGE, "spec.image is served as given")
            else:
                repository = spec.repository or self.settings.default_repository
                result = self.pipeline.ensure_model_image(artifact, repository, self.settings)
                image = result.image
                reason = c.IMAGE_REUSED if result.reused else c.IMAGE_BUILT
                image_ok = c.Condition(c.IMAGE_READY, True, reason, f"{result.tag} ({'already in registry' if result.reused else 'pushed'})")
        except PipelineError as exc:
            self._report_pipeline_error(body, c.IMAGE_READY, exc, artifact_ok=artifact_ok)
            raise
        model = {
            "uri": artifact.uri,
            "sha256": artifact.sha256,
            "shortSha": artifact.sha256[:12],
            "source": key,
        }
        if artifact.version_id:
            model["versionId"] = artifact.version_id
        if artifact.etag:
            model["etag"] = artifact.etag
        if known is None or known.image != image:
            self.emit(body, "Normal", "ModelVersionReady", f"serving image {image} for model sha256 {artifact.sha256[:12]}")
        return ServedVersion(image=image, sha256=artifact.sha256, model=model, decided=(artifact_ok, image_ok))

    def apply_children(self, owner: Owner, spec: IrisModelSpec, image: str, sha256: str) -> dict[str, Any]:
        """Apply what drifted, delete what must not exist; return the live children."""
        live_children: dict[str, Any] = {}
        for kind, desired in build_children(owner, spec, image, sha256).items():
            live = self.live(kind, owner.namespace, names.child_name(owner.name))
            if desired is None:
                if live is not None:
                    self.api.delete(kind, owner.namespace, names.child_name(owner.name))
                continue
            live_children[kind] = self.api.apply(desired) if needs_apply(desired, live) else live
        return live_children

    def publish_status(self, body: Mapping[str, Any], spec: IrisModelSpec, deployment: Mapping[str, Any] | None,
                       served: "ServedVersion") -> None:
        owner = Owner.from_body(body)
        status = self.current_status(body)
        rollout = c.observe_rollout(deployment, served.image)
        facts = c.StatusFacts(
            generation=int(body["metadata"].get("generation", 0)),
            selector=names.selector_string(owner.name),
            rollout=rollout,
            url=names.service_url(owner.name, owner.namespace, spec.service_port, self.settings.cluster_domain),
            image=served.image,
            model=served.model,
            decided=served.decided,
            blocking=blocking_from_status(status) if not served.decided else None,
        )
        self._write_status(body, status, facts)

    # ---- helpers ------------------------------------------------------

    def current_status(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        return self._published.get(key) or dict(body.get("status") or {})

    def _write_status(self, body: Mapping[str, Any], current: Mapping[str, Any], facts: c.StatusFacts) -> None:
        new = c.desired_status(current, facts)
        patch = c.status_patch(current, new)
        if not patch:
            return
        meta = body["metadata"]
        self.api.patch_status(meta["namespace"], meta["name"], patch)
        self._published[(meta["namespace"], meta["name"])] = new
        was_ready, now_ready = c.is_true(current, c.READY), c.is_true(new, c.READY)
        if now_ready and not was_ready:
            self.emit(body, "Normal", "Ready", c.condition(new, c.READY).get("message", ""))
        elif was_ready and not now_ready:
            cond = c.condition(new, c.READY)
            self.emit(body, "Warning", cond.get("reason", "NotReady"), cond.get("message", ""))

    def _report_failure(self, body: Mapping[str, Any], blocking: c.Condition, decided: tuple[c.Condition, ...]) -> None:
        status = self.current_status(body)
        deployment = self.live("Deployment", body["metadata"]["namespace"], names.child_name(body["metadata"]["name"]))
        served = ServedVersion.from_status(status, decided=decided)
        facts = c.StatusFacts(
            generation=int(body["metadata"].get("generation", 0)),
            selector=names.selector_string(body["metadata"]["name"]),
            rollout=c.observe_rollout(deployment, served.image if served else None),
            decided=decided,
            blocking=blocking,
        )
        degraded_before = c.condition(status, c.DEGRADED)
        self._write_status(body, status, facts)
        if degraded_before.get("reason") != blocking.reason or degraded_before.get("message") != blocking.message:
            self.emit(body, "Warning", blocking.reason, blocking.message)

    def _report_pipeline_error(self, body: Mapping[str, Any], type_: str, exc: PipelineError,
                               artifact_ok: c.Condition | None = None) -> None:
        failed = c.Condition(type_, False, exc.reason, exc.message)
        decided = (artifact_ok, failed) if artifact_ok else (failed, c.Condition(c.IMAGE_READY, None, c.PENDING, "waiting for a verified artifact"))
        self._report_failure(body, c.Condition(c.DEGRADED, True, exc.reason, exc.message), decided)

    def _with_credentials(self, body: Mapping[str, Any], source: ModelSource, spec: IrisModelSpec) -> ModelSource:
        if not spec.credentials_secret:
            return source
        try:
            data = self.api.read_secret(body["metadata"]["namespace"], spec.credentials_secret)
        except kube.KubeError as exc:
            raise PipelineError("CredentialsUnavailable", f"Secret {spec.credentials_secret}: {exc}",
                                transient=exc.transient) from exc
        creds = {k: v for k, v in data.items() if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
        if not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= creds.keys():
            raise PipelineError("CredentialsInvalid",
                                f"Secret {spec.credentials_secret} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return ModelSource(uri=source.uri, sha256=source.sha256, format=source.format, credentials=creds)


@dataclass(frozen=True)
class ServedVersion:
    """The image and model the Deployment should run."""

    image: str
    sha256: str
    model: Mapping[str, Any]
    decided: tuple[c.Condition, ...]

    @classmethod
    def from_status(cls, status: Mapping[str, Any], decided: tuple[c.Condition, ...]) -> "ServedVersion | None":
        model = status.get("model") or {}
        if not status.get("image") or not model.get("sha256"):
            return None
        return cls(image=status["image"], sha256=model["sha256"], model=model, decided=decided)


def blocking_from_status(status: Mapping[str, Any]) -> c.Condition | None:
    """A pipeline failure recorded earlier keeps Degraded true until a reconcile clears it."""
    for type_ in (c.ARTIFACT_READY, c.IMAGE_READY):
        cond = c.condition(status, type_)
        if cond.get("status") == "False":
            return c.Condition(c.DEGRADED, True, cond.get("reason", ""), cond.get("message", ""))
    return None


def source_key(spec: IrisModelSpec, settings: Settings) -> str:
    """Identifies everything the served image depends on; a change triggers the pipeline."""
    doc = {
        "uri": spec.model_uri,
        "sha256": spec.model_sha256,
        "format": spec.model_format,
        "image": spec.image,
        "repository": spec.repository or settings.default_repository,
        "runtime": settings.runtime_image,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
