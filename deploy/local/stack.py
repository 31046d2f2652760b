"""`irisop up` / `irisop down`: the whole product on one machine.

Every step is idempotent and reports what it did, so a second `up` only
checks and finishes in seconds. The sample IrisModel is applied unchanged:
the model is uploaded to exactly the bucket and prefix it names, in the
local S3 stand-in.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
import yaml

from . import install, network
from .controlplane import ControlPlane
from .process import ManagedProcess, state_dir

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "deploy" / "examples" / "irismodel.yaml"
REGISTRY = network.REGISTRY
RUNTIME_REPOSITORY = f"{REGISTRY}/irisop/runtime"
REFERENCE_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]


class StackError(RuntimeError):
    """A step failed; the message says which and where its log is."""


@dataclass
class Progress:
    """One line per step: `[3/9] node ... ready (4.1s)`."""

    total: int
    out: Any = sys.stderr
    done: int = 0

    def step(self, title: str, fn: Callable[[], str | None]) -> Any:
        self.done += 1
        self.out.write(f"[{self.done}/{self.total}] {title} ... ")
        self.out.flush()
        started = time.monotonic()
        try:
            result = fn()
        except Exception:
            self.out.write("failed\n")
            raise
        note = result if isinstance(result, str) else "ok"
        self.out.write(f"{note} ({time.monotonic() - started:.1f}s)\n")
        return result


def home() -> Path:
    return state_dir() / "stack"


def stack_plane(home_dir: Path | None = None, *, build: bool = True) -> ControlPlane:
    """The stack's control plane: on the stack's own address (port 6443 for
    the default home), so pods reach it through the `kubernetes` Service as
    on a kops cluster. Another home gets a free port on the same address."""
    return ControlPlane(home_dir, build=build, address=network.STACK_ADDRESS,
                        apiserver_port=network.APISERVER_PORT if home_dir is None else None)


class Stack:
    def __init__(self, extra_ca: Path | None = None) -> None:
        from irisop_deploy.local.node import Node

        self.plane = stack_plane()
        self.node = Node(self.plane)
        self.extra_ca = extra_ca
        self.kubeconfig: Path | None = None

    # -- processes ---------------------------------------------------------
    def registry(self) -> ManagedProcess:
        from .registry import local_registry

        return local_registry(network.REGISTRY_PORT, home=state_dir() / "registry", host=network.STACK_ADDRESS)

    def s3(self) -> ManagedProcess:
        # SeaweedFS, on disk under the state dir: uploads survive `down` + `up`.
        from .s3store import s3_store

        return s3_store(network.S3_PORT, host=network.STACK_ADDRESS, home=state_dir() / "s3store")

    # -- steps ---------------------------------------------------------------
    def up(self, timeout: float = 300) -> dict[str, Any]:
        progress = Progress(total=11)
        progress.step("Kubernetes, containerd and CoreDNS binaries (built once from the Go module proxy, cached)",
                      self._binaries)
        progress.step(f"stack network: interface {network.STACK_INTERFACE} with {network.STACK_ADDRESS}",
                      lambda: _started(network.ensure_interface() and None))
        self.kubeconfig = progress.step("control plane: etcd, kube-apiserver, controller-manager, scheduler",
                                        self.plane.up)
        # Registry and S3 before the node: after a restart the kubelet pulls
        # the operator's image again as soon as it runs.
        progress.step(f"local OCI registry on {REGISTRY}", lambda: _started(self.registry().start()))
        progress.step(f"S3 stand-in on {network.S3_ENDPOINT}", lambda: _started(self.s3().start()))
        progress.step("node: containerd, kubelet, kube-proxy, metrics-server, CoreDNS", self._node)
        runtime = progress.step("BentoML runtime image (built once per serving version)", self._runtime_image)
        operator_image = progress.step("operator image (Dockerfile, built once per source version)",
                                       self._operator_image)
        # The model goes up before the operator starts: an operator resuming an
        # IrisModel must find it. After a restart it is already there (the S3
        # stand-in keeps its data on disk) and is not uploaded again.
        model = progress.step("train the Iris model and upload it to S3", self._model)
        progress.step("install: kubectl apply --server-side -k (CRD, RBAC, operator Deployment)",
                      lambda: self._install(operator_image, runtime))
        result = progress.step("apply deploy/examples/irismodel.yaml and wait until Ready",
                               lambda: self._apply_and_wait(timeout))
        return {"kubeconfig": str(self.kubeconfig), "model": model, "operator_image": operator_image, **result}

    def _node(self) -> str:
        # Node.up returns the kubeconfig, not whether it started anything: ask first.
        was_running = self.node.running()
        self.node.up()
        return "running" if was_running else "started"

    def _binaries(self) -> str:
        from . import binaries

        binaries.ensure_kube_binaries(binaries.CONTROL_PLANE_BINARIES + binaries.NODE_BINARIES)
        binaries.ensure_node_runtime()
        return "ready"

    def _runtime_image(self) -> str:
        from irisop_deploy.images.runtime import ensure_runtime_image, push_local_image

        image = ensure_runtime_image(REPO, extra_ca=self.extra_ca)
        pushed_file = home() / "runtime-image.json"
        recorded = json.loads(pushed_file.read_text()) if pushed_file.exists() else {}
        if recorded.get("key") == image.key and _registry_has(recorded["ref"]):
            return recorded["ref"]
        digest = push_local_image(image.ref, f"{RUNTIME_REPOSITORY}:r-{image.key}", tls_verify=False)
        ref = f"{RUNTIME_REPOSITORY}@{digest}"
        home().mkdir(parents=True, exist_ok=True)
        pushed_file.write_text(json.dumps({"key": image.key, "ref": ref}))
        return ref

    def _operator_image(self) -> str:
        from irisop_deploy.images.operatorimage import publish_operator_image

        return publish_operator_image(REPO, install.OPERATOR_REPOSITORY, extra_ca=self.extra_ca, tls_verify=False)

    def _install(self, operator_image: str, runtime_image: str) -> str:
        from kubernetes import config

        directory = install.write_overlay(home() / "install", operator_image, runtime_image)
        install.apply(self.kubectl, directory)
        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            try:
                available = install.wait_available(api)
            except install.InstallError as exc:
                raise StackError(str(exc)) from exc
        return f"operator Available ({available['replicas']} replica, image {operator_image.rsplit('@', 1)[1][:19]})"

    def _model(self) -> str:
        from irisop_model.artifact import write_artifact
        from irisop_model.training import TrainParams, train
        from irisop_model.upload import parse_s3_uri, upload_artifact

        from .s3store import aws_env

        sample = yaml.safe_load(SAMPLE.read_text())
        uri = sample["spec"]["model"]["uri"]
        location = parse_s3_uri(uri)
        os.environ.update(aws_env(network.S3_PORT, host=network.STACK_ADDRESS))
        import boto3

        s3 = boto3.client("s3")
        try:
            s3.create_bucket(Bucket=location.bucket)
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass
        # Versioned, as model buckets should be: the operator then ties its
        # verified cache to the object's VersionId.
        s3.put_bucket_versioning(Bucket=location.bucket, VersioningConfiguration={"Status": "Enabled"})
        stored = _stored_artifact(s3, location)
        if stored is not None:
            return f"sha256 {stored[:12]} already at {uri} (kept across restarts, not uploaded again)"
        out = home() / "artifact"
        meta = write_artifact(out, train(TrainParams()), sample["spec"]["model"].get("format", "joblib"))
        files = [p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]
        upload_artifact(out, files, location, client=s3)
        return f"sha256 {meta['sha256'][:12]} at {uri}"

    def _apply_and_wait(self, timeout: float) -> dict[str, Any]:
        from kubernetes import config

        sample = yaml.safe_load(SAMPLE.read_text())
        name, namespace = sample["metadata"]["name"], sample["metadata"].get("namespace", "default")
        self.kubectl("apply", "--server-side", "-f", str(SAMPLE))
        deadline = time.monotonic() + timeout
        last = None
        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            seen = OperatorHasSeen(api)
            while time.monotonic() < deadline:
                obj = json.loads(self.kubectl("-n", namespace, "get", "irismodel", name, "-o", "json"))
                status = obj.get("status", {})
                conds = {c["type"]: c for c in status.get("conditions", [])}
                line = " ".join(f"{t}={conds[t]['status']}" for t in ("ArtifactReady", "ImageReady", "Ready")
                                if t in conds)
                if line != last:
                    sys.stderr.write(f"\n      {line} {conds.get('Ready', {}).get('message', '')}")
                    last = line
                # Conditions left in etcd by an earlier operator are not this
                # operator's verdict: judge only what it has seen.
                if seen(conds):
                    degraded = conds.get("Degraded", {})
                    if degraded.get("status") == "True" and conds.get("Ready", {}).get("status") != "True":
                        raise StackError(f"IrisModel {name} is Degraded: {degraded.get('reason')}: "
                                         f"{degraded.get('message')}")
                    if conds.get("Ready", {}).get("status") == "True" \
                            and status.get("observedGeneration") == obj["metadata"]["generation"]:
                        sys.stderr.write("\n")
                        return self._predict(api, namespace, name, status)
                time.sleep(1)
        raise StackError(f"IrisModel {name} not Ready after {timeout:.0f}s; see `kubectl describe irismodel {name}`")

    def _predict(self, api: Any, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Predict twice: from a pod through status.url (CoreDNS, kube-proxy),
        and from the host through the ClusterIP, which the host can route to."""
        from .incluster_probe import predict_from_pod

        body = {"rows": REFERENCE_ROWS}
        in_cluster = predict_from_pod(api, namespace, status["image"], f"{status['url']}/predict", REFERENCE_ROWS)
        svc = json.loads(self.kubectl("-n", namespace, "get", "service", name, "-o", "json"))
        url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/predict"
        response = _post_with_retry(url, body)
        return {"url": status.get("url"), "service_url": url, "request": body, "response": response,
                "in_cluster_response": in_cluster, "image": status.get("image")}

    def kubectl(self, *args: str) -> str:
        from . import binaries

        argv = [str(binaries.kube_bin_dir() / "kubectl"), "--kubeconfig", str(self.plane.kubeconfig), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise StackError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout

    def down(self) -> list[str]:
        """Stop everything `up` started. The operator is a pod: it stops with the node."""
        stopped = []
        if self.node.running():
            self.node.down()
            stopped.append("node")
        if self.plane.running():
            self.plane.down()
            stopped.append("control plane")
        for name, service in (("registry", self.registry()), ("S3 stand-in", self.s3())):
            if service.running():
                service.stop()
                stopped.append(name)
        network.remove_interface()
        return stopped


class OperatorHasSeen:
    """Whether the operator pod now running has seen the IrisModels.

    The operator writes a condition only when it changes, so a condition left
    by an earlier operator may stay as it is after a restart; it is this
    operator's verdict only once this operator has reconciled the object.
    The signal is the operator's own metric `irisop_models_unseen` (0 once
    its resume pass has covered every IrisModel), read from the pod over the
    pod network; where that metric is absent, a condition counts once it was
    written after the operator pod started.
    """

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)

    def __call__(self, conditions: dict[str, dict[str, Any]]) -> bool:
        pods = [p for p in install.operator_pods(self.core.api_client)
                if p.status.phase == "Running" and p.status.pod_ip and not p.metadata.deletion_timestamp]
        if not pods:
            return False
        for pod in pods:
            try:
                metrics = install.scrape_metrics(pod.status.pod_ip)
            except requests.RequestException:
                continue
            unseen = metrics.get("irisop_models_unseen")
            if unseen is not None:
                return unseen == 0
        started = min(p.status.start_time for p in pods).isoformat().replace("+00:00", "Z")
        return any(c.get("lastTransitionTime", "") >= started for c in conditions.values())


def _started(result: Any) -> str:
    return "started" if result is True else "running"


def _stored_artifact(s3: Any, location: Any) -> str | None:
    """The sha256 model.json claims at location if its model file is there with
    the claimed size (a complete upload: model.json goes last), else None.
    A complete artifact is kept whatever it is: it may be a user's own model
    at the sample's URI."""
    import botocore.exceptions

    try:
        meta = json.loads(s3.get_object(Bucket=location.bucket, Key=location.key("model.json"))["Body"].read())
        head = s3.head_object(Bucket=location.bucket, Key=location.key(meta["model_file"]))
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise
    except (ValueError, KeyError, TypeError):
        return None  # not a model.json we can read: upload the sample over it
    return meta.get("sha256") if head["ContentLength"] == meta.get("size_bytes") else None


def _registry_has(ref: str) -> bool:
    repo, digest = ref.split("@", 1)
    host, path = repo.split("/", 1)
    try:
        return requests.head(f"http://{host}/v2/{path}/manifests/{digest}", timeout=5, headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"}).ok
    except requests.RequestException:
        return False


def _post_with_retry(url: str, body: dict[str, Any], attempts: int = 20) -> dict[str, Any]:
    # kube-proxy programs the Service a moment after the pod turns Ready.
    last: Exception | None = None
    for _ in range(attempts):
        try:
            response = requests.post(url, json=body, timeout=5)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.5)
    raise StackError(f"POST {url} failed: {last}")
