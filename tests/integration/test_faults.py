"""A fault suite against the operator as it is installed (issue 13 item 5).

On the real local node, with the operator running as a pod from the
kustomize install (tests/fixtures/incluster.py). One IrisModel serves for
the whole module; each case changes its model version while a fault is
injected, and must end Ready on the new version while a bounded background
load to the Service (ClusterIP, routed on this host) sees zero failed
requests: the old version answers throughout.

Faults: the operator process SIGKILLed right after the change; the API
server restarted, then a later change; etcd restarted, then a later change;
the S3 stand-in and the registry each frozen (SIGSTOP: connections hang, as
for an unreachable host) for 30 s during the change; kubelet and containerd
restarted on the node; five version changes in a row, each issued before
the previous one is done.
"""
from __future__ import annotations

import copy
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from irisop_operator import names
from tests.fixtures.aws import ensure_bucket, upload_dir
from tests.fixtures.cluster import _has_default_sa, wait_for
from tests.fixtures.load import ServiceLoad

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BUCKET = "iris-faults"
FAULT_SECONDS = 30


class Target:
    """The module's IrisModel and a way to give it a new model version."""

    def __init__(self, crd: Any, s3: Any, namespace: str, tmp: Path) -> None:
        self.crd, self.s3, self.namespace, self.tmp = crd, s3, namespace, tmp
        self.name = "iris"
        self.seed = 100

    def new_version(self) -> tuple[str, str]:
        """Train (a new seed) and upload; return (uri, sha256)."""
        from irisop_model.artifact import write_artifact
        from irisop_model.training import TrainParams, train

        self.seed += 1
        out = self.tmp / f"v{self.seed}"
        meta = write_artifact(out, train(TrainParams(seed=self.seed)), "joblib")
        return upload_dir(self.s3, out, BUCKET, f"{self.namespace}/v{self.seed}"), meta["sha256"]

    def change_to(self, uri: str) -> None:
        self.crd.patch_model(self.namespace, self.name, {"spec": {"model": {"uri": uri}}})

    def ready_on(self, sha: str, timeout: float = 240) -> None:
        def check() -> bool:
            obj = self.crd.get_model(self.namespace, self.name)
            status = obj.get("status", {})
            conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
            return (conds.get("Ready") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]
                    and status.get("model", {}).get("sha256") == sha and self._rolled_out())

        wait_for(check, timeout=timeout, interval=0.5, what=f"Ready on {sha[:12]}")

    def _rolled_out(self) -> bool:
        dep = self.crd.apps.read_namespaced_deployment(self.name, self.namespace)
        s = dep.status
        return (s.observed_generation == dep.metadata.generation
                and (s.updated_replicas or 0) == (s.replicas or 0) == (s.ready_replicas or 0) == dep.spec.replicas)

    @property
    def url(self) -> str:
        svc = self.crd.service(self.namespace, self.name)
        return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}/predict"


@pytest.fixture(scope="module")
def target(crd, installed_operator, stack_s3, tmp_path_factory) -> Iterator[Target]:
    from kubernetes import client

    s3 = stack_s3.client()
    ensure_bucket(s3, BUCKET)
    namespace = f"faults-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(crd.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    wait_for(lambda: _has_default_sa(core, namespace), timeout=30, what="default ServiceAccount")
    t = Target(crd, s3, namespace, tmp_path_factory.mktemp("faults"))
    uri, sha = t.new_version()
    doc = copy.deepcopy(yaml.safe_load((REPO / "deploy/examples/irismodel.yaml").read_text()))
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["model"]["uri"] = uri
    crd.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, doc)
    t.ready_on(sha)
    try:
        yield t
    finally:
        core.delete_namespace(namespace)


def change_under_fault(target: Target, fault: Callable[[], None], *, before_change: bool = False) -> None:
    """The common shape: load on, (fault), change, (fault), Ready on the new version, zero failures."""
    uri, sha = target.new_version()
    with ServiceLoad(target.url, max_seconds=400) as load:
        if before_change:
            fault()
            target.change_to(uri)
        else:
            target.change_to(uri)
            fault()
        target.ready_on(sha)
        wait_for(lambda: load.seen(sha), timeout=30, what="answers from the new version")
    assert load.ok > 20, f"too few requests answered ({load.ok})"
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:3]}"


@pytest.fixture
def frozen() -> Iterator[Callable[[Any, float], None]]:
    """SIGSTOP a process group for a while (always resumed, even if the test fails)."""
    stopped: list[int] = []

    def freeze(process: Any, seconds: float) -> None:
        pid = process.pid()
        assert pid is not None, f"{process.name} is not running"
        os.killpg(pid, signal.SIGSTOP)
        stopped.append(pid)
        time.sleep(seconds)  # the fault's length is the point of this case
        os.killpg(pid, signal.SIGCONT)
        stopped.remove(pid)

    yield freeze
    for pid in stopped:
        os.killpg(pid, signal.SIGCONT)


def test_operator_sigkilled_right_after_the_change(target, installed_operator):
    def kill_operator() -> None:
        pids = [pid for pid, cmd in _processes() if "operator run" in cmd and "irisop" in cmd
                and _in_container(pid)]
        assert pids, "no in-cluster operator process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    change_under_fault(target, kill_operator)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_component_restarted_then_a_later_change(target, kube_cluster, component):
    """A restart drops every watch stream; the change after it must still be handled."""
    plane = kube_cluster.plane
    (process,) = [p for p in plane.processes() if p.name == component]
    process.stop()
    plane.up()
    plane.wait_ready()
    change_under_fault(target, lambda: None)


def test_s3_unreachable_for_30s_during_the_change(target, stack_s3, frozen):
    change_under_fault(target, lambda: frozen(stack_s3.process, FAULT_SECONDS))


def test_registry_unreachable_for_30s_during_the_change(target, stack_registry_process, frozen):
    change_under_fault(target, lambda: frozen(stack_registry_process[1], FAULT_SECONDS))


def test_kubelet_and_containerd_restarted(target, kube_node):
    node = kube_node.node
    if node is None:
        pytest.skip("the node is not run by this session")

    def restart_node_agents() -> None:
        containerd, kubelet, _proxy = node.processes()
        kubelet.stop()
        containerd.stop()
        node.up()  # starts what is missing; running pods (their shims) were never stopped

    change_under_fault(target, restart_node_agents, before_change=True)


def test_five_changes_in_a_row(target):
    versions = [target.new_version() for _ in range(5)]
    with ServiceLoad(target.url, max_seconds=400) as load:
        for uri, _sha in versions:
            target.change_to(uri)
            time.sleep(1)  # each change lands while the previous one is still rolling out
        last_sha = versions[-1][1]
        target.ready_on(last_sha)
        wait_for(lambda: load.seen(last_sha), timeout=30, what="answers from the last version")
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:3]}"


def _processes() -> list[tuple[int, str]]:
    from irisop_deploy.local.process import command_lines

    return [(pid, cmdline.replace(b"\0", b" ").decode(errors="replace")) for pid, cmdline in command_lines()]


def _in_container(pid: int) -> bool:
    """A process in a pod has its own mount namespace (not the host's)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False
