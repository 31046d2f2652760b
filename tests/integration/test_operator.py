"""The operator against a real kube-apiserver + controller-manager (issue 3).

The operator runs as a real process; S3 is moto_server over HTTP. The
IrisModels here name a ready image (spec.image), so no registry is needed;
the control plane has no kubelet, so the test plays the kubelet's part for
readiness (binding pods and reporting them Ready through pods/status).
"""
from __future__ import annotations

import re
from typing import Iterator

import pytest
import requests

from irisop_deploy.local.process import free_port
from irisop_operator import names
from tests.fixtures.aws import ensure_bucket, fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import kubectl, operator_process, running

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
BUCKET = "iris-operator-tests"


@pytest.fixture
def artifact_uri(s3, tmp_path, namespace):
    ensure_bucket(s3, BUCKET)
    meta = fake_artifact(tmp_path / "a", seed=namespace.encode())
    return upload_dir(s3, tmp_path / "a", BUCKET, f"{namespace}/v1"), meta["sha256"]


class Metrics:
    """The operator's own counters: the positive signal a negative check waits for."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def value(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in requests.get(self.url, timeout=5).text.splitlines():
            if not line.startswith(name + "{"):
                continue
            have = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def moved(self, before: float, name: str, **labels: str) -> bool:
        return self.value(name, **labels) > before


@pytest.fixture(scope="module")
def running_operator(crd, operator_env, tmp_path_factory) -> Iterator[Metrics]:
    """The operator watching the whole cluster, with its metrics endpoint, for this module."""
    port = free_port()
    with running(operator_process("operator", operator_env, tmp_path_factory.mktemp("operator"), metrics_port=port)):
        yield Metrics(port)


def model_spec(uri: str, **extra) -> dict:
    return {"model": {"uri": uri}, "image": IMAGE, **extra}


def selector(name: str) -> str:
    return names.selector_string(name)


def test_apply_creates_children_and_ready_follows_the_pods(only_fake_node, running_operator, namespace,
                                                           artifact_uri):
    crd = only_fake_node
    uri, sha = artifact_uri
    crd.create_model(namespace, "iris", model_spec(uri))
    crd.wait_condition(namespace, "iris", "ArtifactReady", "True")
    dep = wait_for(lambda: crd.deployment(namespace, "iris"), what="Deployment")
    svc = wait_for(lambda: crd.service(namespace, "iris"), what="Service")
    assert dep.metadata.owner_references[0].kind == "IrisModel"
    assert svc.spec.selector == names.selector_labels("iris")
    assert dep.spec.template.spec.containers[0].image == IMAGE
    assert dep.metadata.annotations[names.ANNOTATION_MODEL_SHA] == sha

    # Objects sent is not Ready: no pod serves yet.
    not_ready = crd.wait_condition(namespace, "iris", "Ready", "False")
    assert not_ready["reason"] in ("PodsNotReady", "RolloutInProgress")

    wait_for(lambda: crd.make_pods_ready(namespace, selector("iris")) >= 1, what="a pod to exist")
    ready = crd.wait_condition(namespace, "iris", "Ready", "True")
    assert ready["reason"] == "Serving"
    status = crd.get_model(namespace, "iris")["status"]
    assert status["observedGeneration"] == 1
    assert status["image"] == IMAGE
    assert status["model"]["sha256"] == sha
    assert status["url"] == f"http://iris.{namespace}.svc.cluster.local"
    assert status["replicaSummary"] == "1/1"
    assert {c["type"] for c in status["conditions"]} == {"ArtifactReady", "ImageReady", "Ready", "Degraded"}
    for cond in status["conditions"]:
        assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    wait_for(lambda: crd.events(namespace, "Ready"), timeout=10, what="a Ready event telling users the model serves")


def test_drift_is_restored_and_noop_resync_writes_nothing(crd, running_operator, namespace, artifact_uri, kube_cluster):
    uri, _ = artifact_uri
    crd.create_model(namespace, "iris", model_spec(uri))
    wait_for(lambda: crd.deployment(namespace, "iris") and crd.service(namespace, "iris"), what="children")

    # a deleted child comes back
    crd.core.delete_namespaced_service("iris", namespace)
    wait_for(lambda: (s := crd.service(namespace, "iris")) and not s.metadata.deletion_timestamp, timeout=15,
             what="Service restored")
    # a hand edit is undone
    crd.apps.patch_namespaced_deployment("iris", namespace, {"spec": {"replicas": 4}})
    wait_for(lambda: crd.deployment(namespace, "iris").spec.replicas == 1, timeout=15, what="replicas restored")

    # A change of the Deployment the operator reads (its status) runs a resync
    # (the settle counter moves) that finds nothing to write.
    crd.wait_condition(namespace, "iris", "ImageReady", "True")
    # Settled: status follows the Deployment controller's view of the restored
    # Deployment (no kubelet here, so its one pod stays unready).
    crd.wait_condition(namespace, "iris", "Ready", "False", reason="PodsNotReady", timeout=30)
    wait_for(lambda: crd.get_model(namespace, "iris")["status"].get("replicas") == 1, what="status.replicas 1")
    metrics = running_operator

    def versions():
        return (crd.get_model(namespace, "iris")["metadata"]["resourceVersion"],
                crd.service(namespace, "iris").metadata.resource_version)

    wait_for(lambda: metrics.value("irisop_settle_pending") == 0, what="settle queue empty")
    settled = metrics.value("irisop_reconciles_total", trigger="settle")
    before, status_before = versions(), crd.get_model(namespace, "iris")["status"]
    conditions = [c.to_dict() for c in crd.deployment(namespace, "iris").status.conditions or []]
    noise = {"type": "IrisopTestNoise", "status": "True", "reason": "Test", "message": "changes no outcome"}
    crd.apps.patch_namespaced_deployment_status("iris", namespace, {"status": {"conditions": [
        {k: v for k, v in c.items() if v is not None} for c in conditions] + [noise]}})
    wait_for(lambda: metrics.moved(settled, "irisop_reconciles_total", trigger="settle"), timeout=15,
             what="the settle resync of the status change")
    wait_for(lambda: metrics.value("irisop_settle_pending") == 0, what="settle queue empty")
    after = crd.get_model(namespace, "iris")
    changed = {k: (status_before.get(k), v) for k, v in after["status"].items() if status_before.get(k) != v}
    assert versions() == before, changed

    # A change the operator does not read (someone else's label) runs no resync at all.
    ignored = metrics.value("irisop_child_events_total", kind="Deployment", action="ignored")
    settles = metrics.value("irisop_reconciles_total", trigger="settle")
    crd.apps.patch_namespaced_deployment("iris", namespace, {"metadata": {"labels": {"someone-else": "x"}}})
    wait_for(lambda: metrics.moved(ignored, "irisop_child_events_total", kind="Deployment", action="ignored"),
             timeout=15, what="the label event to be seen and ignored")
    assert metrics.value("irisop_reconciles_total", trigger="settle") == settles
    assert versions() == before
    assert crd.deployment(namespace, "iris").metadata.labels["someone-else"] == "x"  # not ours: left alone


def test_scale_subresource_and_autoscaling(crd, running_operator, namespace, artifact_uri, kube_cluster):
    uri, _ = artifact_uri
    crd.create_model(namespace, "iris", model_spec(uri))
    wait_for(lambda: crd.deployment(namespace, "iris"), what="Deployment")
    out = kubectl(kube_cluster, "-n", namespace, "scale", "irismodel/iris", "--replicas=3")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: crd.deployment(namespace, "iris").spec.replicas == 3, timeout=15, what="scaled to 3")
    wait_for(lambda: crd.get_model(namespace, "iris").get("status", {}).get("selector") == selector("iris"),
             what="status.selector for the scale subresource")
    pdb = wait_for(lambda: kubectl(kube_cluster, "-n", namespace, "get", "pdb", "iris").returncode == 0,
                   timeout=15, what="a PDB for 3 replicas")
    assert pdb

    crd.patch_model(namespace, "iris", {"spec": {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}}})
    wait_for(lambda: kubectl(kube_cluster, "-n", namespace, "get", "hpa", "iris").returncode == 0,
             timeout=15, what="HPA")
    crd.patch_model(namespace, "iris", {"spec": {"autoscaling": {"enabled": False}, "replicas": 1}})
    wait_for(lambda: kubectl(kube_cluster, "-n", namespace, "get", "hpa", "iris").returncode != 0,
             timeout=15, what="HPA removed")
    wait_for(lambda: kubectl(kube_cluster, "-n", namespace, "get", "pdb", "iris").returncode != 0,
             timeout=15, what="PDB removed at 1 replica")


def test_invalid_spec_is_degraded_with_an_event_and_no_retry_storm(crd, running_operator, namespace, artifact_uri):
    uri, _ = artifact_uri
    metrics = running_operator
    invalid = metrics.value("irisop_reconciles_total", trigger="model", result="invalid")
    # the schema cannot compare quantities; the operator can
    crd.create_model(namespace, "iris", model_spec(uri, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    cond = crd.wait_condition(namespace, "iris", "Degraded", "True", reason="SpecInvalid")
    assert "requests.cpu" in cond["message"]
    wait_for(lambda: crd.events(namespace, "SpecInvalid"), what="SpecInvalid event")
    # The positive signal: the refusal was counted, and the reconcile queue is
    # empty, so no retry is waiting (a transient failure would sit there
    # with its backoff).
    wait_for(lambda: metrics.moved(invalid, "irisop_reconciles_total", trigger="model", result="invalid"),
             what="the refused reconcile to be counted")
    wait_for(lambda: metrics.value("irisop_reconcile_pending") == 0, what="nothing left to reconcile")
    assert metrics.value("irisop_reconciles_total", trigger="model", result="invalid") == invalid + 1
    events = crd.events(namespace, "SpecInvalid")
    assert sum(e.count or 1 for e in events) == 1, "an invalid spec is reported once, not retried"
    assert crd.deployment(namespace, "iris") is None


def test_schema_rejects_bad_objects_with_the_field_name(crd, running_operator, namespace, kube_cluster):
    bad = f"""
apiVersion: {names.API_VERSION}
kind: IrisModel
metadata: {{name: bad, namespace: {namespace}}}
spec:
  model: {{uri: "https://example.com/model", sha256: "xyz"}}
  autoscaling: {{enabled: true, minReplicas: 5, maxReplicas: 2}}
"""
    out = kubectl(kube_cluster, "apply", "-f", "-", input=bad)
    assert out.returncode != 0
    for field in ("spec.model.uri", "spec.model.sha256", "minReplicas"):
        assert field in out.stderr


def test_bad_artifact_keeps_the_serving_version(crd, running_operator, namespace, artifact_uri, s3, tmp_path):
    uri, sha = artifact_uri
    crd.create_model(namespace, "iris", model_spec(uri, model={"uri": uri, "sha256": sha}))
    crd.wait_condition(namespace, "iris", "ArtifactReady", "True")
    wait_for(lambda: crd.deployment(namespace, "iris"), what="Deployment")

    # v2 is pinned to a sha the uploaded file does not have
    meta = fake_artifact(tmp_path / "v2", seed=b"other")
    uri2 = upload_dir(s3, tmp_path / "v2", BUCKET, f"{namespace}/v2")
    assert meta["sha256"] != sha
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": uri2, "sha256": sha}}})
    cond = crd.wait_condition(namespace, "iris", "ArtifactReady", "False")
    assert cond["reason"] == "ChecksumMismatch"
    assert crd.condition(namespace, "iris", "Degraded")["status"] == "True"
    assert crd.deployment(namespace, "iris").metadata.annotations[names.ANNOTATION_MODEL_SHA] == sha
    wait_for(lambda: crd.events(namespace, "ChecksumMismatch"), what="ChecksumMismatch event")


def test_delete_cascades_to_children(crd, running_operator, namespace, artifact_uri):
    uri, _ = artifact_uri
    crd.create_model(namespace, "iris", model_spec(uri))
    wait_for(lambda: crd.deployment(namespace, "iris") and crd.service(namespace, "iris"), what="children")
    crd.delete_model(namespace, "iris")
    wait_for(lambda: crd.deployment(namespace, "iris") is None and crd.service(namespace, "iris") is None,
             timeout=30, what="children garbage-collected")
