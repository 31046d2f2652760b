"""The reconcile steps with a recording fake of the Kubernetes API and the pipeline.

The integration tests run the same code against a real API server; these pin
down the decision logic (what is written, when, and what is left alone).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from irisop_operator import conditions as c
from irisop_operator.pipeline import ArtifactError, ImageResult, VerifiedArtifact
from irisop_operator.reconcile import Reconciler
from irisop_operator.settings import Settings
from irisop_operator.spec import SpecError
from irisop_serving.contract import parse_metadata

SHA1, SHA2 = "1" * 64, "2" * 64


def metadata(sha):
    return parse_metadata({"sha256": sha, "format": "joblib", "model_file": "model.joblib",
                           "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                           "class_names": ["setosa", "versicolor", "virginica"], "versions": {"scikit-learn": "1.9.1"}})


class FakeAPI:
    """kube.KubeIO in memory: records writes; stores applied objects like a server would (minus defaults)."""

    def __init__(self, emit=None):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.writes: list[tuple] = []
        self.status: dict = {}
        self.emit = emit or (lambda body, type_, reason, message: None)
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}

    def apply(self, manifest):
        key = (manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.writes.append(("apply", key))
        self.objects[key] = copy.deepcopy(manifest)
        return self.objects[key]

    def delete(self, kind, namespace, name):
        self.writes.append(("delete", (kind, namespace, name)))
        return self.objects.pop((kind, namespace, name), None) is not None

    def patch_status(self, namespace, name, status):
        self.writes.append(("status", tuple(sorted(status))))
        self.status.update(copy.deepcopy(status))

    def live(self, kind, namespace, name):
        return self.objects.get((kind, namespace, name))

    def post_event(self, body, type_, reason, message):
        self.emit(body, type_, reason, message)

    # Pods are read while a rollout is unfinished; tests that care replace these.
    def list_pods(self, namespace, selector):
        return []

    def pod_log_tail(self, namespace, pod, container, lines=200):
        return ""

    def read_secret(self, namespace, name):
        from irisop_operator.kube import KubeError

        if (namespace, name) not in self.secrets:
            raise KubeError(f"Secret {namespace}/{name}: 404 Not Found", 404)
        return self.secrets[(namespace, name)]


class FakePipeline:
    def __init__(self, sha=SHA1, fail=None):
        self.sha, self.fail, self.calls = sha, fail, 0

    def fetch_artifact(self, source, settings):
        self.calls += 1
        if self.fail:
            raise self.fail
        return VerifiedArtifact(uri=source.uri, sha256=self.sha, metadata=metadata(self.sha), local_dir=Path("/nonexistent"))

    def ensure_model_image(self, artifact, repository, settings):
        return ImageResult(image=f"{repository}@sha256:{artifact.sha256}", tag="m-x", digest="sha256:" + artifact.sha256,
                           reused=False)


def body(generation=1, **spec):
    return {"metadata": {"name": "iris", "namespace": "ml", "uid": "u1", "generation": generation},
            "spec": {"model": {"uri": "s3://b/iris/v1/"}, **spec}, "status": {}}


@pytest.fixture
def world():
    events = []
    api = FakeAPI(emit=lambda b, t, r, m: events.append((t, r)))
    rec = Reconciler(Settings(default_repository="reg.local/iris"), api, pipeline=FakePipeline())
    return rec, api, events


def test_first_reconcile_applies_children_and_publishes_status(world):
    rec, api, events = world
    rec.reconcile(body())
    kinds = sorted(k[0] for op, k in api.writes if op == "apply")
    assert kinds == ["Deployment", "Service"]
    assert api.status["image"] == f"reg.local/iris@sha256:{SHA1}"
    assert c.is_true(api.status, c.ARTIFACT_READY) and c.is_true(api.status, c.IMAGE_READY)
    assert not c.is_true(api.status, c.READY)  # no pods are serving yet
    assert ("Normal", "ModelVersionReady") in events


def test_noop_resync_makes_zero_writes(world):
    rec, api, _ = world
    rec.reconcile(body())
    before = len(api.writes)
    calls = rec.pipeline.calls
    rec.reconcile(body())
    rec.resync_children(body())
    assert len(api.writes) == before
    assert rec.pipeline.calls == calls  # the artifact is not fetched again for the same source


def test_deleted_child_is_restored_by_resync(world):
    rec, api, _ = world
    rec.reconcile(body())
    api.objects.pop(("Service", "ml", "iris"))
    rec.resync_children(body())
    assert ("Service", "ml", "iris") in api.objects


def test_bad_artifact_never_replaces_the_serving_version(world):
    rec, api, events = world
    rec.reconcile(body())
    image_before = api.objects[("Deployment", "ml", "iris")]["spec"]["template"]["spec"]["containers"][0]["image"]
    rec.pipeline.fail = ArtifactError("ChecksumMismatch", "sha256 of model.joblib is not the pinned one")
    with pytest.raises(ArtifactError):
        rec.reconcile(body(generation=2, model={"uri": "s3://b/iris/v2/"}))
    dep = api.objects[("Deployment", "ml", "iris")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image_before
    assert c.condition(api.status, c.ARTIFACT_READY)["reason"] == "ChecksumMismatch"
    assert c.condition(api.status, c.DEGRADED)["status"] == "True"
    assert ("Warning", "ChecksumMismatch") in events
    # a child event afterwards keeps the problem visible and the old image
    rec.resync_children(body(generation=2, model={"uri": "s3://b/iris/v2/"}))
    assert c.condition(api.status, c.DEGRADED)["reason"] == "ChecksumMismatch"


def test_invalid_spec_is_reported_not_retried(world):
    rec, api, events = world
    with pytest.raises(SpecError):
        rec.reconcile(body(service={"type": "ExternalName"}))
    assert c.condition(api.status, c.DEGRADED)["reason"] == c.SPEC_INVALID
    assert ("Warning", c.SPEC_INVALID) in events
    assert not [w for w in api.writes if w[0] == "apply"]


def test_turning_autoscaling_off_deletes_the_hpa(world):
    rec, api, _ = world
    rec.reconcile(body(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 4}))
    assert ("HorizontalPodAutoscaler", "ml", "iris") in api.objects
    assert ("PodDisruptionBudget", "ml", "iris") in api.objects
    rec.reconcile(body(generation=2, replicas=1))
    assert ("HorizontalPodAutoscaler", "ml", "iris") not in api.objects
    assert ("PodDisruptionBudget", "ml", "iris") not in api.objects


def test_user_image_skips_the_build(world):
    rec, api, _ = world
    rec.reconcile(body(image="example.org/iris@sha256:" + "c" * 64))
    assert api.status["image"] == "example.org/iris@sha256:" + "c" * 64
    assert c.condition(api.status, c.IMAGE_READY)["reason"] == c.USER_PROVIDED_IMAGE


def test_a_recreated_object_does_not_inherit_remembered_status(world):
    rec, api, _ = world
    rec.reconcile(body())
    api.status.clear()  # the object is deleted (its status with it) and created again
    again = body()
    again["metadata"]["uid"] = "u2"
    rec.reconcile(again)
    assert {"image", "model", "url", "observedGeneration", "conditions"} <= set(api.status)


def _stall(api, pods, log=""):
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                     "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                     "message": 'ReplicaSet "iris-abc" has timed out progressing.'}]}
    api.list_pods = lambda namespace, selector: pods
    api.pod_log_tail = lambda namespace, pod, container: log


def test_stalled_rollout_reports_the_serving_containers_own_reason(world):
    rec, api, _ = world
    rec.reconcile(body())
    unready = {"metadata": {"name": "iris-new", "annotations": {"ml.irisop.dev/model-sha256": SHA1}},
               "status": {"containerStatuses": [{"name": "predictor", "ready": False, "state": {"running": {}}}]}}
    _stall(api, [unready], log="ERROR model not ready: cannot load model.joblib: UnpicklingError: invalid load key")
    rec.resync_children(body())
    degraded = c.condition(api.status, c.DEGRADED)
    assert degraded["status"] == "True" and degraded["reason"] == c.ROLLOUT_STALLED
    assert degraded["message"].startswith("pod iris-new: model not ready: cannot load model.joblib")
    assert "timed out progressing" in degraded["message"]


def test_stall_explanation_failing_never_blocks_the_status(world):
    from irisop_operator.kube import KubeError

    rec, api, _ = world
    rec.reconcile(body())
    _stall(api, [])

    def forbidden(namespace, selector):
        raise KubeError("GET pods: 403 Forbidden", 403)

    api.list_pods = forbidden
    rec.resync_children(body())
    degraded = c.condition(api.status, c.DEGRADED)
    assert degraded["reason"] == c.ROLLOUT_STALLED and degraded["message"].startswith("rollout made no progress")


def _rolled_out(api, generation=1, ready=1):
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["metadata"]["generation"] = generation
    dep["status"] = {"observedGeneration": generation, "replicas": ready, "readyReplicas": ready,
                     "updatedReplicas": ready, "availableReplicas": ready}


def test_a_routine_rollout_posts_no_warning_event(world):
    rec, api, events = world
    rec.reconcile(body())
    _rolled_out(api)
    rec.resync_children(body())
    assert c.is_true(api.status, c.READY) and ("Normal", "Ready") in events
    events.clear()
    # A new version: the Deployment controller has not seen it yet, then old pods terminate.
    rec.pipeline.sha = SHA2
    rec.reconcile(body(generation=2, model={"uri": "s3://b/iris/v2/"}))
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["metadata"]["generation"] = 2
    rec.resync_children(body(generation=2, model={"uri": "s3://b/iris/v2/"}))
    assert c.condition(api.status, c.READY)["reason"] == c.ROLLOUT_IN_PROGRESS
    _rolled_out(api, generation=2)
    rec.resync_children(body(generation=2, model={"uri": "s3://b/iris/v2/"}))
    assert c.is_true(api.status, c.READY)
    assert [t for t, _ in events if t == "Warning"] == [], events
    assert ("Normal", c.ROLLOUT_IN_PROGRESS) in events and ("Normal", "Ready") in events


def test_a_failed_step_is_published_by_reconcile_and_raised_for_kopf(world):
    from irisop_operator.pipeline import ImageError

    rec, api, events = world

    class NoRegistry(type(rec.pipeline)):
        def ensure_model_image(self, artifact, repository, settings):
            raise ImageError("RegistryUnreachable", "connection refused", transient=True)

    rec.pipeline = NoRegistry()
    with pytest.raises(ImageError):
        rec.reconcile(body())
    # The artifact passed, the image did not: both are in status at once, no child event needed.
    assert c.condition(api.status, c.ARTIFACT_READY)["status"] == "True"
    image = c.condition(api.status, c.IMAGE_READY)
    # Transient: Unknown while kopf retries it (issue 13.3), with the attempt and its error.
    assert (image["status"], image["reason"]) == ("Unknown", "RegistryUnreachable")
    assert image["message"] == ("pushing the model image to reg.local/iris failed (attempt 1: connection refused); "
                                "retrying")
    assert c.condition(api.status, c.DEGRADED)["reason"] == "RegistryUnreachable"
    assert events == [("Warning", "RegistryUnreachable")]
    assert not [w for w in api.writes if w[0] == "apply"]


def test_a_rejected_uri_never_reaches_the_deployment(world):
    """A child event after a rejected artifact re-applies the served version, under its own URI (no rollout)."""
    rec, api, _ = world
    rec.reconcile(body())
    dep = api.objects[("Deployment", "ml", "iris")]
    template = copy.deepcopy(dep["spec"]["template"])
    rec.pipeline.fail = ArtifactError("ChecksumMismatch", "hashes differ")
    newer = body(generation=2)
    newer["spec"]["model"]["uri"] = "s3://b/iris/bad/"
    with pytest.raises(ArtifactError):
        rec.reconcile(newer)
    rec.resync_children(newer)
    dep = api.objects[("Deployment", "ml", "iris")]
    assert dep["spec"]["template"] == template
    assert dep["metadata"]["annotations"]["ml.irisop.dev/model-uri"] == "s3://b/iris/v1/"
