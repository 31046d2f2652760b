"""Operator at scale: N IrisModels created at once on the local control plane.

Measures, for N in --sizes (default 100 and 500):
  * seconds until every IrisModel has its Deployment, its Service and a status
    with ArtifactReady=True for its generation (the operator's work is done);
  * API writes per IrisModel, counted by the API server itself
    (apiserver_request_total for PATCH/POST/PUT on the kinds the operator writes;
    kopf's and our events are counted from the events themselves);
  * writes per no-op resync (operator restarted: every object resumed);
  * operator RSS.
In the same run, a plain client makes the same writes directly (create the
IrisModel, apply Deployment and Service, patch status) with the same number
of threads, and the last line prints the throughput ratio.

    python benchmarks/operator_scale.py --sizes 100 500

Starts its own control plane (no node) and moto_server under a temp dir and
removes them at the end. Nothing here talks to anything but loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WRITE_VERBS = ("APPLY", "PATCH", "POST", "PUT", "DELETE")
COUNTED = ("irismodels", "deployments", "services", "horizontalpodautoscalers", "poddisruptionbudgets")
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
THREADS = 32


def apiserver_writes(api) -> dict[str, float]:
    """Write counters per resource from the API server's own metrics."""
    text = api.call_api("GET", api.configuration.host + "/metrics",
                        header_params=api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])[2]).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in COUNTED:
            # Status updates by controllers (PUT deployments/status, replicasets) are
            # not the operator's: count only PATCH and APPLY (server-side apply) on our kinds.
            if labels["verb"] not in ("PATCH", "APPLY"):
                continue
            key = labels["resource"] + ("/" + labels["subresource"] if labels.get("subresource") else "")
            totals[key] = totals.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def quiesce(api, quiet_s: float = 4.0, limit_s: float = 120.0) -> None:
    """Wait until the operator's kinds see no writes for quiet_s seconds."""
    last, quiet_since, deadline = apiserver_writes(api), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(1)
        now = apiserver_writes(api)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def reconcile_means(port: int) -> dict[str, float]:
    """Mean reconcile duration per trigger, from the operator's own histogram."""
    import requests

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        m = re.match(r'irisop_reconcile_duration_seconds_(sum|count)\{trigger="([^"]+)"\} (\S+)', line)
        if m:
            (sums if m.group(1) == "sum" else counts)[m.group(2)] = float(m.group(3))
    return {t: round(1000 * sums[t] / counts[t], 1) for t in sums if counts.get(t)}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    import boto3
    from kubernetes import client, config

    from irisop_deploy.local.controlplane import ControlPlane
    from irisop_deploy.local.moto import aws_env, moto_server
    from irisop_deploy.local.process import ManagedProcess, free_port, http_ok
    from irisop_operator import builders, names
    from irisop_operator.spec import parse_spec
    from tests.fixtures.aws import fake_artifact, upload_dir

    # A private control plane with no node: the benchmark measures the
    # operator, not pods, and must not leave 1,000 Deployments in the cluster
    # `irisop up` uses.
    work = Path(tempfile.mkdtemp(prefix="irisop-bench-"))
    plane = ControlPlane(work / "controlplane")
    kubeconfig = plane.up()
    moto_port = free_port()
    moto = moto_server(moto_port, home=work)
    moto.start()
    env = {**aws_env(moto_port), "KUBECONFIG": str(kubeconfig), "IRISOP_METRICS_PORT": "0",
           "IRISOP_WORK_DIR": str(work / "op"), "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    os.environ.update(env)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bench")
    meta = fake_artifact(work / "artifact", seed=b"bench")
    uri = upload_dir(s3, work / "artifact", "bench", "iris/v1")

    api = config.new_client_from_config(config_file=str(kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    crd = json.loads(json.dumps(__import__("yaml").safe_load((REPO / "crds/irismodel.yaml").read_text())))
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(crd)
        time.sleep(2)
    except client.ApiException as exc:
        if exc.status != 409:
            raise

    def model_body(name: str) -> dict:
        return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name},
                "spec": {"model": {"uri": uri}, "image": IMAGE}}

    def fresh_namespace(prefix: str) -> str:
        ns = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
        core.create_namespace({"metadata": {"name": ns}})
        return ns

    def done(ns: str, n: int) -> bool:
        items = custom.list_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL)["items"]
        ok = sum(1 for i in items if any(c["type"] == "ArtifactReady" and c["status"] == "True"
                                         for c in i.get("status", {}).get("conditions", [])))
        if ok < n:
            return False
        deps = len(client.AppsV1Api(api).list_namespaced_deployment(ns).items)
        svcs = len(core.list_namespaced_service(ns).items)
        return deps >= n and svcs >= n

    metrics_port = free_port()

    def start_operator(ns: str) -> ManagedProcess:
        port = free_port()
        proc = ManagedProcess(name=f"operator-{ns}", argv=["irisop", "operator", "run", "-n", ns, "--liveness",
                                                          f"http://127.0.0.1:{port}/healthz"],
                              home=work, env={**env, "IRISOP_METRICS_PORT": str(metrics_port)},
                              ready=http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60)
        proc.start()
        return proc

    def plain_client(ns: str, n: int) -> float:
        """The same writes, made directly: create, apply Deployment + Service, patch status."""
        def one(i: int) -> None:
            name = f"m{i}"
            obj = custom.create_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL, model_body(name))
            owner = builders.Owner(name=name, namespace=ns, uid=obj["metadata"]["uid"])
            spec = parse_spec(obj["spec"])
            for manifest in (builders.build_deployment(owner, spec, IMAGE, meta["sha256"]), builders.build_service(owner, spec)):
                kind = manifest["kind"]
                path = ("/apis/apps/v1" if kind == "Deployment" else "/api/v1") + f"/namespaces/{ns}/{kind.lower()}s/{name}"
                m, url, headers, body, _ = api.param_serialize(
                    "PATCH", path, query_params=[("fieldManager", "plain"), ("force", "true")], body=manifest,
                    header_params={"Content-Type": "application/apply-patch+yaml"}, auth_settings=["BearerToken"])
                api.call_api(m, url, header_params=headers, body=body).read()
            custom.patch_namespaced_custom_object_status(names.GROUP, names.VERSION, ns, names.PLURAL, name, {
                "status": {"conditions": [{"type": "ArtifactReady", "status": "True", "reason": "Verified", "message": "",
                                           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}})

        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(one, range(n)))
        return time.perf_counter() - started

    results = []
    for n in args.sizes:
        # Baseline first, in its own namespace, with no operator watching it.
        base_ns = fresh_namespace("plain")
        base_s = plain_client(base_ns, n)

        ns = fresh_namespace("op")
        op = start_operator(ns)
        before = apiserver_writes(api)
        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, ns, names.PLURAL, model_body(f"m{i}")), range(n)))
        deadline = time.monotonic() + args.timeout
        while not done(ns, n):
            if time.monotonic() > deadline:
                print(f"N={n}: not done after {args.timeout}s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        op_s = time.perf_counter() - started
        quiesce(api)  # let status follow the Deployment controller's updates
        writes = diff(apiserver_writes(api), before)
        events = [e for e in core.list_namespaced_event(ns).items if (e.source and e.source.component in ("kopf", "irismodel-operator"))]
        rss = rss_mib(op.pid())
        reconcile_ms = reconcile_means(metrics_port)

        # No-op resync: restart the operator; every IrisModel is resumed.
        op.stop()
        before_resync = apiserver_writes(api)
        op = start_operator(ns)
        time.sleep(max(10, n / 20))
        resync = diff(apiserver_writes(api), before_resync)
        rss_after = rss_mib(op.pid())
        op.stop()

        total_writes = sum(writes.values()) + len(events)
        row = {
            "n": n,
            "operator_s": round(op_s, 2),
            "plain_s": round(base_s, 2),
            "operator_per_s": round(n / op_s, 1),
            "plain_per_s": round(n / base_s, 1),
            "ratio": round(base_s / op_s, 2),
            "writes_per_model": round(total_writes / n, 2),
            "writes_by_kind": writes,
            "events": len(events),
            "resync_writes_per_model": round(sum(resync.values()) / n, 3),
            "resync_writes_by_kind": resync,
            "rss_mib": round(rss, 1),
            "reconcile_mean_ms": reconcile_ms,
            "rss_after_resume_mib": round(rss_after, 1),
        }
        results.append(row)
        print(json.dumps(row))
        for name in (ns, base_ns):
            core.delete_namespace(name)
        # The controller-manager's deletion backlog would slow the next size.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and {ns, base_ns} & {n.metadata.name for n in core.list_namespace().items}:
            time.sleep(1)

    moto.stop()
    plane.destroy()
    for row in results:
        print(f"N={row['n']}: operator {row['operator_per_s']}/s vs plain client {row['plain_per_s']}/s "
              f"(ratio {row['ratio']}x, target >=0.5x); {row['writes_per_model']} writes/model (target <=5); "
              f"{row['resync_writes_per_model']} writes/model on resync (target 0); RSS {row['rss_mib']} MiB")
    last = results[-1]
    print(f"summary: operator/plain throughput ratio {last['ratio']}x at N={last['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
