"""metrics-server for the local node: the metrics.k8s.io API the HPA reads.

Why a host process instead of the usual Deployment: it needs no image and
starts with the node. The API server still reaches it the standard way — an
APIService pointing at the Service kube-system/metrics-server, whose
EndpointSlice names the node's address (Endpoints may not be loopback, hence
the node IP rather than 127.0.0.1).
"""
from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

from .. import versions
from .binaries import BUILD_SCRIPT, MissingBinary
from .controlplane import ControlPlane, tls_ok
from .pki import CertSpec
from .process import ManagedProcess, cache_dir

VERSION = versions.metrics_server()
BUILD_METRICS_SERVER = BUILD_SCRIPT.with_name("build-metrics-server.sh")
NAMESPACE = "kube-system"
NAME = "metrics-server"
APISERVICE = "v1beta1.metrics.k8s.io"
IDENTITY = CertSpec("metrics-server-client", "irisop:metrics-server")


def binary_path() -> Path:
    return cache_dir() / "metrics-server" / VERSION / "bin" / "metrics-server"


def binary(build: bool) -> Path:
    """The metrics-server executable, built (minutes, cached) when missing and build is set."""
    exe = binary_path()
    if exe.exists():
        return exe
    if not build:
        raise MissingBinary(f"metrics-server not built; run {BUILD_METRICS_SERVER}")
    try:
        subprocess.run(["bash", str(BUILD_METRICS_SERVER)], check=True,
                       env={**os.environ, "IRISOP_CACHE": str(cache_dir()),
                            "METRICS_SERVER_VERSION": VERSION})
    except subprocess.CalledProcessError as exc:
        raise MissingBinary(f"{BUILD_METRICS_SERVER} failed with exit code {exc.returncode}") from exc
    return exe


def serving_spec(node_ip: str) -> CertSpec:
    return CertSpec("metrics-server-serving", "metrics-server",
                    dns_names=(f"{NAME}.{NAMESPACE}.svc", f"{NAME}.{NAMESPACE}.svc.cluster.local"),
                    ip_addresses=(node_ip,), server=True, client=False)


def process(plane: ControlPlane, home: Path, node_ip: str, port: int, exe: Path) -> ManagedProcess:
    pki = plane.pki
    serving = serving_spec(node_ip)
    kubeconfig = plane.component_kubeconfig(IDENTITY)
    return ManagedProcess(
        name="metrics-server",
        argv=[
            str(exe),
            f"--bind-address={node_ip}",
            f"--secure-port={port}",
            f"--tls-cert-file={pki.cert(serving.name)}",
            f"--tls-private-key-file={pki.key(serving.name)}",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--kubelet-preferred-address-types=InternalIP",
            # The kubelet listens on a free port, not 10250: read it from the Node.
            "--kubelet-use-node-status-port",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            f"--kubelet-client-certificate={pki.cert(IDENTITY.name)}",
            f"--kubelet-client-key={pki.key(IDENTITY.name)}",
            # The shortest resolution it allows: the HPA sees load sooner
            # (it must exceed the kubelet request timeout, default 10 s).
            "--metric-resolution=10s",
            "--kubelet-request-timeout=5s",
        ],
        home=home,
        # /livez, not /readyz: readiness waits for the first scrape (~10 s)
        # and nothing here needs to block on that.
        ready=tls_ok(f"https://{node_ip}:{port}/livez", pki.ca_cert),
        timeout=60,
    )


def write_identity(plane: ControlPlane, node_ip: str) -> None:
    plane.pki.ensure_leaf(serving_spec(node_ip))
    plane.write_kubeconfig_for(IDENTITY)


def register(api: Any, plane: ControlPlane, node_ip: str, port: int) -> None:
    """RBAC for its identity, the Service and its EndpointSlice (the APIService comes later)."""
    from kubernetes import client

    user = {"kind": "User", "name": IDENTITY.common_name, "apiGroup": "rbac.authorization.k8s.io"}
    rbac = client.RbacAuthorizationV1Api(api)
    _apply(lambda: rbac.create_cluster_role({
        "metadata": {"name": "irisop:metrics-server"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
        ]}))
    for role, binding in (("irisop:metrics-server", "irisop:metrics-server"),
                          ("system:auth-delegator", "irisop:metrics-server:auth-delegator")):
        _apply(lambda role=role, binding=binding: rbac.create_cluster_role_binding({
            "metadata": {"name": binding},
            "roleRef": {"kind": "ClusterRole", "name": role, "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [user]}))
    _apply(lambda: rbac.create_namespaced_role_binding(NAMESPACE, {
        "metadata": {"name": "irisop:metrics-server:auth-reader"},
        "roleRef": {"kind": "Role", "name": "extension-apiserver-authentication-reader",
                    "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": [user]}))

    core = client.CoreV1Api(api)
    _apply(lambda: core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": NAME},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port, "protocol": "TCP"}]}}))
    slice_body = {
        "metadata": {"name": NAME, "labels": {"kubernetes.io/service-name": NAME,
                                              "endpointslice.kubernetes.io/managed-by": "irisop"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    discovery = client.DiscoveryV1Api(api)
    # Port and node IP can change between ups: replace rather than keep.
    _apply(lambda: discovery.create_namespaced_endpoint_slice(NAMESPACE, slice_body),
           lambda: discovery.replace_namespaced_endpoint_slice(NAME, NAMESPACE, slice_body))



def register_apiservice(api: Any, plane: ControlPlane, timeout: float = 30.0) -> None:
    """Register metrics.k8s.io once the Service routes to metrics-server.

    The aggregator checks a new APIService at once. Before kube-proxy has
    programmed the ClusterIP, this VM's egress proxy answers that check with
    a 404, the APIService is marked unavailable, and the re-check can come
    after the HPA test's 90 s (seen in a CI run). Waiting for the route first
    makes the first check pass.
    """
    import time
    import warnings

    import requests
    import urllib3
    from kubernetes import client

    cluster_ip = client.CoreV1Api(api).read_namespaced_service(NAME, NAMESPACE).spec.cluster_ip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # metrics-server itself answers 401/403 to an anonymous request; the
            # egress proxy's 404 (or a refused connection) means "not routed yet".
            # Only reachability is asked, nothing is trusted (its certificate
            # names the node IP, not the ClusterIP), so no verification and no warning.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                status = requests.get(f"https://{cluster_ip}:443/livez", verify=False, timeout=2).status_code
            if status != 404:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    ca = base64.b64encode(plane.pki.ca_cert.read_bytes()).decode()
    registration = client.ApiregistrationV1Api(api)
    apiservice = {
        "metadata": {"name": APISERVICE},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "caBundle": ca,
                 "service": {"namespace": NAMESPACE, "name": NAME, "port": 443},
                 "groupPriorityMinimum": 100, "versionPriority": 100},
    }
    _apply(lambda: registration.create_api_service(apiservice))


def unregister(api: Any) -> None:
    """Remove the APIService: an unavailable aggregated API breaks discovery
    (kubectl warnings, namespaces stuck in Terminating)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.ApiregistrationV1Api(api).delete_api_service(APISERVICE)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _apply(create: Any, replace: Any = None) -> None:
    """Create; on 409 keep the existing object (or replace it when asked)."""
    from kubernetes.client.rest import ApiException

    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise
        if replace is not None:
            replace()
