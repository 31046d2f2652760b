"""The local product end to end: how long a user waits.

Prints, on the real single-node cluster that `irisop up` runs:
  * `irisop up` from stopped (build caches warm; a truly cold run is the CI
    measurement in docs/local-cluster.md), and `irisop up` again while running;
  * kubectl apply -> Ready for a new IrisModel (its model image already exists
    for the sample's model; a new model version is measured next);
  * new model version (spec.model.uri changed) -> every pod serves it, checked
    by the model_sha256 the Service answers with.
Targets: apply-to-Ready under 30 s warm; new version serving under 30 s.

    python benchmarks/local_cluster.py

Stops the stack at the end only if it was not running before. Loopback only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    import boto3
    import requests

    from irisop_deploy.local.moto import aws_env
    from irisop_deploy.local.stack import Stack
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train
    from irisop_model.upload import parse_s3_uri, upload_artifact

    stack = Stack()
    was_running = stack.plane.running()
    subprocess.run(["irisop", "down"], check=True, stdout=subprocess.DEVNULL)
    up_from_stopped = timed(["irisop", "up"])
    up_again = timed(["irisop", "up"])

    name, ns = "iris-bench", "default"
    stack.kubectl("-n", ns, "delete", "irismodel", name, "--ignore-not-found", "--wait=true")
    sample = json.loads(stack.kubectl("-n", ns, "get", "irismodel", "iris", "-o", "json"))
    body = {"apiVersion": sample["apiVersion"], "kind": sample["kind"], "metadata": {"name": name, "namespace": ns},
            "spec": sample["spec"]}

    def wait(pred, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            time.sleep(0.2)
        raise SystemExit(f"timed out after {timeout}s")

    def status():
        return json.loads(stack.kubectl("-n", ns, "get", "irismodel", name, "-o", "json")).get("status", {})

    def ready(sha=None):
        st = status()
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
        return ok and (sha is None or st.get("model", {}).get("sha256") == sha)

    started = time.perf_counter()
    subprocess.run(_kubectl_apply(stack, body), check=True, capture_output=True)
    wait(ready)
    apply_to_ready = time.perf_counter() - started

    # A new model version: train with another seed, upload to a new prefix, change spec.model.uri.
    os.environ.update(aws_env())
    out = Path("/tmp/irisop-bench-v2")
    meta = write_artifact(out, train(TrainParams(seed=1234)), "joblib")
    uri = "s3://iris-models/iris/bench-v2/"
    upload_artifact(out, [p.name for p in out.iterdir() if p.is_file()], parse_s3_uri(uri), client=boto3.client("s3"))
    svc = json.loads(stack.kubectl("-n", ns, "get", "service", name, "-o", "json"))
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/predict"
    started = time.perf_counter()
    stack.kubectl("-n", ns, "patch", "irismodel", name, "--type=merge", "-p",
                  json.dumps({"spec": {"model": {"uri": uri}}}))

    def all_new():
        if not ready(meta["sha256"]):
            return False
        answers = set()
        for _ in range(10):  # several requests: every pod behind the Service must answer with v2
            try:
                answers.add(requests.post(url, json={"rows": [[5.1, 3.5, 1.4, 0.2]]}, timeout=2).json()["model_sha256"])
            except requests.RequestException:
                return False
        return answers == {meta["sha256"]}

    wait(all_new)
    new_version = time.perf_counter() - started
    stack.kubectl("-n", ns, "delete", "irismodel", name, "--wait=false")
    if not was_running:
        subprocess.run(["irisop", "down"], check=True, stdout=subprocess.DEVNULL)

    print(f"irisop up from stopped (warm caches): {up_from_stopped:.1f} s")
    print(f"irisop up while running:              {up_again:.1f} s")
    print(f"apply -> Ready (new IrisModel):       {apply_to_ready:.1f} s (target < 30 s)")
    print(f"new model version -> all pods serve:  {new_version:.1f} s (target < 30 s)")
    print(f"summary: apply-to-Ready {apply_to_ready:.1f} s, new-version {new_version:.1f} s, "
          f"warm up {up_again:.1f} s")
    return 0


def _kubectl_apply(stack, body: dict) -> list[str]:
    from irisop_deploy.local import binaries

    path = Path("/tmp/irisop-bench-model.json")
    path.write_text(json.dumps(body))
    return [str(binaries.kube_bin_dir() / "kubectl"), "--kubeconfig", str(stack.plane.kubeconfig), "apply", "-f", str(path)]


if __name__ == "__main__":
    sys.exit(main())
