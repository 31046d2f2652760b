"""The operator's image path against real services (issue 4, through the operator):
IrisModel without spec.image on the real control plane -> artifact from moto's
S3 -> model image assembled in a real registry through moto's ECR API (fresh
token per push) -> the Deployment runs it by digest.

Running the pushed image with podman and predicting is covered at function
level in test_image_pipeline.py and on a real node in test_e2e_local.py; here
the runtime is a tiny image so this stays fast.
"""
from __future__ import annotations

import boto3
import pytest

from tests.fixtures.aws import ensure_bucket, fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import operator_process, running
from tests.fixtures.registry import ECR_ACCOUNT

pytestmark = pytest.mark.integration
BUCKET = "iris-operator-images"


@pytest.fixture(scope="module")
def image_operator(crd, operator_env, registry, fake_runtime, tmp_path_factory):
    env = {**operator_env,
           "IRISOP_RUNTIME_IMAGE": fake_runtime,
           "IRISOP_DEFAULT_REPOSITORY": f"{registry.host}/iris-models",
           "IRISOP_INSECURE_REGISTRIES": registry.host,
           # No static registry password: the only way in is moto's ECR token.
           "IRISOP_ECR_REGISTRY_MAP": f"{registry.host}={ECR_ACCOUNT}/us-east-1"}
    with running(operator_process("image-operator", env, tmp_path_factory.mktemp("image-operator"))) as proc:
        yield proc


def _upload(s3, tmp_path, prefix: str, seed: bytes) -> tuple[str, str]:
    ensure_bucket(s3, BUCKET)
    meta = fake_artifact(tmp_path / prefix.replace("/", "_"), seed=seed)
    return upload_dir(s3, tmp_path / prefix.replace("/", "_"), BUCKET, prefix), meta["sha256"]


def _image(crd, ns, name):
    return crd.deployment(ns, name).spec.template.spec.containers[0].image


def test_operator_builds_reuses_and_rolls_model_images(crd, image_operator, namespace, s3, tmp_path, registry):
    uri, sha = _upload(s3, tmp_path, f"{namespace}/v1", seed=namespace.encode())
    crd.create_model(namespace, "iris", {"model": {"uri": uri, "sha256": sha}})
    built = crd.wait_condition(namespace, "iris", "ImageReady", "True", timeout=60)
    assert built["reason"] == "Built"
    wait_for(lambda: crd.deployment(namespace, "iris"), what="Deployment")
    image = _image(crd, namespace, "iris")
    assert image.startswith(f"{registry.host}/iris-models@sha256:"), "deployed by digest"
    wait_for(lambda: crd.get_model(namespace, "iris")["status"].get("image") == image, timeout=10,
             what="status.image")
    tag = built["message"].split()[0]
    assert tag in registry.tags("iris-models")

    # ECR side effects of the push, through moto's ECR API
    ecr = boto3.client("ecr")
    repo = ecr.describe_repositories(registryId=ECR_ACCOUNT, repositoryNames=["iris-models"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True

    # a second IrisModel with the same model reuses the image: no push
    crd.create_model(namespace, "twin", {"model": {"uri": uri, "sha256": sha}})
    reused = crd.wait_condition(namespace, "twin", "ImageReady", "True", timeout=60)
    assert reused["reason"] == "Reused"
    wait_for(lambda: crd.deployment(namespace, "twin"), what="twin Deployment")
    assert _image(crd, namespace, "twin") == image

    # a new model version: new tag, the Deployment follows (a rolling update)
    uri2, sha2 = _upload(s3, tmp_path, f"{namespace}/v2", seed=b"second")
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": uri2, "sha256": sha2}}})
    wait_for(lambda: _image(crd, namespace, "iris") != image, timeout=60, what="Deployment on the new image")
    wait_for(lambda: crd.get_model(namespace, "iris")["status"]["model"]["sha256"] == sha2, timeout=10,
             what="status to name the new model")
    assert len(registry.tags("iris-models")) == 2

    # a corrupted artifact never becomes an image, and the Deployment keeps v2
    uri3, _ = _upload(s3, tmp_path, f"{namespace}/v3", seed=b"third")
    s3.put_object(Bucket=BUCKET, Key=f"{namespace}/v3/model.joblib", Body=b"tampered")
    current = _image(crd, namespace, "iris")
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": uri3}}})
    cond = crd.wait_condition(namespace, "iris", "ArtifactReady", "False", timeout=60)
    assert cond["reason"] in ("ChecksumMismatch", "InvalidMetadata")
    assert crd.condition(namespace, "iris", "Degraded")["status"] == "True"
    assert _image(crd, namespace, "iris") == current
    assert len(registry.tags("iris-models")) == 2
