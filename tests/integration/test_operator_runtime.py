"""Operator process concerns against the real control plane: leader election
(kopf peering) with two replicas, liveness, and Prometheus metrics."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.fixtures.aws import fake_artifact, upload_dir
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
        # other's record, both may act (harmless, every write is an idempotent
        # apply). The claim under test is about the settled state.
        wait_for(lambda: any("Pausing operations in favour of" in p.log_tail(500) for p in (first, second)),
                 timeout=60, what="the lower-priority replica to pause")
        try:
            s3.create_bucket(Bucket="peering")
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        fake_artifact(tmp_path / "a", seed=b"peering")
        uri = upload_dir(s3, tmp_path / "a", "peering", namespace)
        crd.create_model(namespace, "iris", {"model": {"uri": uri}, "image": IMAGE})
        crd.wait_condition(namespace, "iris", "ArtifactReady", "True", timeout=60)
        handled = [p.name for p in (first, second) if "Handler 'reconcile_model' succeeded" in p.log_tail(500)]
        assert len(handled) == 1, f"exactly one replica must handle the object, got {handled}"

        # liveness and metrics of a running replica
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "irisop_reconciles_total" in metrics
        assert "irisop_api_writes_total" in metrics
    finally:
        first.stop()
        second.stop()
        kubectl(kube_cluster, "delete", "clusterkopfpeering", peering, "--ignore-not-found")
