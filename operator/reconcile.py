"""The reconcile loop, as a short list of named steps.

    spec      = validate(body)                      # SpecError -> Degraded, no retry
    served    = ensure_served_version(body, spec)   # S3 artifact verified (never unpickled),
                                                    # then the content-addressed image, by digest
    apply_children(owner, spec, served)             # server-side apply, only what drifted
    publish_status(body, ...)                       # written only when it changes

Two entry points share these steps: ``reconcile`` runs all of them when the
IrisModel itself changes; ``resync_children`` runs the last two when a child
changes (drift, rollout progress), using the version already decided, so a
child event never touches S3 or a registry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import conditions as c
from irisop_serving.contract import REFUSAL_KINDS

from . import kube, names
from .builders import Owner, build_children
from .drift import needs_apply
from .newpods import NewPodsInspector
from .pipeline import ImageResult, ModelSource, PipelineError, VerifiedArtifact
from .settings import Settings
from .spec import IrisModelSpec, SpecError, parse_spec

log = logging.getLogger(__name__)

# (namespace, name, uid): an IrisModel deleted and re-created under the same
# name is a new object, and must not inherit the old one's remembered status.
Key = tuple[str, str, str]
# kind, namespace, name -> live object (backed by kopf indexes in the running operator)
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


@dataclass(frozen=True)
class ServedVersion:
    """The image and model the Deployment runs: changes only when a new version passed the pipeline."""

    image: str
    sha256: str
    model: Mapping[str, Any]  # status.model, including the source key it was built for

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "ServedVersion | None":
        model = status.get("model") or {}
        if not status.get("image") or not model.get("sha256"):
            return None
        return cls(image=status["image"], sha256=model["sha256"], model=model)


@dataclass(frozen=True)
class Outcome:
    """What the last pipeline run decided: its conditions, and a problem that blocks the newest spec."""

    decided: tuple[c.Condition, ...] = ()
    blocking: c.Condition | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> "Outcome":
        # After a restart: keep the recorded conditions, and a recorded failure keeps Degraded true.
        for type_ in (c.ARTIFACT_READY, c.IMAGE_READY):
            cond = c.condition(status, type_)
            if cond.get("status") == "False":
                return cls(blocking=c.Condition(c.DEGRADED, True, cond.get("reason", ""), cond.get("message", "")))
        return cls()


class Reconciler:
    def __init__(self, settings: Settings, live: LiveLookup, emit: EventSink, pipeline: Pipeline | None = None,
                 api: Any = kube, defer: Callable[[tuple[str, str], Mapping[str, Any]], None] | None = None,
                 requeue: Callable[[tuple[str, str], Mapping[str, Any]], None] | None = None):
        self.settings = settings
        self.live = live
        self.emit = emit
        self.pipeline = pipeline or Pipeline()
        self.api = api  # the kube module; unit tests pass a recording fake
        # How status publication after a change is scheduled. The operator
        # passes a Debouncer so the burst of Deployment events that follows an
        # apply costs one status write; the default publishes at once.
        self.defer = defer or (lambda key, body: self.resync_children(body))
        # How a resync asks to run again soon: while a rollout is unfinished its
        # new pods are re-read (NewPodsInspector). The default never re-runs.
        self.requeue = requeue or (lambda key, body: None)
        self.new_pods = NewPodsInspector(api)
        # One reconcile per IrisModel at a time: child events and spec changes
        # arrive on different threads and must not publish stale status.
        self._locks: dict[Key, threading.Lock] = {}
        # In-memory truth, fresher than the watch cache right after a write.
        self._published: dict[Key, dict[str, Any]] = {}  # the status we last wrote
        self._served: dict[Key, ServedVersion] = {}
        self._outcome: dict[Key, Outcome] = {}

    # ---- entry points -------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> None:
        """Full reconcile after a change of the IrisModel (or operator start)."""
        owner = Owner.from_body(body)
        with self._lock_for(body):
            spec = self.validate(body)
            served = self.ensure_served_version(body, spec)
            self.apply_children(owner, spec, served)
        self.defer((owner.namespace, owner.name), body)

    def resync_children(self, body: Mapping[str, Any]) -> None:
        """A child changed (or a change was just applied): restore drift and refresh status."""
        owner = Owner.from_body(body)
        with self._lock_for(body):
            try:
                spec = parse_spec(body.get("spec") or {})
            except SpecError:
                return  # the full reconcile reports it
            served = self.served_version(body)
            if served is None:
                return  # the pipeline has not produced an image yet
            live = self.apply_children(owner, spec, served)
            self.publish_status(body, spec, live.get("Deployment"), served)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is remembered about every incarnation of namespace/name."""
        self.new_pods.forget(namespace, name)
        for store in (self._published, self._served, self._outcome, self._locks):
            # list(): a snapshot, as other threads add keys meanwhile.
            for key in [k for k in list(store) if k[:2] == (namespace, name)]:
                store.pop(key, None)

    def _lock_for(self, body: Mapping[str, Any]) -> threading.Lock:
        # setdefault is one atomic step: a defaultdict's __missing__ is not, and
        # two threads racing on a new key could each get their own lock.
        return self._locks.setdefault(_key(body), threading.Lock())

    # ---- steps --------------------------------------------------------

    def validate(self, body: Mapping[str, Any]) -> IrisModelSpec:
        try:
            spec = parse_spec(body.get("spec") or {})
            if not spec.image and not (spec.repository or self.settings.default_repository):
                raise SpecError("spec.repository: no image repository (set spec.repository or IRISOP_DEFAULT_REPOSITORY)")
        except SpecError as exc:
            self._report_failure(body, Outcome(blocking=c.Condition(c.DEGRADED, True, c.SPEC_INVALID, str(exc))))
            raise
        return spec

    def ensure_served_version(self, body: Mapping[str, Any], spec: IrisModelSpec) -> ServedVersion:
        """Artifact then image; skipped when the served version was built from this very source."""
        key = source_key(spec, self.settings)
        known = self.served_version(body)
        if known is not None and known.model.get("source") == key and self.outcome(body).blocking is None:
            self._outcome[_key(body)] = Outcome()  # clears a SpecInvalid that has since been fixed
            return known
        try:
            artifact = self.pipeline.fetch_artifact(self._with_credentials(body, spec), self.settings)
        except PipelineError as exc:
            waiting = c.Condition(c.IMAGE_READY, None, c.PENDING, "waiting for a verified artifact")
            self._report_pipeline_error(body, c.Condition(c.ARTIFACT_READY, False, exc.reason, exc.message), waiting)
            raise
        artifact_ok = c.Condition(c.ARTIFACT_READY, True, c.VERIFIED, f"sha256 {artifact.sha256[:12]} verified")
        try:
            image, image_ok = self._image_for(spec, artifact)
        except PipelineError as exc:
            self._report_pipeline_error(body, artifact_ok, c.Condition(c.IMAGE_READY, False, exc.reason, exc.message))
            raise
        model = {"uri": artifact.uri, "sha256": artifact.sha256, "shortSha": artifact.sha256[:12], "source": key}
        if artifact.version_id:
            model["versionId"] = artifact.version_id
        if artifact.etag:
            model["etag"] = artifact.etag
        served = ServedVersion(image=image, sha256=artifact.sha256, model=model)
        self._served[_key(body)] = served
        self._outcome[_key(body)] = Outcome(decided=(artifact_ok, image_ok))
        if known is None or known.image != image:
            self.emit(body, "Normal", "ModelVersionReady", f"image {image} for model sha256 {artifact.sha256[:12]}")
        return served

    def apply_children(self, owner: Owner, spec: IrisModelSpec, served: ServedVersion) -> dict[str, Any]:
        """Apply what drifted, delete what must not exist; return the live children."""
        live_children: dict[str, Any] = {}
        for kind, desired in build_children(owner, spec, served.image, served.sha256).items():
            live = self.live(kind, owner.namespace, names.child_name(owner.name))
            if desired is None:
                if live is not None:
                    self.api.delete(kind, owner.namespace, names.child_name(owner.name))
                continue
            live_children[kind] = self.api.apply(desired) if needs_apply(desired, live) else live
        return live_children

    def publish_status(self, body: Mapping[str, Any], spec: IrisModelSpec, deployment: Mapping[str, Any] | None,
                       served: ServedVersion) -> None:
        owner = Owner.from_body(body)
        outcome = self.outcome(body)
        rollout, look_again = self.new_pods.explain(owner.namespace, owner.name,
                                                    c.observe_rollout(deployment, served.image), served.sha256)
        degraded_before = c.condition(self.current_status(body), c.DEGRADED)
        facts = c.StatusFacts(
            generation=int(body["metadata"].get("generation", 0)),
            selector=names.selector_string(owner.name),
            rollout=rollout,
            url=names.service_url(owner.name, owner.namespace, spec.service_port, self.settings.cluster_domain),
            image=served.image,
            model=served.model,
            decided=outcome.decided,
            blocking=outcome.blocking,
        )
        self._write_status(body, facts)
        if rollout.reason in REFUSAL_KINDS and outcome.blocking is None and (
                degraded_before.get("reason"), degraded_before.get("message")) != (rollout.reason, rollout.message):
            self.emit(body, "Warning", rollout.reason, rollout.message)  # the new pods refuse this model
        if look_again:
            self.requeue((owner.namespace, owner.name), body)

    # ---- state --------------------------------------------------------

    def current_status(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._published.get(_key(body)) or dict(body.get("status") or {})

    def served_version(self, body: Mapping[str, Any]) -> ServedVersion | None:
        return self._served.get(_key(body)) or ServedVersion.from_status(self.current_status(body))

    def outcome(self, body: Mapping[str, Any]) -> Outcome:
        return self._outcome.get(_key(body)) or Outcome.from_status(self.current_status(body))

    # ---- helpers ------------------------------------------------------

    def _image_for(self, spec: IrisModelSpec, artifact: VerifiedArtifact) -> tuple[str, c.Condition]:
        if spec.image:
            return spec.image, c.Condition(c.IMAGE_READY, True, c.USER_PROVIDED_IMAGE, "spec.image is served as given")
        repository = spec.repository or self.settings.default_repository
        result = self.pipeline.ensure_model_image(artifact, repository, self.settings)
        reason, how = (c.IMAGE_REUSED, "already in the registry") if result.reused else (c.IMAGE_BUILT, "pushed")
        return result.image, c.Condition(c.IMAGE_READY, True, reason, f"{result.tag} {how}")

    def _write_status(self, body: Mapping[str, Any], facts: c.StatusFacts) -> None:
        current = self.current_status(body)
        new = c.desired_status(current, facts)
        patch = c.status_patch(current, new)
        if not patch:
            return
        meta = body["metadata"]
        self.api.patch_status(meta["namespace"], meta["name"], patch)
        self._published[_key(body)] = new
        was_ready, now_ready = c.is_true(current, c.READY), c.is_true(new, c.READY)
        if was_ready != now_ready:
            cond = c.condition(new, c.READY)
            if now_ready:
                self.emit(body, "Normal", "Ready", cond.get("message", ""))
            else:
                self.emit(body, "Warning", cond.get("reason", "NotReady"), cond.get("message", ""))

    def _report_failure(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        """Publish a failure at once (it must not wait for a child event) and tell the user once."""
        assert outcome.blocking is not None
        degraded_before = c.condition(self.current_status(body), c.DEGRADED)
        self._outcome[_key(body)] = outcome
        served = self.served_version(body)
        meta = body["metadata"]
        facts = c.StatusFacts(
            generation=int(meta.get("generation", 0)),
            selector=names.selector_string(meta["name"]),
            rollout=c.observe_rollout(self.live("Deployment", meta["namespace"], names.child_name(meta["name"])),
                                      served.image if served else None),
            decided=outcome.decided,
            blocking=outcome.blocking,
        )
        self._write_status(body, facts)
        blocking = outcome.blocking
        if (degraded_before.get("reason"), degraded_before.get("message")) != (blocking.reason, blocking.message):
            self.emit(body, "Warning", blocking.reason, blocking.message)

    def _report_pipeline_error(self, body: Mapping[str, Any], first: c.Condition, second: c.Condition) -> None:
        failed = first if first.status is False else second
        self._report_failure(body, Outcome(decided=(first, second),
                                           blocking=c.Condition(c.DEGRADED, True, failed.reason, failed.message)))

    def _with_credentials(self, body: Mapping[str, Any], spec: IrisModelSpec) -> ModelSource:
        source = spec.source
        if not spec.credentials_secret:
            return source
        try:
            data = self.api.read_secret(body["metadata"]["namespace"], spec.credentials_secret)
        except kube.KubeError as exc:
            raise PipelineError("CredentialsUnavailable", f"Secret {spec.credentials_secret}: {exc}",
                                transient=exc.transient) from exc
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        creds = {k: v for k, v in data.items() if k in keys}
        if not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= creds.keys():
            raise PipelineError("CredentialsInvalid",
                                f"Secret {spec.credentials_secret} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return ModelSource(uri=source.uri, sha256=source.sha256, format=source.format, credentials=creds)


def _key(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return meta["namespace"], meta["name"], meta["uid"]


def source_key(spec: IrisModelSpec, settings: Settings) -> str:
    """Identifies everything the served image depends on; a change re-runs the pipeline."""
    doc = {
        "uri": spec.model_uri,
        "sha256": spec.model_sha256,
        "format": spec.model_format,
        "image": spec.image,
        "repository": spec.repository or settings.default_repository,
        "runtime": settings.runtime_image,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
