"""Status while waiting (issue 13.3): the real operator, a real API server, and an S3 stand-in that freezes.

This module runs its own moto_server, its own registry and its own operator
pointed at them, so freezing either (SIGSTOP to a process this test started)
or stopping it touches nothing else in the session.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from tests.fixtures.aws import fake_artifact, require_tool, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import operator_process, running

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
BUCKET = "iris-waiting"
WITHIN = 10.0  # seconds: the bound for status to say the operator waits


@pytest.fixture(scope="module")
def private_s3(tmp_path_factory) -> Iterator[tuple[Any, Any]]:
    require_tool("moto_server")
    import boto3

    from irisop_deploy.local.moto import aws_env, moto_server
    from irisop_deploy.local.process import free_port

    port = free_port()
    proc = moto_server(port, home=tmp_path_factory.mktemp("moto-private"))
    proc.start()
    env = aws_env(port)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION"),
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)
    try:
        yield proc, client, env
    finally:
        pid = proc.pid()
        if pid:
            os.kill(pid, signal.SIGCONT)  # never leave it stopped: stop() must be able to end it
        proc.stop()


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory) -> Iterator[tuple[Any, str, str]]:
    require_tool("docker-registry")
    from irisop_deploy.local.process import free_port
    from irisop_deploy.local.registry import local_registry
    from tests.fixtures.registry import Registry, push_fake_runtime

    port = free_port()
    home = tmp_path_factory.mktemp("registry-private")
    proc = local_registry(port, home=home)
    proc.start()
    host = f"127.0.0.1:{port}"
    try:
        yield proc, host, push_fake_runtime(Registry(host, "", "", home))
    finally:
        pid = proc.pid()
        if pid:
            os.kill(pid, signal.SIGCONT)
        proc.stop()


@pytest.fixture(scope="module")
def waiting_operator(crd, operator_env, private_s3, private_registry, tmp_path_factory):
    _, _, env = private_s3
    _, host, runtime = private_registry
    env = {**operator_env, **env, "IRISOP_RUNTIME_IMAGE": runtime, "IRISOP_DEFAULT_REPOSITORY": f"{host}/iris-models",
           "IRISOP_INSECURE_REGISTRIES": host}
    with running(operator_process("operator-waiting", env, tmp_path_factory.mktemp("operator-waiting"))) as proc:
        yield proc


def _cond(crd, namespace, type_):
    return crd.condition(namespace, "iris", type_)


def _says(crd, namespace, type_, status, reason, needle, timeout=WITHIN):
    def check():
        cond = _cond(crd, namespace, type_)
        ok = (cond.get("status"), cond.get("reason")) == (status, reason) and needle in cond.get("message", "")
        return cond if ok else None

    return wait_for(check, timeout=timeout, interval=0.1, what=f"{type_}={status} {reason} saying {needle!r}")


@contextmanager
def frozen(proc) -> Iterator[None]:
    """The process is stopped (SIGSTOP: connections hang, nothing is refused) for the block."""
    os.kill(proc.pid(), signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid(), signal.SIGCONT)


def _change_and_wait(crd, namespace, uri, type_, reason, needle):
    """Change spec.model.uri; within 10 s the step's condition is Unknown <reason>, for the new generation."""
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": uri}}})
    changed = time.monotonic()
    cond = _says(crd, namespace, type_, "Unknown", reason, needle)
    print(f"{type_}=Unknown {reason} {time.monotonic() - changed:.1f} s after the change")
    assert cond["observedGeneration"] == 2
    return cond


def _serving(crd, namespace, uri):
    from irisop_operator import names

    crd.create_model(namespace, "iris", {"model": {"uri": uri}, "image": IMAGE})
    wait_for(lambda: crd.make_pods_ready(namespace, names.selector_string("iris")) >= 1, what="a v1 pod")
    crd.wait_condition(namespace, "iris", "Ready", "True")


def test_a_frozen_s3_is_visible_in_status_within_10_s(only_fake_node, waiting_operator, private_s3, namespace, tmp_path):
    proc, s3, _ = private_s3
    crd = only_fake_node
    fake_artifact(tmp_path / "v1", seed=b"waiting-v1")
    uri1 = upload_dir(s3, tmp_path / "v1", BUCKET, f"{namespace}/v1")
    meta2 = fake_artifact(tmp_path / "v2", seed=b"waiting-v2")
    uri2 = upload_dir(s3, tmp_path / "v2", BUCKET, f"{namespace}/v2")
    _serving(crd, namespace, uri1)

    with frozen(proc):
        _change_and_wait(crd, namespace, uri2, "ArtifactReady", "Reading", f"reading {uri2}")
        assert crd.get_model(namespace, "iris")["status"]["observedGeneration"] == 2
        assert _cond(crd, namespace, "Ready")["status"] == "True", "the old version keeps serving"
    # The read that waited goes through once the store answers again.
    _says(crd, namespace, "ArtifactReady", "True", "Verified", meta2["sha256"][:12], timeout=120)


def test_a_frozen_registry_is_visible_in_status_within_10_s(only_fake_node, waiting_operator, private_s3,
                                                            private_registry, namespace, tmp_path):
    crd = only_fake_node
    _, s3, _ = private_s3
    registry, host, _ = private_registry
    fake_artifact(tmp_path / "v1", seed=b"registry-v1")
    uri1 = upload_dir(s3, tmp_path / "v1", BUCKET, f"{namespace}/v1")
    crd.create_model(namespace, "iris", {"model": {"uri": uri1}})
    crd.wait_condition(namespace, "iris", "ImageReady", "True", timeout=60)
    meta2 = fake_artifact(tmp_path / "v2", seed=b"registry-v2")
    uri2 = upload_dir(s3, tmp_path / "v2", BUCKET, f"{namespace}/v2")

    with frozen(registry):
        _change_and_wait(crd, namespace, uri2, "ImageReady", "Pushing", f"pushing the model image to {host}/iris-models")
        verified = _cond(crd, namespace, "ArtifactReady")
        assert verified["status"] == "True" and meta2["sha256"][:12] in verified["message"]
    _says(crd, namespace, "ImageReady", "True", "Built", "pushed", timeout=120)


def test_an_unreachable_s3_is_retried_and_each_attempt_says_so(only_fake_node, waiting_operator, private_s3, namespace,
                                                               tmp_path):
    proc, s3, _ = private_s3
    crd = only_fake_node
    fake_artifact(tmp_path / "v1", seed=b"retry-v1")
    uri1 = upload_dir(s3, tmp_path / "v1", BUCKET, f"{namespace}/v1")
    _serving(crd, namespace, uri1)

    proc.stop()  # connection refused from now on: a quick transient failure, retried by kopf
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": f"s3://{BUCKET}/{namespace}/v2/"}}})
    first = _says(crd, namespace, "ArtifactReady", "Unknown", "S3Unavailable", "failed (attempt 1: ")
    assert first["message"].startswith(f"reading s3://{BUCKET}/{namespace}/v2/ failed") and "retrying" in first["message"]
    assert first["observedGeneration"] == 2
    assert _cond(crd, namespace, "Degraded")["reason"] == "S3Unavailable"
    _says(crd, namespace, "ArtifactReady", "Unknown", "S3Unavailable", "failed (attempt 2: ", timeout=30)
    assert _cond(crd, namespace, "Ready")["status"] == "True", "the old version keeps serving"
