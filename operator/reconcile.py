"""The reconcile loop, as a short list of named steps.

    spec   = validate(body)                               # SpecError
    served = current_version(body, spec, record)          # the version already serving this source, or
    artifact = verify_artifact(body, spec)                # S3 artifact verified (never unpickled)
    served = new_version(body, spec, artifact, ...)       # the content-addressed image, by digest
    apply_children(owner, spec, served)                   # server-side apply, only what drifted
    publish_status(body, ...)                             # written only when it changes

Steps return or raise; ``reconcile`` alone decides what a failure means:
it publishes a failed step's outcome at once (no child event may come to
carry it) and hands the error on to kopf, and on success it defers the status
to the settle queue. ``resync_children`` runs the last two steps when a child
changes (drift, rollout progress), with the version already decided, so a
child event never touches S3 or a registry.

What the process knows about each IrisModel is one ``ObjectRecord``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from irisop_serving.contract import REFUSAL_KINDS

from . import conditions as c
from . import metrics, names
from .builders import Owner, build_children
from .drift import needs_apply
from .kube import KubeError, KubeIO
from .newpods import NewPodsInspector
from .pipeline import ImageResult, ModelSource, PipelineError, VerifiedArtifact, static_credentials
from .progress import ANNOUNCE_AFTER, Attempt, Attempts, SlowSteps
from .settings import Settings
from .singleflight import SingleFlight
from .spec import IrisModelSpec, SpecError, parse_spec

log = logging.getLogger(__name__)

# (namespace, name, uid): an IrisModel deleted and re-created under the same
# name is a new object, and must not inherit the old one's remembered status.
Key = tuple[str, str, str]
# Schedules work for an IrisModel: (namespace, name), body.
Schedule = Callable[[tuple[str, str], Mapping[str, Any]], None]
# Ready=False for these reasons is a rollout making progress: users are told
# with a Normal Event (many teams alert on Warning Events; a healthy rollout
# must post none). Any other reason is a problem worth a Warning.
PROGRESS_REASONS = frozenset({c.ROLLOUT_IN_PROGRESS, c.PODS_NOT_READY, c.DEPLOYMENT_MISSING, c.SCALED_TO_ZERO})


class Pipeline:
    """The artifact and image steps, injectable so unit tests need no S3."""

    def __init__(self) -> None:
        # IrisModels naming one artifact at the same moment share its S3 reads (singleflight.py).
        self._fetches: SingleFlight[VerifiedArtifact] = SingleFlight(on_join=metrics.ARTIFACT_READS_JOINED.inc)

    def fetch_artifact(self, source: ModelSource, settings: Settings) -> VerifiedArtifact:
        from .artifact import fetch_artifact

        return self._fetches.run(source.flight_key, lambda: fetch_artifact(source, settings))

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


@dataclass
class ObjectRecord:
    """What this process knows about one IrisModel, fresher than the watch cache right after a write."""

    # One reconcile per IrisModel at a time: child events and spec changes
    # arrive on different threads and must not publish stale status.
    lock: threading.Lock = field(default_factory=threading.Lock)
    published: dict[str, Any] | None = None  # the status we last wrote
    served: ServedVersion | None = None  # the version the last pipeline run produced
    outcome: Outcome | None = None  # what the last pipeline run decided
    attempts: Attempts = field(default_factory=Attempts)  # tries of the artifact and image steps


def failure_outcome(exc: SpecError | PipelineError, verified: c.Condition | None,
                    retrying: str | None = None) -> Outcome:
    """The conditions a failed step leaves, and the problem that blocks the newest spec.

    ``retrying`` (a transient failure, see ``PipelineStep``) makes the failed
    step's condition Unknown with that message: the step is not over yet.
    """
    if isinstance(exc, SpecError):
        return Outcome(blocking=c.Condition(c.DEGRADED, True, c.SPEC_INVALID, str(exc)))
    failed = (None, retrying) if retrying is not None else (False, exc.message)
    if verified is None:  # the artifact step failed
        first = c.Condition(c.ARTIFACT_READY, failed[0], exc.reason, failed[1])
        second = WAITING_FOR_ARTIFACT
    else:  # the image step failed
        first, second = verified, c.Condition(c.IMAGE_READY, failed[0], exc.reason, failed[1])
    return Outcome(decided=(first, second), blocking=c.Condition(c.DEGRADED, True, exc.reason, exc.message))


WAITING_FOR_ARTIFACT = c.Condition(c.IMAGE_READY, None, c.PENDING, "waiting for a verified artifact")


@dataclass
class PipelineStep:
    """One try of the artifact or image step, as status describes it while it runs (issue 13.3)."""

    type: str  # the condition it decides: ArtifactReady or ImageReady
    doing: str  # "reading s3://…", "pushing the model image to …"
    attempt: Attempt
    retrying: str | None = None  # set when this try failed transiently

    def running(self, reason: str) -> c.Condition:
        return c.Condition(self.type, None, reason, self.attempt.describe(self.doing))


def artifact_verified(artifact: VerifiedArtifact) -> c.Condition:
    return c.Condition(c.ARTIFACT_READY, True, c.VERIFIED, f"sha256 {artifact.sha256[:12]} verified")


class Reconciler:
    def __init__(self, settings: Settings, kube: KubeIO, pipeline: Pipeline | None = None,
                 defer: Schedule | None = None, requeue: Schedule | None = None):
        self.settings = settings
        self.kube = kube
        self.pipeline = pipeline or Pipeline()
        # How status publication after a change is scheduled. The operator
        # passes a Debouncer so the burst of Deployment events that follows an
        # apply costs one status write; the default publishes at once.
        self.defer = defer or (lambda key, body: self.resync_children(body))
        # How a resync asks to run again soon: while a rollout is unfinished its
        # new pods are re-read (NewPodsInspector). The default never re-runs.
        self.requeue = requeue or (lambda key, body: None)
        self.new_pods = NewPodsInspector(kube)
        self._records: dict[Key, ObjectRecord] = {}
        # Seconds a pipeline step may run before status says it is running (issue 13.3).
        self.announce_after = ANNOUNCE_AFTER
        self.slow_steps = SlowSteps()

    # ---- entry points -------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> None:
        """Full reconcile after a change of the IrisModel (or operator start)."""
        owner = Owner.from_body(body)
        record = self.record(body)
        with record.lock:
            verified: c.Condition | None = None  # ArtifactReady=True, once the artifact passed
            step: PipelineStep | None = None  # the step running, for status while it is slow or retried
            try:
                spec = self.validate(body)
                served = self.current_version(body, spec, record)
                if served is None:
                    with self.pipeline_step(body, record, spec, c.ARTIFACT_READY, f"reading {spec.model_uri}") as step:
                        artifact = self.verify_artifact(body, spec)
                    verified = artifact_verified(artifact)
                    pushing = f"pushing the model image to {spec.repository or self.settings.default_repository}"
                    with self.pipeline_step(body, record, spec, c.IMAGE_READY, pushing, verified) as step:
                        served = self.new_version(body, spec, artifact, verified, record)
            except (SpecError, PipelineError) as exc:
                # At once: a failure must not wait for a child event that may never come.
                self.publish_failure(body, record, failure_outcome(exc, verified, step.retrying if step else None))
                raise
            self.apply_children(owner, spec, served)
        self.defer((owner.namespace, owner.name), body)

    def resync_children(self, body: Mapping[str, Any]) -> None:
        """A child changed (or a change was just applied): restore drift and refresh status."""
        owner = Owner.from_body(body)
        record = self.record(body)
        with record.lock:
            try:
                spec = parse_spec(body.get("spec") or {})
            except SpecError:
                return  # the full reconcile reports it
            served = self.served_version(body, record)
            if served is None:
                return  # the pipeline has not produced an image yet
            live = self.apply_children(owner, spec, served)
            self.publish_status(body, record, spec, live.get("Deployment"), served)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is remembered about every incarnation of namespace/name."""
        self.new_pods.forget(namespace, name)
        # list(): a snapshot, as other threads add keys meanwhile.
        for key in [k for k in list(self._records) if k[:2] == (namespace, name)]:
            self._records.pop(key, None)

    def record(self, body: Mapping[str, Any]) -> ObjectRecord:
        # setdefault is one atomic step: a defaultdict's __missing__ is not, and
        # two threads racing on a new key could each get their own record.
        return self._records.setdefault(_key(body), ObjectRecord())

    # ---- steps --------------------------------------------------------

    def validate(self, body: Mapping[str, Any]) -> IrisModelSpec:
        spec = parse_spec(body.get("spec") or {})
        if not spec.image and not (spec.repository or self.settings.default_repository):
            raise SpecError("spec.repository: no image repository (set spec.repository or IRISOP_DEFAULT_REPOSITORY)")
        return spec

    def current_version(self, body: Mapping[str, Any], spec: IrisModelSpec, record: ObjectRecord) -> ServedVersion | None:
        """The served version, if it was built from this very source and nothing blocks it."""
        known = self.served_version(body, record)
        if known is None or known.model.get("source") != source_key(spec, self.settings):
            return None
        if self.outcome(body, record).blocking is not None:
            return None  # a recorded failure: run the pipeline again
        record.outcome = Outcome()
        return known

    @contextmanager
    def pipeline_step(self, body: Mapping[str, Any], record: ObjectRecord, spec: IrisModelSpec, type_: str,
                      doing: str, verified: c.Condition | None = None) -> Iterator[PipelineStep]:
        """Number this try; say in status that it runs if it is slow; on a transient failure, that it is retried."""
        source = source_key(spec, self.settings)
        step = PipelineStep(type_, doing, record.attempts.start(type_, source))
        # What the conditions say while the step runs.
        if type_ == c.ARTIFACT_READY:
            running = (step.running(c.READING), WAITING_FOR_ARTIFACT)
        else:
            assert verified is not None
            running = (verified, step.running(c.PUSHING))

        def announce() -> None:
            blocking = self.outcome(body, record).blocking  # a previous try's failure still stands
            self._write_status(body, record, self.status_facts(body, Outcome(running, blocking),
                                                                self._live_rollout(body, record)))

        try:
            with self.slow_steps.announce_if_slow(self.announce_after, announce):
                yield step
        except PipelineError as exc:
            if not exc.transient:
                record.attempts.finished(type_)
                raise
            failed = record.attempts.failed(type_, source, exc.message)
            step.retrying = f"{doing} failed (attempt {failed.number}: {exc.message}); retrying"
            raise
        record.attempts.finished(type_)

    def verify_artifact(self, body: Mapping[str, Any], spec: IrisModelSpec) -> VerifiedArtifact:
        return self.pipeline.fetch_artifact(self._with_credentials(body, spec), self.settings)

    def new_version(self, body: Mapping[str, Any], spec: IrisModelSpec, artifact: VerifiedArtifact,
                    verified: c.Condition, record: ObjectRecord) -> ServedVersion:
        """The image for a verified artifact; remembered, and announced when it changes what is served."""
        known = self.served_version(body, record)
        image, image_ok = self._image_for(spec, artifact)
        model = {"uri": artifact.uri, "sha256": artifact.sha256, "shortSha": artifact.sha256[:12],
                 "source": source_key(spec, self.settings)}
        if artifact.version_id:
            model["versionId"] = artifact.version_id
        if artifact.etag:
            model["etag"] = artifact.etag
        served = ServedVersion(image=image, sha256=artifact.sha256, model=model)
        record.served, record.outcome = served, Outcome(decided=(verified, image_ok))
        if known is None or known.image != image:
            self.announce(body, "Normal", "ModelVersionReady", f"image {image} for model sha256 {artifact.sha256[:12]}")
        return served

    def apply_children(self, owner: Owner, spec: IrisModelSpec, served: ServedVersion) -> dict[str, Any]:
        """Apply what drifted, delete what must not exist; return the live children."""
        live_children: dict[str, Any] = {}
        for kind, desired in build_children(owner, spec, served.image, served.sha256, served.model.get("uri")).items():
            live = self.kube.live(kind, owner.namespace, names.child_name(owner.name))
            if desired is None:
                if live is not None:
                    self.kube.delete(kind, owner.namespace, names.child_name(owner.name))
                continue
            live_children[kind] = self.kube.apply(desired) if needs_apply(desired, live) else live
        return live_children

    def publish_status(self, body: Mapping[str, Any], record: ObjectRecord, spec: IrisModelSpec,
                       deployment: Mapping[str, Any] | None, served: ServedVersion) -> None:
        owner = Owner.from_body(body)
        outcome = self.outcome(body, record)
        rollout, look_again = self.new_pods.explain(owner.namespace, owner.name,
                                                    self._observe(body, record, deployment, served.image), served.sha256,
                                                    revision=(deployment or {}).get("metadata", {}).get("generation"))
        degraded_before = c.condition(self.current_status(body, record), c.DEGRADED)
        self._write_status(body, record, self.status_facts(body, outcome, rollout, spec, served))
        if rollout.reason in REFUSAL_KINDS and outcome.blocking is None and (
                degraded_before.get("reason"), degraded_before.get("message")) != (rollout.reason, rollout.message):
            self.announce(body, "Warning", rollout.reason, rollout.message)  # the new pods refuse this model
        if look_again:
            self.requeue((owner.namespace, owner.name), body)

    def publish_failure(self, body: Mapping[str, Any], record: ObjectRecord, outcome: Outcome) -> None:
        """Publish a failed step's outcome, and tell the user once."""
        assert outcome.blocking is not None
        degraded_before = c.condition(self.current_status(body, record), c.DEGRADED)
        record.outcome = outcome
        self._write_status(body, record, self.status_facts(body, outcome, self._live_rollout(body, record)))
        blocking = outcome.blocking
        if (degraded_before.get("reason"), degraded_before.get("message")) != (blocking.reason, blocking.message):
            self.announce(body, "Warning", blocking.reason, blocking.message)

    # ---- state --------------------------------------------------------

    def current_status(self, body: Mapping[str, Any], record: ObjectRecord) -> dict[str, Any]:
        return record.published or dict(body.get("status") or {})

    def served_version(self, body: Mapping[str, Any], record: ObjectRecord) -> ServedVersion | None:
        return record.served or ServedVersion.from_status(self.current_status(body, record))

    def outcome(self, body: Mapping[str, Any], record: ObjectRecord) -> Outcome:
        return record.outcome or Outcome.from_status(self.current_status(body, record))

    def _live_rollout(self, body: Mapping[str, Any], record: ObjectRecord) -> c.Rollout:
        """The Deployment's rollout of the version being served (while a new one is not ready)."""
        served = self.served_version(body, record)
        meta = body["metadata"]
        deployment = self.kube.live("Deployment", meta["namespace"], names.child_name(meta["name"]))
        return self._observe(body, record, deployment, served.image if served else None)

    def _observe(self, body: Mapping[str, Any], record: ObjectRecord, deployment: Mapping[str, Any] | None,
                 image: str | None) -> c.Rollout:
        current = self.current_status(body, record)
        was_ready = c.is_true(current, c.READY) and current.get("image") == image
        return c.observe_rollout(deployment, image, was_ready=was_ready)

    def status_facts(self, body: Mapping[str, Any], outcome: Outcome, rollout: c.Rollout,
                     spec: IrisModelSpec | None = None, served: ServedVersion | None = None) -> c.StatusFacts:
        """Everything status is computed from; without spec and served (a failed step) url, image and model stay."""
        meta = body["metadata"]
        return c.StatusFacts(
            generation=int(meta.get("generation", 0)),
            selector=names.selector_string(meta["name"]),
            rollout=rollout,
            url=names.service_url(meta["name"], meta["namespace"], spec.service_port, self.settings.cluster_domain)
            if spec is not None else None,
            image=served.image if served is not None else None,
            model=served.model if served is not None else None,
            decided=outcome.decided,
            blocking=outcome.blocking,
        )

    # ---- helpers ------------------------------------------------------

    def announce(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A decision users must see: one log line and one Event."""
        meta = body["metadata"]
        log.log(logging.WARNING if type_ == "Warning" else logging.INFO, "[%s/%s] %s: %s",
                meta["namespace"], meta["name"], reason, message)
        self.kube.post_event(body, type_, reason, message)

    def _image_for(self, spec: IrisModelSpec, artifact: VerifiedArtifact) -> tuple[str, c.Condition]:
        if spec.image:
            return spec.image, c.Condition(c.IMAGE_READY, True, c.USER_PROVIDED_IMAGE, "spec.image is served as given")
        repository = spec.repository or self.settings.default_repository
        result = self.pipeline.ensure_model_image(artifact, repository, self.settings)
        reason, how = (c.IMAGE_REUSED, "already in the registry") if result.reused else (c.IMAGE_BUILT, "pushed")
        return result.image, c.Condition(c.IMAGE_READY, True, reason, f"{result.tag} {how}")

    def _write_status(self, body: Mapping[str, Any], record: ObjectRecord, facts: c.StatusFacts) -> None:
        current = self.current_status(body, record)
        new = c.desired_status(current, facts)
        patch = c.status_patch(current, new)
        if not patch:
            return
        meta = body["metadata"]
        self.kube.patch_status(meta["namespace"], meta["name"], patch)
        record.published = new
        was_ready, now_ready = c.is_true(current, c.READY), c.is_true(new, c.READY)
        if was_ready != now_ready:
            cond = c.condition(new, c.READY)
            if now_ready:
                self.announce(body, "Normal", "Ready", cond.get("message", ""))
            else:
                reason = cond.get("reason", "NotReady")
                self.announce(body, "Normal" if reason in PROGRESS_REASONS else "Warning", reason,
                              cond.get("message", ""))

    def _with_credentials(self, body: Mapping[str, Any], spec: IrisModelSpec) -> ModelSource:
        source = spec.source
        if not spec.credentials_secret:
            return source
        try:
            data = self.kube.read_secret(body["metadata"]["namespace"], spec.credentials_secret)
        except KubeError as exc:
            raise PipelineError(c.CREDENTIALS_UNAVAILABLE, f"Secret {spec.credentials_secret}: {exc}",
                                transient=exc.transient) from exc
        creds = static_credentials(data, f"Secret {spec.credentials_secret}")
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
