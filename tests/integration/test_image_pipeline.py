"""Model images against a real docker-registry (htpasswd) and moto_server (S3 + ECR API)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from irisop_operator.artifact import fetch_artifact
from irisop_operator.images import ecr
from irisop_operator.images.model import LABEL_MODEL_SHA, LABEL_RUNTIME, content_tag, ensure_model_image
from irisop_operator.pipeline import ArtifactError, ImageError, ModelSource
from irisop_operator.settings import Settings
from tests.fixtures.aws import fake_artifact, require_tool, upload_dir
from tests.fixtures.registry import ECR_ACCOUNT
from tests.fixtures.tools import run

pytestmark = pytest.mark.integration

REFERENCE_ROWS = [
    ([5.1, 3.5, 1.4, 0.2], "setosa"),
    ([6.0, 2.9, 4.5, 1.5], "versicolor"),
    ([6.9, 3.1, 5.4, 2.1], "virginica"),
]


@pytest.fixture
def settings(tmp_path: Path, registry, fake_runtime) -> Settings:
    pw = tmp_path / "registry-password"
    pw.write_text(registry.password)
    return Settings(
        work_dir=str(tmp_path / "work"),
        runtime_image=fake_runtime,
        insecure_registries=(registry.host,),
        registry_username=registry.username,
        registry_password_file=str(pw),
    )


@pytest.fixture
def push_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record every HTTP call the pipeline makes (the calls still reach the real registry)."""
    calls: list[tuple[str, str]] = []
    original = requests.Session.request

    def spy(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        params = kwargs.get("params")
        calls.append((method.upper(), f"{url}?{urlencode(params)}" if params else url))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    return calls


def _writes(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [c for c in calls if c[0] in {"POST", "PUT", "PATCH", "DELETE"} and "/v2/" in c[1]]


def _artifact(s3, bucket, tmp_path, settings, name="v1", seed=b"one"):
    meta = fake_artifact(tmp_path / name, seed=seed)
    uri = upload_dir(s3, tmp_path / name, bucket, f"models/{name}")
    return fetch_artifact(ModelSource(uri=uri, sha256=meta["sha256"]), settings)


def test_push_then_reuse(s3, bucket, tmp_path, settings, registry, push_spy):
    art = _artifact(s3, bucket, tmp_path, settings)
    repo = f"{registry.host}/iris/reuse"
    push_spy.clear()
    first = ensure_model_image(art, repo, settings)
    assert not first.reused
    # Base layers (one layer + config in the fake runtime) are mounted, not uploaded:
    # the only bytes uploaded are the model layer and the new config.
    writes = _writes(push_spy)
    assert len([w for w in writes if w[0] == "POST" and "mount=" in w[1]]) == 2
    assert len([w for w in writes if w[0] == "PUT" and "/blobs/uploads/" in w[1]]) == 2
    assert first.image == f"{repo}@{first.digest}"
    runtime_digest = settings.runtime_image.split("@")[1]
    assert first.tag == content_tag(runtime_digest, art.sha256)
    assert registry.tags("iris/reuse") == [first.tag]

    # The pushed config says where the model is and which model/runtime it holds.
    client = registry.client()
    manifest, _, digest = client.get_manifest("iris/reuse", first.tag)
    assert digest == first.digest
    config = json.loads(client.get_blob("iris/reuse", manifest["config"]["digest"]))
    assert "IRISOP_MODEL_DIR=/models/current" in config["config"]["Env"]
    assert config["config"]["Labels"][LABEL_MODEL_SHA] == art.sha256
    assert config["config"]["Labels"][LABEL_RUNTIME] == runtime_digest
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2

    push_spy.clear()
    start = time.monotonic()
    second = ensure_model_image(art, repo, settings)
    elapsed = time.monotonic() - start
    assert second.reused and second.digest == first.digest and second.tag == first.tag
    assert _writes(push_spy) == []
    assert elapsed < 1.0, f"cache hit took {elapsed:.2f}s"


def test_changed_model_gets_new_tag(s3, bucket, tmp_path, settings, registry):
    repo = f"{registry.host}/iris/changed"
    one = ensure_model_image(_artifact(s3, bucket, tmp_path, settings, "v1", b"one"), repo, settings)
    two = ensure_model_image(_artifact(s3, bucket, tmp_path, settings, "v2", b"two"), repo, settings)
    assert not two.reused and two.tag != one.tag and two.digest != one.digest
    assert registry.tags("iris/changed") == sorted([one.tag, two.tag])


def test_same_model_in_new_repository_pushes_identical_digest(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    a = ensure_model_image(art, f"{registry.host}/iris/a", settings)
    b = ensure_model_image(art, f"{registry.host}/iris/b", settings)
    assert not b.reused and (a.tag, a.digest) == (b.tag, b.digest)  # deterministic assembly


def test_corrupted_artifact_pushes_nothing(s3, bucket, tmp_path, settings, registry, push_spy):
    meta = fake_artifact(tmp_path / "bad", seed=b"bad")
    uri = upload_dir(s3, tmp_path / "bad", bucket, "models/bad")
    s3.put_object(Bucket=bucket, Key="models/bad/model.joblib", Body=b"\0" * meta["size_bytes"])
    with pytest.raises(ArtifactError) as err:
        art = fetch_artifact(ModelSource(uri=uri), settings)
        ensure_model_image(art, f"{registry.host}/iris/corrupt", settings)
    assert err.value.reason == "ChecksumMismatch"
    assert _writes(push_spy) == []
    assert registry.tags("iris/corrupt") == []


def test_ecr_mapped_registry_uses_fresh_token_and_prepares_repository(
        s3, bucket, tmp_path, settings, registry, monkeypatch):
    # No static credentials: the only way in is the token moto's ECR API hands out.
    ecr_settings = replace(settings, registry_username="", registry_password_file="",
                           ecr_registry_map=(f"{registry.host}={ECR_ACCOUNT}/us-east-1",), ecr_keep_images=7)
    tokens: list[str] = []
    original = ecr.fresh_credentials

    def counting(client, reg):
        tokens.append(reg.registry_id)
        return original(client, reg)

    monkeypatch.setattr(ecr, "fresh_credentials", counting)
    # The runtime must be readable with the ECR token too (same registry).
    art = _artifact(s3, bucket, tmp_path, ecr_settings)
    first = ensure_model_image(art, f"{registry.host}/iris/ecr", ecr_settings)
    second = ensure_model_image(art, f"{registry.host}/iris/ecr", ecr_settings)
    assert not first.reused and second.reused
    assert tokens == [ECR_ACCOUNT, ECR_ACCOUNT]  # one fresh token per push, never reused

    import boto3

    client = boto3.client("ecr")
    repo = client.describe_repositories(registryId=ECR_ACCOUNT, repositoryNames=["iris/ecr"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    policy = json.loads(client.get_lifecycle_policy(registryId=ECR_ACCOUNT, repositoryName="iris/ecr")["lifecyclePolicyText"])
    assert policy["rules"][0]["selection"]["countNumber"] == 7
    assert policy["rules"][0]["selection"]["tagPrefixList"] == ["m-"]


def test_vanished_work_dir_is_transient(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    (art.local_dir / "model.joblib").unlink()
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{registry.host}/iris/vanished", settings)
    assert err.value.reason == "ArtifactUnavailable" and err.value.transient
    assert registry.tags("iris/vanished") == []


def test_wrong_password_is_permanent(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    Path(settings.registry_password_file).write_text("wrong")
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{registry.host}/iris/denied", settings)
    assert err.value.reason == "RegistryUnauthorized" and not err.value.transient


def test_no_credentials_is_permanent(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{registry.host}/iris/denied", replace(settings, registry_username=""))
    assert err.value.reason == "RegistryUnauthorized"


def test_registry_down_is_transient(s3, bucket, tmp_path, settings, dead_port):
    art = _artifact(s3, bucket, tmp_path, settings)
    host = f"127.0.0.1:{dead_port}"
    down = replace(settings, insecure_registries=(host,), runtime_image=f"{host}/irisop/runtime:fake")
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{host}/iris/down", down)
    assert err.value.reason == "RegistryUnavailable" and err.value.transient


def test_missing_runtime_image(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    gone = replace(settings, runtime_image=f"{registry.host}/irisop/runtime:does-not-exist")
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{registry.host}/iris/x", gone)
    assert err.value.reason == "RuntimeImageNotFound"


def test_unconfigured_runtime_image(s3, bucket, tmp_path, settings, registry):
    art = _artifact(s3, bucket, tmp_path, settings)
    with pytest.raises(ImageError) as err:
        ensure_model_image(art, f"{registry.host}/iris/x", replace(settings, runtime_image=""))
    assert err.value.reason == "RuntimeImageNotConfigured"


def test_skopeo_reads_the_model_image(s3, bucket, tmp_path, settings, registry):
    skopeo = require_tool("skopeo")
    art = _artifact(s3, bucket, tmp_path, settings)
    result = ensure_model_image(art, f"{registry.host}/iris/skopeo", settings)
    out = run([skopeo, "inspect", "--tls-verify=false", "--creds", f"{registry.username}:{registry.password}",
               f"docker://{result.image}"]).stdout
    info = json.loads(out)
    assert info["Digest"] == result.digest
    assert info["Labels"][LABEL_MODEL_SHA] == art.sha256
    # And the layer really holds the artifact where IRISOP_MODEL_DIR points.
    dest = tmp_path / "oci"
    run([skopeo, "copy", "--quiet", "--src-tls-verify=false", "--src-creds",
         f"{registry.username}:{registry.password}", f"docker://{result.image}", f"dir:{dest}"])
    import tarfile

    layer = dest / json.loads((dest / "manifest.json").read_text())["layers"][-1]["digest"].split(":")[1]
    with tarfile.open(layer) as tar:
        names = tar.getnames()
        model = tar.extractfile("models/current/model.joblib").read()
    assert names == ["models", "models/current", "models/current/model.joblib", "models/current/model.json"]
    assert model == (art.local_dir / "model.joblib").read_bytes()


# --- end to end with the real runtime and a real model ---------------------------------------

def _podman_env() -> dict[str, str]:
    from irisop_deploy.images.baseimage import container_env

    return container_env()


def _predict(port: int, row: list[float]) -> Any:
    resp = requests.post(f"http://127.0.0.1:{port}/predict", json={"rows": [row]}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def _label_of(answer: Any) -> str:
    """The serving API may answer ["setosa"] or {"predictions": [...]}; take the first label."""
    if isinstance(answer, dict):
        answer = answer.get("predictions") or answer.get("labels") or answer.get("classes")
    first = answer[0]
    if isinstance(first, dict):
        first = first.get("label") or first.get("class") or first.get("species")
    return first


# --- end to end: real runtime image, real trained model, podman --------------------------------

def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    from irisop_deploy.images.baseimage import container_env

    return run(["podman", *args], env=container_env(), check=check)


def _trained_artifact(directory: Path) -> dict:
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    return write_artifact(directory, train(TrainParams(seed=42)), "joblib")


def _wait_ready(port: int, name: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    logs = _podman("logs", name, check=False)
    pytest.fail(f"container not ready after {timeout:.0f}s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


@pytest.mark.slow
def test_model_image_serves_reference_rows(s3, bucket, tmp_path, settings, registry, runtime_image):
    require_tool("podman")
    from irisop_deploy.local.process import free_port

    meta = _trained_artifact(tmp_path / "trained")
    uri = upload_dir(s3, tmp_path / "trained", bucket, "models/trained")
    art = fetch_artifact(ModelSource(uri=uri, sha256=meta["sha256"]), settings)
    result = ensure_model_image(art, f"{registry.host}/iris/e2e", replace(settings, runtime_image=runtime_image))

    # The build-only CA bundle left nothing behind in the image's environment.
    client = registry.client()
    manifest, _, _ = client.get_manifest("iris/e2e", result.tag)
    env = json.loads(client.get_blob("iris/e2e", manifest["config"]["digest"]))["config"]["Env"]
    assert not [e for e in env if e.split("=")[0] in {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "UV_NATIVE_TLS"}]
    assert "IRISOP_MODEL_DIR=/models/current" in env

    # Pull it back from the registry, as a node would.
    _podman("pull", "--quiet", "--tls-verify=false", "--creds", f"{registry.username}:{registry.password}",
            result.image)
    name = f"irisop-e2e-{os.getpid()}"
    port = free_port()
    _podman("run", "-d", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", f"IRISOP_EXPECTED_SHA256={art.sha256}", "-p", f"127.0.0.1:{port}:3000", result.image)
    try:
        assert _podman("inspect", "--format", "{{.Config.User}}", name).stdout.strip() == "10001:10001"
        _wait_ready(port, name)
        for row, expected in REFERENCE_ROWS:
            resp = requests.post(f"http://127.0.0.1:{port}/predict", json={"rows": [row]}, timeout=10)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["predictions"] == [expected], (row, body)
            assert body["model_sha256"] == art.sha256
    finally:
        _podman("rm", "-f", "-t", "2", name, check=False)
        _podman("rmi", result.image, check=False)  # keep podman storage from collecting test images


def test_bearer_token_flow_with_cross_repo_mount(token_registry, s3, bucket, tmp_path):
    """Docker Hub-style auth: 401 Bearer challenge → token for the exact scopes → retry."""
    from irisop_operator.images.registry import RegistryClient
    from tests.fixtures.registry import Registry, push_fake_runtime

    reg = Registry(token_registry.host, token_registry.username, token_registry.password, tmp_path)
    runtime = push_fake_runtime(reg, repo="base/runtime")
    pw = tmp_path / "pw"
    pw.write_text(token_registry.password)
    settings = Settings(work_dir=str(tmp_path / "work"), runtime_image=runtime,
                        insecure_registries=(reg.host,), registry_username=reg.username,
                        registry_password_file=str(pw))
    art = _artifact(s3, bucket, tmp_path, settings)
    token_registry.issued.clear()
    result = ensure_model_image(art, f"{reg.host}/iris/bearer", settings)
    assert not result.reused
    # The mount needed pull on the source repository and push on the target, in one token.
    assert ["repository:iris/bearer:pull,push", "repository:base/runtime:pull"] in token_registry.issued
    assert ensure_model_image(art, f"{reg.host}/iris/bearer", settings).reused

    wrong = RegistryClient(reg.host, username=reg.username, password="wrong", insecure=True)
    with pytest.raises(ImageError) as err:
        wrong.manifest_digest("iris/bearer", result.tag)
    assert err.value.reason == "RegistryUnauthorized"
