"""`irisop images runtime --in-cluster`: the runtime image built by a real buildah
Job on the real local node (containerd + runc), from this checkout's serving/
code, pushed from the pod to a registry, then pulled back and checked.

The registry listens on the node's address because the push comes from the
pod, whose loopback is its own. The pip install inside the build reaches PyPI
through the VM's TLS-intercepting proxy, so the host CA bundle rides along as
the build's extra CA (the feature users behind such proxies need).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures.aws import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pod_registry(kube_node, tmp_path_factory) -> Iterator[str]:
    """An open registry on the stack's own address (never the host's external
    one), reachable from pods and trusted by the node's containerd."""
    require_tool("docker-registry")
    from irisop_deploy.local.network import STACK_ADDRESS, ensure_interface
    from irisop_deploy.local.process import free_port
    from irisop_deploy.local.registry import local_registry

    ensure_interface()
    host = f"{STACK_ADDRESS}:{free_port()}"
    proc = local_registry(int(host.rsplit(":", 1)[1]), home=tmp_path_factory.mktemp("pod-registry"),
                          host=host.rsplit(":", 1)[0])
    proc.start()
    kube_node.trust_registry(host)
    try:
        yield host
    finally:
        proc.stop()


def _publish(local_ref: str, destination: str) -> str:
    from irisop_deploy.images.runtime import push_local_image

    return f"{destination.rsplit(':', 1)[0]}@{push_local_image(local_ref, destination, tls_verify=False)}"


def _podman(*args: str) -> subprocess.CompletedProcess:
    from irisop_deploy.images.baseimage import container_env

    from tests.fixtures.tools import run

    return run(["podman", *args], env=container_env())


@pytest.fixture(scope="module")
def build_namespace(kube_cluster) -> str:
    """deploy/runtime-build/namespace.yaml as shipped: PodSecurity admission enforces baseline on the Job."""
    from tests.fixtures.operator import kubectl

    applied = kubectl(kube_cluster, "apply", "-f", str(REPO_ROOT / "deploy" / "runtime-build" / "namespace.yaml"))
    assert applied.returncode == 0, applied.stderr
    return "irisop-build"


@pytest.fixture(scope="module")
def builder(pod_registry) -> str:
    """The buildah builder image, pushed where the node pulls it from."""
    require_tool("podman")
    from irisop_deploy.images.baseimage import ensure_builder_image

    return _publish(ensure_builder_image(), f"{pod_registry}/irisop/buildah:bookworm")


def _build(kube_cluster, pod_registry, **kwargs):
    from irisop_deploy.images.incluster import build_runtime_in_cluster
    from irisop_operator.settings import Settings

    return build_runtime_in_cluster(kube_cluster.api_client(), REPO_ROOT, f"{pod_registry}/irisop/runtime",
                                    settings=Settings(insecure_registries=(pod_registry,)), **kwargs)


def test_a_failing_build_reports_its_log(kube_cluster, build_namespace, pod_registry, builder) -> None:
    from irisop_deploy.images.runtime import RuntimeBuildError

    absent = f"{pod_registry}/irisop/absent@sha256:" + "0" * 64
    with pytest.raises(RuntimeBuildError) as failed:
        _build(kube_cluster, pod_registry, base_image=absent, builder_image=builder, namespace=build_namespace,
               timeout=600)
    message = str(failed.value)
    assert message.startswith(f"runtime build Job {build_namespace}/irisop-runtime-") and " failed\n" in message
    assert "irisop/absent" in message  # buildah's own words about the base it could not pull


def test_a_missing_namespace_names_the_manifest_to_apply(kube_cluster, pod_registry) -> None:
    from irisop_deploy.images.runtime import RuntimeBuildError

    with pytest.raises(RuntimeBuildError, match="namespace irisop-absent not found: kubectl apply -f "
                                                "deploy/runtime-build/namespace.yaml"):
        _build(kube_cluster, pod_registry, base_image="b@sha256:" + "1" * 64, builder_image="x",
               namespace="irisop-absent")


def test_runtime_image_built_by_a_job_in_the_cluster_runs_the_serving_stack(kube_cluster, build_namespace,
                                                                            pod_registry, builder) -> None:
    namespace = build_namespace
    from irisop_deploy.images.baseimage import ensure_base_image
    from irisop_deploy.images.runtime import host_ca_bundle

    base = _publish(ensure_base_image(), f"{pod_registry}/irisop/python-base:bookworm")
    messages: list[str] = []

    def build():
        return _build(kube_cluster, pod_registry, base_image=base, builder_image=builder, namespace=namespace,
                      extra_ca=host_ca_bundle(), timeout=1500, progress=messages.append)

    built = build()
    assert built.built and built.image.startswith(f"{pod_registry}/irisop/runtime@sha256:")
    assert messages and messages[0].startswith("started Job")

    # What the Job pushed is the serving image: non-root, BentoML entrypoint,
    # the locked stack installed in the venv, the Bento's code in place.
    _podman("pull", "--quiet", "--tls-verify=false", built.image)
    config = json.loads(_podman("image", "inspect", built.image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][:2] == ["/opt/venv/bin/bentoml", "serve"]
    probe = _podman("run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "/opt/venv/bin/python",
                    built.image, "-c",
                    "import bentoml, sklearn, pathlib; print(bentoml.__version__);"
                    "print(sorted(p.name for p in pathlib.Path('/opt/bento/src/serving').iterdir()))")
    assert "service.py" in probe.stdout

    # Same serving code, same base: the registry already has it, no Job.
    again = build()
    assert not again.built and again.image == built.image and again.key == built.key
