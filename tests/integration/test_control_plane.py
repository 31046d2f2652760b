"""The local control plane is a real Kubernetes: controllers act, GC cascades,
`up` is idempotent and `down` leaves nothing running.

Tests that start/stop their own ControlPlane use a private temp home so they
never disturb the session cluster other tests share.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from irisop_deploy.local import binaries
from irisop_deploy.local.controlplane import (
    COMPONENTS,
    KUBERNETES_SERVICE_IP,
    ControlPlane,
    apiserver_serving,
)
from irisop_deploy.local.pki import PKI, CertSpec
from tests.fixtures.cluster import KubeCluster, missing_tool, wait_for


def _deployment(name: str) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # Never scheduled to a node in the control-plane-only cluster:
                # only the controllers' objects are under test here.
                "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/none:0"}]},
            },
        },
    }


# -- no services needed -------------------------------------------------------

def test_apiserver_certificate_names_every_address(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    crt, _ = pki.ensure_leaf(apiserver_serving("10.250.0.1"))
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubernetes.default.svc"} <= set(san.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", KUBERNETES_SERVICE_IP, "10.250.0.1"}
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)


def test_certificate_reissued_when_names_change_and_reused_otherwise(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    spec = CertSpec("node", "system:node:a", organizations=("system:nodes",), ip_addresses=("127.0.0.1",))
    first = pki.ensure_leaf(spec)[0].read_bytes()
    assert pki.ensure_leaf(spec)[0].read_bytes() == first
    moved = CertSpec("node", "system:node:a", organizations=("system:nodes",), ip_addresses=("10.1.2.3",))
    assert pki.ensure_leaf(moved)[0].read_bytes() != first


def test_status_of_a_never_started_home_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "cp"
    plane = ControlPlane(home)
    assert plane.status() == dict.fromkeys(COMPONENTS)
    plane.down()
    assert not home.exists()


def test_up_without_binaries_and_without_build_names_the_build_script(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRISOP_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(binaries.MissingBinary, match="build-kube.sh"):
        ControlPlane(tmp_path / "cp", build=False).up()


# -- real control plane ---------------------------------------------------------

@pytest.mark.integration
def test_deployment_controller_creates_replicaset(kube_cluster: KubeCluster, namespace: str) -> None:
    from kubernetes import client

    api = kube_cluster.api_client()
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("web"))
    rs = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, timeout=30,
                  what="a ReplicaSet from the Deployment controller")
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    # The ReplicaSet controller acts too: it creates the (unschedulable) pods.
    core = client.CoreV1Api(api)
    # It creates them one request at a time: wait for both rather than the first.
    wait_for(lambda: len(core.list_namespaced_pod(namespace).items) == 2, timeout=30, what="both pods")


@pytest.mark.integration
def test_garbage_collector_cascades_deletion(kube_cluster: KubeCluster, namespace: str) -> None:
    from kubernetes import client

    api = kube_cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                  uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref])))
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(lambda: not [c for c in core.list_namespaced_config_map(namespace).items
                          if c.metadata.name == "child"], timeout=30, what="GC to delete the child")

    apps.create_namespaced_deployment(namespace, _deployment("gone"))
    wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, timeout=30, what="ReplicaSet")
    apps.delete_namespaced_deployment("gone", namespace, propagation_policy="Background")
    wait_for(lambda: not apps.list_namespaced_replica_set(namespace).items, timeout=30,
             what="GC to delete the ReplicaSet")


@pytest.mark.integration
def test_hpa_is_validated_by_the_api_server(kube_cluster: KubeCluster, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    autoscaling = client.AutoscalingV2Api(kube_cluster.api_client())
    bad = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                 "minReplicas": 5, "maxReplicas": 2},
    }
    with pytest.raises(ApiException) as err:
        autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, bad)
    assert err.value.status == 422
    assert "maxReplicas" in json.loads(err.value.body)["message"]


def _own_plane(tmp_path: Path) -> ControlPlane:
    missing = binaries.missing_kube_binaries()
    if missing:
        missing_tool(f"Kubernetes binaries not built: {', '.join(missing)}")
    return ControlPlane(tmp_path / "cp", build=False)


@pytest.mark.integration
def test_up_twice_is_fast_and_down_leaves_no_process(tmp_path: Path) -> None:
    plane = _own_plane(tmp_path)
    try:
        kubeconfig = plane.up()
        pids = plane.status()
        assert all(pids.values()), pids
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]

        started = time.monotonic()
        assert plane.up() == kubeconfig
        assert time.monotonic() - started < 5, "second up() must reuse the running cluster"
        assert plane.status() == pids, "second up() must not restart anything"
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == server
    finally:
        plane.down()
    assert plane.status() == dict.fromkeys(COMPONENTS)
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} survived down()"


@pytest.mark.integration
def test_up_after_down_keeps_data_and_certificates(tmp_path: Path) -> None:
    from kubernetes import client, config

    plane = _own_plane(tmp_path)
    try:
        kubeconfig = plane.up()
        ca = plane.pki.ca_cert.read_bytes()
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name="survives")))
        plane.down()
        plane.up()
        assert plane.pki.ca_cert.read_bytes() == ca
        # The old kubeconfig (same CA, same admin cert) still works after restart.
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            assert client.CoreV1Api(api).read_namespace("survives").metadata.name == "survives"
    finally:
        plane.destroy()
    assert not plane.home.exists()
