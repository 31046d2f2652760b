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
    python benchmarks/local_cluster.py --smoke   # CI on the real node: no down/up timing, no targets

Stops the stack at the end (on every exit path) only if it was not running
before; --smoke never stops a running stack. Loopback only. Needs the real
local node (`irisop up`), so only the session that owns the node runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="skip the down/up timing (never stop a running stack); no targets (CI)")
    args = parser.parse_args(argv)

    from irisop_deploy.local.process import exit_on_sigterm
    from irisop_deploy.local.stack import Stack

    exit_on_sigterm()
    stack = Stack()
    was_running = stack.plane.running()
    try:
        return run(stack, smoke=args.smoke)
    finally:
        if not was_running:
            subprocess.run(["irisop", "down"], check=False, stdout=subprocess.DEVNULL)


def run(stack, smoke: bool) -> int:
    import boto3
    import requests

    from irisop_deploy.local import network
    from irisop_deploy.local.s3store import aws_env
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train
    from irisop_model.upload import parse_s3_uri, upload_artifact

    up_from_stopped = None
    if not smoke:
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

    try:
        started = time.perf_counter()
        subprocess.run(_kubectl_apply(stack), input=json.dumps(body).encode(), check=True, capture_output=True)
        wait(ready)
        apply_to_ready = time.perf_counter() - started

        # A new model version: train with another seed, upload to a new prefix, change spec.model.uri.
        os.environ.update(aws_env(network.S3_PORT, host=network.STACK_ADDRESS))  # the stack's S3 stand-in
        uri = "s3://iris-models/iris/bench-v2/"
        with tempfile.TemporaryDirectory(prefix="irisop-bench-v2-") as scratch:
            out = Path(scratch)
            meta = write_artifact(out, train(TrainParams(seed=1234)), "joblib")
            upload_artifact(out, [p.name for p in out.iterdir() if p.is_file()], parse_s3_uri(uri),
                            client=boto3.client("s3"))
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
    finally:
        stack.kubectl("-n", ns, "delete", "irismodel", name, "--wait=false", "--ignore-not-found")

    if up_from_stopped is not None:
        print(f"irisop up from stopped (warm caches): {up_from_stopped:.1f} s")
    print(f"irisop up while running:              {up_again:.1f} s")
    print(f"apply -> Ready (new IrisModel):       {apply_to_ready:.1f} s{'' if smoke else ' (target < 30 s)'}")
    print(f"new model version -> all pods serve:  {new_version:.1f} s{'' if smoke else ' (target < 30 s)'}")
    print(f"summary: apply-to-Ready {apply_to_ready:.1f} s, new-version {new_version:.1f} s, "
          f"warm up {up_again:.1f} s")
    return 0


def _kubectl_apply(stack) -> list[str]:
    """kubectl apply of the manifest on stdin (no file left behind)."""
    from irisop_deploy.local import binaries

    return [str(binaries.kube_bin_dir() / "kubectl"), "--kubeconfig", str(stack.plane.kubeconfig), "apply", "-f", "-"]


if __name__ == "__main__":
    sys.exit(main())
