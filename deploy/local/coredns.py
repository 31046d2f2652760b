"""Cluster DNS for the local node: CoreDNS as kops deploys it.

kops runs CoreDNS as a Deployment in kube-system behind a Service named
kube-dns, and points every kubelet's `clusterDNS` at that Service. Without
it `status.url` (http://<name>.<namespace>.svc.cluster.local) resolves
nowhere and the kubelet warns `MissingClusterDNS` for every pod.

The image is the CoreDNS binary built from its Go module at the version in
deploy/versions.env, packed into a one-layer image and imported into the
node's containerd (like the pause image): nothing is pulled from a registry
the machine cannot reach. Builders here are pure; `apply` does the I/O.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import versions
from . import binaries, images
from .nodeconfig import CLUSTER_DNS_IP
from .process import ProcessError, cache_dir

NAMESPACE = "kube-system"
NAME = "coredns"
SERVICE = "kube-dns"
IMAGE = f"localhost/irisop/coredns:{versions.coredns()}"
# Unprivileged ports: the container runs as nobody with no capabilities;
# the Service maps the well-known 53 onto them.
DNS_PORT = 1053
HEALTH_PORT = 8080
READY_PORT = 8181
LABELS = {"k8s-app": "kube-dns", "app.kubernetes.io/name": "coredns"}

# `kubernetes` answers for the cluster domain and reverse zones; anything
# else goes to the node's resolvers (dnsPolicy: Default gives the pod the
# node's resolv.conf). No `loop` plugin: it guards against a node resolver
# on loopback, and it would send a probe query upstream at every start.
COREFILE = f""".:{DNS_PORT} {{
    errors
    health :{HEALTH_PORT}
    ready :{READY_PORT}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    reload
}}
"""


class DNSError(ProcessError):
    """CoreDNS did not become available."""


def image_archive() -> Path:
    binary = binaries.coredns_binary()
    return images.single_binary_archive(binary, IMAGE, cache_dir() / "images" / f"coredns-{versions.coredns()}.tar",
                                        entrypoint=["/coredns"])


def manifests() -> list[dict[str, Any]]:
    """ServiceAccount, RBAC, Corefile, Deployment and the kube-dns Service."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:coredns", "labels": LABELS},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns", "labels": LABELS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        _deployment(meta),
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": LABELS},
            "spec": {
                "clusterIP": CLUSTER_DNS_IP,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def _deployment(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "dnsPolicy": "Default",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "coredns",
                        "image": IMAGE,
                        # Imported into the node's containerd, never pulled.
                        "imagePullPolicy": "Never",
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [
                            {"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": HEALTH_PORT},
                                          "initialDelaySeconds": 10, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                      "limits": {"memory": "170Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": NAME}}],
                },
            },
        },
    }


def apply(api: Any) -> None:
    """Server-side apply every object (idempotent; a second `up` changes nothing)."""
    from kubernetes import dynamic

    client = dynamic.DynamicClient(api)
    for obj in manifests():
        resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        client.server_side_apply(resource, body=obj, name=obj["metadata"]["name"],
                                 namespace=obj["metadata"].get("namespace"), field_manager="irisop-local",
                                 force_conflicts=True)


def wait_available(api: Any, timeout: float = 120.0) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = apps.read_namespaced_deployment_status(NAME, NAMESPACE).status
        if (status.available_replicas or 0) >= 1:
            return
        time.sleep(0.5)
    raise DNSError(f"CoreDNS not available after {timeout:.0f}s; "
                   f"see `kubectl -n {NAMESPACE} describe deployment {NAME}`")
