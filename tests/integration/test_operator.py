"""The operator against a real kube-apiserver + controller-manager (issue 3).

The operator runs as a real process; S3 is moto_server over HTTP. The
IrisModels here name a ready image (spec.image), so no registry is needed;
the control plane has no kubelet, so the test plays the kubelet's part for
readiness (binding pods and reporting them Ready through pods/status).
"""
from __future__ import annotations

import time

import pytest

from irisop_operator import names
from tests.fixtures.aws import fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import kubectl

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
BUCKET = "iris-operator-tests"


@pytest.fixture
def artifact_uri(s3, tmp_path, namespace):
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    meta = fake_artifact(tmp_path / "a", seed=namespace.encode())
    return upload_dir(s3, tmp_path / "a", BUCKET, f"{namespace}/v1"), meta["sha256"]


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

    # let status settle, then a no-op resync (an irrelevant change to the Deployment) writes nothing
    crd.wait_condition(namespace, "iris", "ImageReady", "True")
    time.sleep(2)
    before = (crd.get_model(namespace, "iris")["metadata"]["resourceVersion"],
              crd.service(namespace, "iris").metadata.resource_version)
    crd.apps.patch_namespaced_deployment("iris", namespace, {"metadata": {"labels": {"someone-else": "x"}}})
    time.sleep(3)
    after = (crd.get_model(namespace, "iris")["metadata"]["resourceVersion"],
             crd.service(namespace, "iris").metadata.resource_version)
    assert after == before
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
    # the schema cannot compare quantities; the operator can
    crd.create_model(namespace, "iris", model_spec(uri, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    cond = crd.wait_condition(namespace, "iris", "Degraded", "True", reason="SpecInvalid")
    assert "requests.cpu" in cond["message"]
    wait_for(lambda: crd.events(namespace, "SpecInvalid"), what="SpecInvalid event")
    time.sleep(4)
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
