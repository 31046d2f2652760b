"""Operator process concerns against the real control plane: leader election
(kopf peering) with two replicas, liveness, and Prometheus metrics."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.fixtures.aws import ensure_bucket, fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from irisop_deploy.local.process import free_port
from tests.fixtures.operator import kubectl, operator_process

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
IMAGE = "registry.invalid/iris@sha256:" + "f" * 64


def test_two_replicas_with_peering_handle_each_object_once(crd, kube_cluster, operator_env, namespace, s3, tmp_path):
    out = kubectl(kube_cluster, "apply", "--server-side", "-f", str(REPO / "deploy/base/kopf-peering-crds.yaml"))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: kubectl(kube_cluster, "get", "crd", "clusterkopfpeerings.kopf.dev").returncode == 0,
             what="peering CRD")
    peering = f"irisop-{namespace}"
    kubectl(kube_cluster, "wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=30s")
    out = kubectl(kube_cluster, "apply", "-f", "-",
                  input=f"apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {{name: {peering}}}\n")
    assert out.returncode == 0, out.stderr

    env = {**operator_env, "IRISOP_PEERING": peering}
    ports = {"op-a": free_port(), "op-b": free_port()}
    first = operator_process("op-a", env, tmp_path, metrics_port=ports["op-a"])
    second = operator_process("op-b", env, tmp_path, metrics_port=ports["op-b"])
    first.start()
    second.start()
    try:
        # kopf peering settles after start-up: until each replica has seen the
        # other's record, both may act (harmless: every write is an idempotent
        # apply). The claim under test is about the settled state, where the
        # replica with the highest priority is the only active one.
        wait_for(lambda: _settled_leader(first, second), timeout=60, what="peering to settle on one leader")
        ensure_bucket(s3, "peering")
        fake_artifact(tmp_path / "a", seed=b"peering")
        uri = upload_dir(s3, tmp_path / "a", "peering", namespace)
        crd.create_model(namespace, "iris", {"model": {"uri": uri}, "image": IMAGE})
        crd.wait_condition(namespace, "iris", "ArtifactReady", "True", timeout=60)
        # The one INFO line the operator logs per decision (kopf's own
        # handler lines are DEBUG unless --verbose).
        mine = f"[{namespace}/iris] ModelVersionReady:"
        leader = _settled_leader(first, second)
        handled = [p.name for p in (first, second) if mine in p.log_tail(10**6)]
        assert handled == [leader], f"exactly the leader must handle the object: {handled}"
        standby = next(name for name in ports if name != leader)

        # A deleted child is heard by both replicas' own watch caches (outside
        # kopf, so peering does not pause them); only the leader restores it.
        heard_before = _metric(ports[standby], "irisop_child_events_total", kind="Service", action="ignored")
        applied_before = _metric(ports[leader], "irisop_api_writes_total", verb="apply", kind="Service")
        assert kubectl(kube_cluster, "-n", namespace, "delete", "service", "iris").returncode == 0
        wait_for(lambda: _metric(ports[leader], "irisop_api_writes_total", verb="apply", kind="Service")
                 > applied_before, timeout=30, what="the leader to restore the Service")
        wait_for(lambda: _metric(ports[standby], "irisop_child_events_total", kind="Service", action="ignored")
                 > heard_before, timeout=30, what="the standby to hear the deletion")
        assert _metric(ports[standby], "irisop_api_writes_total") == 0, "the standby must write nothing"
        assert kubectl(kube_cluster, "-n", namespace, "get", "service", "iris").returncode == 0

        # liveness and metrics of a running replica
        metrics = requests.get(f"http://127.0.0.1:{ports[leader]}/metrics", timeout=5).text
        assert "irisop_reconciles_total" in metrics
        assert "irisop_api_writes_total" in metrics
    finally:
        first.stop()
        second.stop()
        kubectl(kube_cluster, "delete", "clusterkopfpeering", peering, "--ignore-not-found")


def _metric(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``, from a replica's /metrics."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _settled_leader(*replicas) -> str | None:
    """The replica that is active and outranks every other, which are all paused; else None."""
    state = {}
    for proc in replicas:
        log = proc.log_tail(10**6)
        found = re.search(r"peering \S+ with priority (\d+)", log)
        if found is None:
            return None  # not started far enough to have a priority
        last = max(log.rfind("Resuming operations"), log.rfind("Pausing operations"))
        state[proc.name] = (int(found[1]), last != -1 and log.startswith("Resuming", last))
    leader = max(state, key=lambda name: state[name][0])
    active = [name for name, (_, on) in state.items() if on]
    return leader if active == [leader] else None
