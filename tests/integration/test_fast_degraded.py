"""Fast Degraded and the quality gate through the real API server (issues 13.2, 13.4).

The operator runs as a real process against the real control plane; the
pod's refusal comes from a real `irisop serve` process. The control-plane
tier has no kubelet, so the test plays its part twice: it reports the surge
pod Running but unready through pods/status, and it serves the container
log over HTTPS the way a kubelet does (/containerLogs/..., a serving
certificate from the cluster CA), so the API server's own pods/log proxy
hands the operator the serving process's log.
"""
from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from irisop_operator import names
from irisop_serving.contract import CHECK_SET_INVALID, ENV_MIN_ACCURACY, QUALITY_GATE_FAILED
from tests.fixtures.aws import ensure_bucket, fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import FAKE_NODE, kubectl
from tests.fixtures.quality import replace_check_set, train_good, train_on_one_feature
from tests.fixtures.serving import Server

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
BUCKET = "iris-fast-degraded"


class FakeKubeletLogs:
    """The kubelet's /containerLogs endpoint, serving one log source per pod name."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.logs: dict[str, Callable[[], str]] = {}
        self.reads: dict[str, int] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = self.path.split("?")[0].strip("/").split("/")
                source = outer.logs.get(parts[2]) if len(parts) == 4 and parts[0] == "containerLogs" else None
                if source is None:
                    self.send_error(404)
                    return
                outer.reads[parts[2]] = outer.reads.get(parts[2], 0) + 1
                body = source().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def kubelet_logs(crd, kube_cluster) -> Iterator[FakeKubeletLogs]:
    if kube_cluster.plane is None:
        pytest.skip("needs the project's own control plane (its CA signs the fake kubelet's certificate)")
    from irisop_deploy.local.pki import CertSpec

    cert, key = kube_cluster.plane.pki.ensure_leaf(CertSpec(
        "fake-kubelet-serving", FAKE_NODE, ip_addresses=("127.0.0.1",), server=True, client=False))
    logs = FakeKubeletLogs(cert, key)
    crd.ensure_fake_node()
    crd.core.patch_node_status(FAKE_NODE, {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": FAKE_NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": logs.port}}}})
    yield logs
    logs.stop()


@pytest.fixture(scope="module")
def refusing_servers(tmp_path_factory) -> Iterator[dict[str, Server]]:
    """Real serving processes whose logs the fake kubelet hands out."""
    from concurrent.futures import ThreadPoolExecutor

    poor = tmp_path_factory.mktemp("poor") / "model"
    train_on_one_feature(poor)
    good = tmp_path_factory.mktemp("good") / "model"
    train_good(good)
    servers = {
        "poor": Server(poor, tmp_path_factory.mktemp("serve-poor"), env={ENV_MIN_ACCURACY: "0.9"}),
        "good": Server(good, tmp_path_factory.mktemp("serve-good"), env={ENV_MIN_ACCURACY: "0.9"}),
    }
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Server.start, servers.values()))
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def bucket(s3):
    ensure_bucket(s3, BUCKET)
    return BUCKET


def _artifact(s3, bucket, tmp_path, namespace, version):
    meta = fake_artifact(tmp_path / version, seed=f"{namespace}-{version}".encode())
    return upload_dir(s3, tmp_path / version, bucket, f"{namespace}/{version}"), meta["sha256"]


def _pods_of(crd, namespace, sha):
    return [p for p in crd.core.list_namespaced_pod(namespace, label_selector=names.selector_string("iris")).items
            if (p.metadata.annotations or {}).get(names.ANNOTATION_MODEL_SHA) == sha and not p.metadata.deletion_timestamp]


def _report_running_unready(crd, namespace, pod) -> None:
    """What a kubelet reports for a container that started but fails readiness."""
    from kubernetes import client

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not pod.spec.node_name:
        crd.core.create_namespaced_binding(namespace, client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(kind="Node", name=FAKE_NODE)), _preload_content=False)
    crd.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Running", "startTime": now,
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                       {"type": "Ready", "status": "False", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{"name": names.CONTAINER_NAME, "ready": False, "restartCount": 0, "started": True,
                               "image": IMAGE, "imageID": "", "state": {"running": {"startedAt": now}}}]}})


def _serving_then_change(crd, s3, bucket, tmp_path, namespace, **model_extra):
    uri1, sha1 = _artifact(s3, bucket, tmp_path, namespace, "v1")
    spec = {"model": {"uri": uri1, **model_extra}, "image": IMAGE,
            "serving": {"progressDeadlineSeconds": 600}}  # only the fast path can report within the test
    crd.create_model(namespace, "iris", spec)
    wait_for(lambda: crd.make_pods_ready(namespace, names.selector_string("iris")) >= 1, what="a v1 pod")
    crd.wait_condition(namespace, "iris", "Ready", "True")
    uri2, sha2 = _artifact(s3, bucket, tmp_path, namespace, "v2")
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": uri2}}})
    surge = wait_for(lambda: _pods_of(crd, namespace, sha2), what="the surge pod of v2")[0]
    return sha1, sha2, surge


def test_a_pod_refusing_its_model_degrades_at_once_and_the_rollout_stays_held(
        only_fake_node, running_operator, kubelet_logs, refusing_servers, namespace, s3, bucket, tmp_path):
    crd = only_fake_node
    sha1, sha2, surge = _serving_then_change(crd, s3, bucket, tmp_path, namespace)
    server = refusing_servers["poor"]
    wait_for(lambda: "model not ready" in server.log(), timeout=60, what="the serving process's refusal")
    kubelet_logs.logs[surge.metadata.name] = server.log

    _report_running_unready(crd, namespace, surge)
    reported = time.monotonic()
    degraded = crd.wait_condition(namespace, "iris", "Degraded", "True", reason=QUALITY_GATE_FAILED, timeout=10)
    took = time.monotonic() - reported
    assert degraded["message"] == (f"pod {surge.metadata.name}: model not ready: held-out accuracy 0.667 on 30 rows "
                                   "is below minAccuracy 0.900; model.json claims 0.667")
    print(f"Degraded {took:.1f} s after the pod reported (deadline 600 s)")
    wait_for(lambda: crd.events(namespace, QUALITY_GATE_FAILED), timeout=10, what="a Warning Event")

    # Held: the Deployment still asks for v2, the v1 pod still serves, no rollback.
    dep = crd.deployment(namespace, "iris")
    assert dep.spec.template.metadata.annotations[names.ANNOTATION_MODEL_SHA] == sha2
    assert [p.metadata.name for p in _pods_of(crd, namespace, sha1)], "the v1 pod is still there"
    assert crd.condition(namespace, "iris", "ArtifactReady")["status"] == "True"


def test_a_transient_refusal_waits_for_the_deadline(only_fake_node, running_operator, kubelet_logs, namespace, s3,
                                                    bucket, tmp_path):
    crd = only_fake_node
    _, _, surge = _serving_then_change(crd, s3, bucket, tmp_path, namespace)
    line = {"text": "INFO loading the model\n"}
    kubelet_logs.logs[surge.metadata.name] = lambda: line["text"]
    _report_running_unready(crd, namespace, surge)
    pod = surge.metadata.name
    # While the pod says nothing, the operator keeps looking (a positive signal: the read count moves) ...
    wait_for(lambda: kubelet_logs.reads.get(pod, 0) >= 2, timeout=20, what="the operator reading the log again")
    # ... and once it says something transient, the operator has read that too, and Degraded stays False.
    line["text"] = "ERROR irisop model not ready: loading model.joblib in a child process failed: timed out\n"
    seen = kubelet_logs.reads[pod]
    wait_for(lambda: kubelet_logs.reads.get(pod, 0) > seen, timeout=20, what="the operator reading the transient line")
    degraded = crd.condition(namespace, "iris", "Degraded")
    assert degraded["status"] == "False", degraded


def test_min_accuracy_reaches_the_pod_and_a_bad_check_set_never_does(
        crd, running_operator, namespace, s3, bucket, tmp_path, kube_cluster):
    good = tmp_path / "good"
    sha = train_good(good)["sha256"]
    uri = upload_dir(s3, good, bucket, f"{namespace}/good")
    crd.create_model(namespace, "iris", {"model": {"uri": uri, "minAccuracy": 0.95}, "image": IMAGE})
    dep = wait_for(lambda: crd.deployment(namespace, "iris"), what="Deployment")
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert float(env[ENV_MIN_ACCURACY]) == 0.95

    bad = tmp_path / "bad"
    train_good(bad)
    doc = json.loads((bad / "holdout.json").read_text())
    replace_check_set(bad, {**doc, "rows": [row[:3] for row in doc["rows"]]})
    crd.patch_model(namespace, "iris", {"spec": {"model": {"uri": upload_dir(s3, bad, bucket, f"{namespace}/bad")}}})
    cond = crd.wait_condition(namespace, "iris", "ArtifactReady", "False", reason=CHECK_SET_INVALID)
    assert "row 0 is not 4 finite numbers" in cond["message"]
    assert crd.deployment(namespace, "iris").metadata.annotations[names.ANNOTATION_MODEL_SHA] == sha

    for value in ("1.5", "-0.1"):
        out = kubectl(kube_cluster, "-n", namespace, "patch", "irismodel", "iris", "--type=merge",
                      "-p", f'{{"spec": {{"model": {{"minAccuracy": {value}}}}}}}')
        assert out.returncode != 0 and "spec.model.minAccuracy" in out.stderr, out.stderr
