"""The operator as users install it (issue 9), on the real local node.

Installed with `kubectl apply --server-side -k` of deploy/overlays/local
(tests/fixtures/incluster.py), running as a pod under its ServiceAccount and
ClusterRole, talking to the API server through the `kubernetes` Service,
to the S3 stand-in and the registry on the stack's own address. Checked:
status.url answers from a pod through cluster DNS; the RBAC is enough for a
change to every child kind (and the log has no Forbidden); leader election
hands a pending change to the other replica; a deleted operator pod loses
nothing; a rollout restart writes nothing; no stack port listens on the
host's external interface.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from irisop_operator import names
from tests.fixtures.aws import ensure_bucket, upload_dir
from tests.fixtures.cluster import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
REFERENCE_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]
CLASSES = ["setosa", "versicolor", "virginica"]
BUCKET = "iris-incluster"


@pytest.fixture
def s3(stack_s3):
    client = stack_s3.client()
    ensure_bucket(client, BUCKET)
    return client


def upload_model(s3: Any, tmp: Path, prefix: str, seed: int) -> tuple[str, str]:
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    out = tmp / prefix.replace("/", "-")
    meta = write_artifact(out, train(TrainParams(seed=seed)), "joblib")
    return upload_dir(s3, out, BUCKET, prefix), meta["sha256"]


def create_sample(crd: Any, namespace: str, uri: str) -> str:
    """deploy/examples/irismodel.yaml as users apply it, in the test's namespace."""
    doc = copy.deepcopy(yaml.safe_load((REPO / "deploy/examples/irismodel.yaml").read_text()))
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["model"]["uri"] = uri
    crd.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, doc)
    return doc["metadata"]["name"]


def ready_on(crd: Any, namespace: str, name: str, sha: str, timeout: float = 180) -> dict:
    def check() -> dict | None:
        obj = crd.get_model(namespace, name)
        status = obj.get("status", {})
        conds = {c["type"]: c for c in status.get("conditions", [])}
        ready = conds.get("Ready", {}).get("status") == "True"
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if ready and current and status.get("model", {}).get("sha256") == sha else None

    return wait_for(check, timeout=timeout, interval=0.5, what=f"{namespace}/{name} Ready on {sha[:12]}")


def test_sample_is_ready_and_status_url_answers_from_a_pod(crd, installed_operator, namespace, s3, tmp_path):
    from irisop_deploy.local.incluster_probe import predict_from_pod

    uri, sha = upload_model(s3, tmp_path, f"{namespace}/v1", seed=42)
    name = create_sample(crd, namespace, uri)
    status = ready_on(crd, namespace, name, sha)["status"]
    assert status["url"] == f"http://{name}.{namespace}.svc.cluster.local"
    # A client pod: CoreDNS resolves the Service name, kube-proxy routes the ClusterIP.
    answer = predict_from_pod(installed_operator.api, namespace, status["image"], f"{status['url']}/predict",
                              REFERENCE_ROWS)
    assert answer["predictions"] == CLASSES
    assert answer["model_sha256"] == sha


def test_rbac_covers_a_change_to_every_child_kind(crd, installed_operator, namespace, s3, tmp_path):
    """Delete each child: the operator (through its own ClusterRole) puts it back."""
    uri, sha = upload_model(s3, tmp_path, f"{namespace}/v1", seed=42)
    name = create_sample(crd, namespace, uri)
    ready_on(crd, namespace, name, sha)
    # Turn on autoscaling so that an HPA exists too (and the PDB with >1 replica).
    crd.patch_model(namespace, name, {"spec": {"autoscaling": {"enabled": True, "minReplicas": 2}}})
    from kubernetes import client

    autoscaling = client.AutoscalingV2Api(crd.api)
    policy = client.PolicyV1Api(crd.api)
    readers = {
        "Deployment": lambda: crd.apps.read_namespaced_deployment(name, namespace),
        "Service": lambda: crd.core.read_namespaced_service(name, namespace),
        "HorizontalPodAutoscaler": lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(name, namespace),
        "PodDisruptionBudget": lambda: policy.read_namespaced_pod_disruption_budget(name, namespace),
    }
    deleters = {
        "Deployment": lambda: crd.apps.delete_namespaced_deployment(name, namespace),
        "Service": lambda: crd.core.delete_namespaced_service(name, namespace),
        "HorizontalPodAutoscaler": lambda: autoscaling.delete_namespaced_horizontal_pod_autoscaler(name, namespace),
        "PodDisruptionBudget": lambda: policy.delete_namespaced_pod_disruption_budget(name, namespace),
    }
    for kind, read in readers.items():
        wait_for(lambda read=read: _exists(read), timeout=60, what=f"{kind} {name}")
    for kind, read in readers.items():
        before = read().metadata.uid
        deleters[kind]()
        wait_for(lambda read=read, before=before: (_uid(read) or before) != before, timeout=60,
                 what=f"the operator to re-create the {kind}")
    # An RBAC denial names the ServiceAccount ("User \"system:serviceaccount:...\" cannot ...").
    # (A 403 for an Event into a namespace being deleted, left by an earlier test, is not one.)
    denials = [line for line in installed_operator.logs().splitlines()
               if "orbidden" in line and "system:serviceaccount:" in line]
    assert denials == []


def test_a_deleted_operator_pod_loses_no_change(crd, installed_operator, namespace, s3, tmp_path):
    from kubernetes import client

    from irisop_deploy.local.install import NAMESPACE

    uri1, sha1 = upload_model(s3, tmp_path, f"{namespace}/v1", seed=42)
    name = create_sample(crd, namespace, uri1)
    ready_on(crd, namespace, name, sha1)
    uri2, sha2 = upload_model(s3, tmp_path, f"{namespace}/v2", seed=7)
    crd.patch_model(namespace, name, {"spec": {"model": {"uri": uri2}}})
    core = client.CoreV1Api(installed_operator.api)
    for pod in installed_operator.pods():  # mid-change: the new version is not served yet
        core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
    ready_on(crd, namespace, name, sha2, timeout=240)


def test_the_other_replica_takes_a_change_when_the_leader_goes(crd, installed_operator, namespace, s3, tmp_path):
    from kubernetes import client

    from irisop_deploy.local.install import NAMESPACE

    installed_operator.reinstall(replicas=2)
    try:
        uri1, sha1 = upload_model(s3, tmp_path, f"{namespace}/v1", seed=42)
        name = create_sample(crd, namespace, uri1)
        ready_on(crd, namespace, name, sha1)
        leader = _leader(installed_operator)
        uri2, sha2 = upload_model(s3, tmp_path, f"{namespace}/v2", seed=7)
        core = client.CoreV1Api(installed_operator.api)
        # Graceful delete: kopf withdraws its peering record on the way out.
        core.delete_namespaced_pod(leader, NAMESPACE)
        crd.patch_model(namespace, name, {"spec": {"model": {"uri": uri2}}})
        ready_on(crd, namespace, name, sha2, timeout=240)
        handled_by = {p.metadata.name for p in installed_operator.pods()
                      if f"[{namespace}/{name}]" in _log(installed_operator, p.metadata.name)}
        assert handled_by and leader not in handled_by
    finally:
        installed_operator.reinstall(replicas=1)


def test_rollout_restart_of_the_operator_writes_nothing(crd, installed_operator, namespace, s3, tmp_path, kube_cluster):
    from tests.fixtures.operator import kubectl

    from irisop_deploy.local.install import DEPLOYMENT, NAMESPACE, scrape_metrics

    uri, sha = upload_model(s3, tmp_path, f"{namespace}/v1", seed=42)
    name = create_sample(crd, namespace, uri)
    ready_on(crd, namespace, name, sha)
    wait_for(lambda: _quiet(crd, namespace, name), timeout=60, what="the rollout to settle")
    before = _versions(crd, namespace, name)
    old = {p.metadata.name for p in installed_operator.pods()}
    kubectl(kube_cluster, "-n", NAMESPACE, "rollout", "restart", f"deployment/{DEPLOYMENT}")
    kubectl(kube_cluster, "-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=180s")
    wait_for(lambda: not old & {p.metadata.name for p in installed_operator.pods()}, timeout=60,
             what="the old operator pod to go")
    models = len(crd.custom.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)["items"])

    def resumed() -> bool:
        # Positive signal: the new process has reconciled (resumed) every IrisModel.
        pods = installed_operator.running_pods()
        if not pods:
            return False
        metrics = scrape_metrics(pods[0].status.pod_ip)
        unseen = metrics.get("irisop_models_unseen")
        if unseen is not None:
            return unseen == 0
        return sum(v for k, v in metrics.items() if k.startswith("irisop_reconciles_total{")) >= models

    wait_for(resumed, timeout=90, what="the new operator to resume every IrisModel")
    assert _versions(crd, namespace, name) == before


def test_no_stack_port_listens_on_the_external_interface(installed_operator):
    """Every process of the stack binds loopback or the stack's own address."""
    from irisop_deploy.local import network

    external = set(network.external_addresses())
    owners = network.socket_owners()
    # The programs the stack starts (by executable; moto_server runs under python).
    ours = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "etcd",
            "containerd", "metrics-server", "docker-registry", "moto_server", "coredns", "weed"}
    offenders = []
    for address, port, inode in network.listening_sockets():
        pid, cmdline = owners.get(inode, (0, ""))
        programs = {Path(arg).name for arg in cmdline.split()[:2]}
        if not programs & ours:
            continue
        if address in external or address in ("0.0.0.0", "::"):
            offenders.append(f"{address}:{port} {cmdline[:100]}")
    assert offenders == []


def _exists(read) -> bool:
    return _uid(read) is not None


def _uid(read) -> str | None:
    from kubernetes.client.rest import ApiException

    try:
        return read().metadata.uid
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _versions(crd: Any, namespace: str, name: str) -> dict[str, str]:
    """resourceVersion of the IrisModel and each child: any write moves one."""
    from kubernetes import client

    out = {"irismodel": crd.get_model(namespace, name)["metadata"]["resourceVersion"],
           "deployment": crd.apps.read_namespaced_deployment(name, namespace).metadata.resource_version,
           "service": crd.core.read_namespaced_service(name, namespace).metadata.resource_version}
    pdb = client.PolicyV1Api(crd.api).list_namespaced_pod_disruption_budget(namespace).items
    out.update({f"pdb/{p.metadata.name}": p.metadata.resource_version for p in pdb})
    # Events about the IrisModel (the operator's); a repeat bumps `count`.
    out["events"] = str(sorted((e.metadata.name, e.count or 1) for e in crd.core.list_namespaced_event(namespace).items
                               if e.involved_object.kind == "IrisModel"))
    return out


def _quiet(crd: Any, namespace: str, name: str) -> bool:
    dep = crd.apps.read_namespaced_deployment(name, namespace)
    status = dep.status
    return (status.observed_generation == dep.metadata.generation
            and (status.updated_replicas or 0) == (status.replicas or 0) == (status.ready_replicas or 0))


def _log(installed: Any, pod: str) -> str:
    from kubernetes import client

    from irisop_deploy.local.install import NAMESPACE

    return str(client.CoreV1Api(installed.api).read_namespaced_pod_log(pod, NAMESPACE))


def _leader(installed: Any) -> str:
    """The replica kopf lets act: the highest peering priority (each logs its own)."""
    import re

    def priorities() -> dict[str, int] | None:
        found = {}
        for pod in installed.running_pods():
            match = re.search(r"peering \S+ with priority (\d+)", _log(installed, pod.metadata.name))
            if match:
                found[pod.metadata.name] = int(match.group(1))
        return found if len(found) == 2 else None

    found = wait_for(priorities, timeout=120, what="two operator replicas to log their peering priority")
    return max(found, key=found.get)
