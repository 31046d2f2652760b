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

from .process import ManagedProcess, http_ok, state_dir

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "deploy" / "examples" / "irismodel.yaml"
CRD = REPO / "crds" / "irismodel.yaml"
REGISTRY = "127.0.0.1:5000"
MODEL_REPOSITORY = f"{REGISTRY}/iris-models"
RUNTIME_REPOSITORY = f"{REGISTRY}/irisop/runtime"
OPERATOR_HEALTH_PORT = 8079
OPERATOR_METRICS_PORT = 8078
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


def operator_process(env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(
        name="operator",
        argv=[sys.executable, "-m", "irisop_operator.cli", "operator", "run",
              "--liveness", f"http://127.0.0.1:{OPERATOR_HEALTH_PORT}/healthz"],
        home=home(),
        env=env,
        ready=http_ok(f"http://127.0.0.1:{OPERATOR_HEALTH_PORT}/healthz"),
        timeout=60,
    )


class Stack:
    def __init__(self, extra_ca: Path | None = None) -> None:
        from irisop_deploy.local.controlplane import ControlPlane
        from irisop_deploy.local.node import Node

        self.plane = ControlPlane()
        self.node = Node(self.plane)
        self.extra_ca = extra_ca
        self.kubeconfig: Path | None = None

    # -- processes ---------------------------------------------------------
    def registry(self) -> ManagedProcess:
        from .registry import local_registry

        return local_registry(5000, home=state_dir() / "registry")

    def moto(self) -> ManagedProcess:
        from .moto import moto_server

        return moto_server()

    def operator_env(self, runtime_image: str) -> dict[str, str]:
        from .moto import aws_env

        return {
            **aws_env(),
            "KUBECONFIG": str(self.plane.kubeconfig),
            "IRISOP_RUNTIME_IMAGE": runtime_image,
            "IRISOP_DEFAULT_REPOSITORY": MODEL_REPOSITORY,
            "IRISOP_INSECURE_REGISTRIES": REGISTRY,
            "IRISOP_METRICS_PORT": str(OPERATOR_METRICS_PORT),
            "IRISOP_WORK_DIR": str(home() / "operator-work"),
        }

    # -- steps ---------------------------------------------------------------
    def up(self, timeout: float = 300) -> dict[str, Any]:
        progress = Progress(total=9)
        progress.step("Kubernetes binaries (built once from the Go module proxy, cached)", self._binaries)
        self.kubeconfig = progress.step("control plane: etcd, kube-apiserver, controller-manager, scheduler",
                                        self.plane.up)
        progress.step("node: containerd, kubelet, kube-proxy, metrics-server", self._node)
        progress.step(f"local OCI registry on {REGISTRY}", lambda: _started(self.registry().start()))
        progress.step("S3/ECR stand-in (moto_server)", lambda: _started(self.moto().start()))
        runtime = progress.step("BentoML runtime image (built once per serving version)", self._runtime_image)
        # The model goes up before the operator starts: moto keeps S3 in memory,
        # and an operator resuming an existing IrisModel must find its artifact.
        model = progress.step("train the Iris model and upload it to S3", self._model)
        progress.step("IrisModel CRD and the operator", lambda: self._operator(runtime))
        result = progress.step("apply deploy/examples/irismodel.yaml and wait until Ready",
                               lambda: self._apply_and_wait(timeout))
        return {"kubeconfig": str(self.kubeconfig), "model": model, **result}

    def _node(self) -> str:
        # Node.up returns the kubeconfig, not whether it started anything: ask first.
        was_running = self.node.running()
        self.node.up()
        return "running" if was_running else "started"

    def _binaries(self) -> str:
        from . import binaries

        binaries.ensure_kube_binaries(binaries.CONTROL_PLANE_BINARIES + binaries.NODE_BINARIES)
        return "ready"

    def _runtime_image(self) -> str:
        from irisop_operator.images.runtime import ensure_runtime_image, push_local_image

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

    def _operator(self, runtime_image: str) -> str:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        self.kubectl("wait", "--for=condition=Established", "crd/irismodels.ml.irisop.dev", "--timeout=60s")
        proc = operator_process(self.operator_env(runtime_image))
        env_file = home() / "operator.env.json"
        wanted = json.dumps(proc.env, sort_keys=True)
        if proc.running() and (not env_file.exists() or env_file.read_text() != wanted):
            proc.stop()  # settings changed (e.g. a new runtime image): restart with the new ones
        started = proc.start()
        env_file.write_text(wanted)
        return f"operator {'started' if started else 'already running'} (log {proc.log_file})"

    def _model(self) -> str:
        from irisop_model.artifact import write_artifact
        from irisop_model.training import TrainParams, train
        from irisop_model.upload import parse_s3_uri, upload_artifact

        from .moto import aws_env

        sample = yaml.safe_load(SAMPLE.read_text())
        uri = sample["spec"]["model"]["uri"]
        location = parse_s3_uri(uri)
        os.environ.update(aws_env())
        import boto3

        s3 = boto3.client("s3")
        try:
            s3.create_bucket(Bucket=location.bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        out = home() / "artifact"
        meta = write_artifact(out, train(TrainParams()), sample["spec"]["model"].get("format", "joblib"))
        files = [p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")]
        upload_artifact(out, files, location, client=s3)
        return f"sha256 {meta['sha256'][:12]} at {uri}"

    def _apply_and_wait(self, timeout: float) -> dict[str, Any]:
        sample = yaml.safe_load(SAMPLE.read_text())
        name, namespace = sample["metadata"]["name"], sample["metadata"].get("namespace", "default")
        self.kubectl("apply", "-f", str(SAMPLE))
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            obj = json.loads(self.kubectl("-n", namespace, "get", "irismodel", name, "-o", "json"))
            status = obj.get("status", {})
            conds = {c["type"]: c for c in status.get("conditions", [])}
            line = " ".join(f"{t}={conds[t]['status']}" for t in ("ArtifactReady", "ImageReady", "Ready") if t in conds)
            if line != last:
                sys.stderr.write(f"\n      {line} {conds.get('Ready', {}).get('message', '')}")
                last = line
            degraded = conds.get("Degraded", {})
            if degraded.get("status") == "True" and conds.get("Ready", {}).get("status") != "True":
                raise StackError(f"IrisModel {name} is Degraded: {degraded.get('reason')}: {degraded.get('message')}")
            if conds.get("Ready", {}).get("status") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]:
                sys.stderr.write("\n")
                return self._predict(namespace, name, status)
            time.sleep(1)
        raise StackError(f"IrisModel {name} not Ready after {timeout:.0f}s; see `kubectl describe irismodel {name}`")

    def _predict(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        svc = json.loads(self.kubectl("-n", namespace, "get", "service", name, "-o", "json"))
        url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/predict"
        body = {"rows": REFERENCE_ROWS}
        response = _post_with_retry(url, body)
        return {"url": status.get("url"), "service_url": url, "request": body, "response": response,
                "image": status.get("image")}

    def kubectl(self, *args: str) -> str:
        from . import binaries

        argv = [str(binaries.kube_bin_dir() / "kubectl"), "--kubeconfig", str(self.plane.kubeconfig), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise StackError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout

    def down(self) -> list[str]:
        stopped = []
        proc = operator_process({})
        if proc.running():
            proc.stop()
            stopped.append("operator")
        if self.node.running():
            self.node.down()
            stopped.append("node")
        if self.plane.running():
            self.plane.down()
            stopped.append("control plane")
        for name, service in (("registry", self.registry()), ("moto_server", self.moto())):
            if service.running():
                service.stop()
                stopped.append(name)
        return stopped


def _started(result: Any) -> str:
    return "started" if result is True else "running"


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
