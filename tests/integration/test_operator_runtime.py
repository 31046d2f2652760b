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
    metrics_port = free_port()
    first = operator_process("op-a", env, tmp_path, metrics_port=metrics_port)
    second = operator_process("op-b", env, tmp_path)
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
        handled = [p.name for p in (first, second) if mine in p.log_tail(10**6)]
        assert handled == [_settled_leader(first, second)], f"exactly the leader must handle the object: {handled}"

        # liveness and metrics of a running replica
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "irisop_reconciles_total" in metrics
        assert "irisop_api_writes_total" in metrics
    finally:
        first.stop()
        second.stop()
        kubectl(kube_cluster, "delete", "clusterkopfpeering", peering, "--ignore-not-found")


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
