"""End to end on the real local node (issues 5 and 9): what a user does, checked over HTTP.

The operator runs as a pod, installed through kustomize under its own
ServiceAccount and ClusterRole (tests/fixtures/incluster.py).

train -> upload to S3 (moto) -> apply the sample IrisModel -> the operator
verifies the artifact, layers it onto the real BentoML runtime image in a real
registry, and rolls out pods on a real kubelet/containerd -> predictions
through the Service's ClusterIP (kube-proxy). Then: a new model version rolls
out with zero failed requests; a corrupted artifact never reaches the pods
and the IrisModel reports Degraded; a model that passes the checks but does
not load stalls its rollout while the old pods keep serving; deleting the
IrisModel removes every child and pod.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import requests
import yaml

from irisop_operator import names
from irisop_serving.contract import MODEL_REJECTED
from tests.fixtures.aws import ensure_bucket, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.load import ServiceLoad
from tests.fixtures.operator import Kube

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
REFERENCE = {(5.1, 3.5, 1.4, 0.2): "setosa", (6.0, 2.9, 4.5, 1.5): "versicolor", (6.9, 3.1, 5.4, 2.1): "virginica"}
BUCKET = "iris-e2e"


def train_and_upload(s3, tmp: Path, prefix: str, seed: int) -> tuple[str, str]:
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    out = tmp / prefix.replace("/", "-")
    meta = write_artifact(out, train(TrainParams(seed=seed)), "joblib")
    return upload_dir(s3, out, BUCKET, prefix), meta["sha256"]


def sample(namespace: str, uri: str) -> dict:
    doc = yaml.safe_load((REPO / "deploy/examples/irismodel.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["model"]["uri"] = uri
    doc["spec"].setdefault("serving", {})["progressDeadlineSeconds"] = 30
    return doc


def service_url(kube: Kube, namespace: str, name: str) -> str:
    svc = kube.service(namespace, name)
    return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}/predict"


def predict(url: str) -> dict:
    resp = requests.post(url, json={"rows": [list(r) for r in REFERENCE]}, timeout=5)
    resp.raise_for_status()
    return resp.json()


def serving_sha(kube: Kube, namespace: str, name: str) -> str:
    return kube.get_model(namespace, name).get("status", {}).get("model", {}).get("sha256", "")


def test_user_journey_on_a_real_node(crd, installed_operator, namespace, stack_s3_client, tmp_path):
    s3 = stack_s3_client  # the S3 stand-in the operator pod reads from
    ensure_bucket(s3, BUCKET)
    uri1, sha1 = train_and_upload(s3, tmp_path, f"{namespace}/v1", seed=42)
    body = sample(namespace, uri1)
    crd.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, body)
    name = body["metadata"]["name"]

    # 1. Ready means pods answer: the three reference rows through the Service.
    crd.wait_condition(namespace, name, "Ready", "True", timeout=240)
    url = service_url(crd, namespace, name)
    answer = wait_for(lambda: _try(predict, url), timeout=30, what="the Service to answer")
    assert answer["predictions"] == list(REFERENCE.values())
    assert answer["model_sha256"] == sha1

    # 2. A new model version rolls out while requests keep flowing: zero failures.
    uri2, sha2 = train_and_upload(s3, tmp_path, f"{namespace}/v2", seed=7)
    assert sha2 != sha1
    load = ServiceLoad(url)
    load.start()
    crd.patch_model(namespace, name, {"spec": {"model": {"uri": uri2}}})
    wait_for(lambda: serving_sha(crd, namespace, name) == sha2, timeout=60, what="status to name the new model")
    crd.wait_condition(namespace, name, "Ready", "True", timeout=240)
    wait_for(lambda: load.seen(sha2), timeout=30, what="responses from the new model")
    load.stop()
    assert load.ok > 20, f"too few requests during the rollout ({load.ok})"
    assert load.failures == [], f"{len(load.failures)} failed requests during the rollout: {load.failures[:3]}"

    # 3. A corrupted artifact (bytes changed after model.json was written) never reaches the pods.
    uri3, _ = train_and_upload(s3, tmp_path, f"{namespace}/v3", seed=8)
    key = uri3.split("/", 3)[3] + "model.joblib"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"corrupted" * 100)
    crd.patch_model(namespace, name, {"spec": {"model": {"uri": uri3}}})
    crd.wait_condition(namespace, name, "ArtifactReady", "False", reason="ChecksumMismatch", timeout=60)
    crd.wait_condition(namespace, name, "Degraded", "True", timeout=30)
    assert predict(url)["model_sha256"] == sha2
    assert crd.condition(namespace, name, "Ready")["status"] == "True"

    # 4. A model that passes every check but does not load: the readiness gate
    #    holds the rollout, old pods keep serving, the IrisModel says Degraded.
    bad_dir = tmp_path / "unloadable"
    sha_bad = _unloadable_artifact(bad_dir)
    uri4 = upload_dir(s3, bad_dir, BUCKET, f"{namespace}/v4")
    crd.patch_model(namespace, name, {"spec": {"model": {"uri": uri4}}})
    wait_for(lambda: serving_sha(crd, namespace, name) == sha_bad, timeout=60, what="the unloadable model to be built")
    # The new pod states a permanent refusal: Degraded at once (issue 13.2), not at the progress deadline.
    stalled = crd.wait_condition(namespace, name, "Degraded", "True", reason=MODEL_REJECTED, timeout=30)
    # ... with the serving container's own reason, not just "no progress".
    assert "model not ready: cannot load model.joblib" in stalled["message"], stalled["message"]
    assert predict(url)["model_sha256"] == sha2, "old pods keep serving"

    # 5. Delete: every child and pod goes.
    crd.delete_model(namespace, name)
    wait_for(lambda: crd.deployment(namespace, name) is None and crd.service(namespace, name) is None,
             timeout=60, what="children deleted")
    wait_for(lambda: not crd.core.list_namespaced_pod(namespace).items, timeout=90, what="pods deleted")


def _unloadable_artifact(directory: Path) -> str:
    """Valid metadata and a matching sha256, but the file is not a loadable model."""
    import hashlib
    import json

    from irisop_serving.contract import CLASSES, FEATURES

    directory.mkdir(parents=True)
    payload = b"not a joblib pickle" * 10
    (directory / "model.joblib").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    import sklearn

    (directory / "model.json").write_text(json.dumps({
        "schema_version": 1, "sha256": sha, "format": "joblib", "model_file": "model.joblib",
        "size_bytes": len(payload), "feature_names": list(FEATURES), "class_names": list(CLASSES),
        "versions": {"scikit-learn": sklearn.__version__}}))
    return sha


def _try(fn, *args):
    try:
        return fn(*args)
    except requests.RequestException:
        return None
