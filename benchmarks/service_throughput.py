"""A serving pod's throughput through its Service, against the same server on the host, in one run (issue 10).

    python benchmarks/service_throughput.py [--duration 10] [--rounds 2]
    python benchmarks/service_throughput.py --smoke   # CI on the real node: 2 s per scenario, one round

benchmarks/serving.py measures `irisop serve` as a host process. Users get a
pod: the runtime image's Python and its environment, a CPU limit, the CNI
bridge, and kube-proxy's DNAT in front. Three targets, the scenarios
interleaved across them and repeated --rounds times so background load hits
all alike:

- host: `irisop serve` from this project's environment, pinned to CPU 0 (the
  baseline, as in benchmarks/serving.py), on a freshly trained model;
- pod: the sample IrisModel's pod, straight to its IP (what the pod itself does);
- service: the same pod through its ClusterIP (what a client in the cluster gets).

wrk runs pinned to CPU 1. The pod is limited to one CPU by its CFS quota
(the sample's limits) but not pinned, so it can share CPU 1 with wrk: the
pod numbers are a floor, not a ceiling. Ratios pod/host and service/pod are
printed; nothing is asserted.

Needs the local stack (`irisop up`); starts it if it is stopped and then
stops it again at the end. Loopback and the stack's own address only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import serving as bench  # noqa: E402  (benchmarks/serving.py: wrk, its parser, the request bodies, the irisop serve target)

SCENARIOS = [(1, 1), (1, 16), (64, 16)]  # (rows, connections)
MODEL_NAME, NAMESPACE = "iris", "default"  # the sample `irisop up` applies


def pod_and_service_urls(stack) -> tuple[str, str]:
    """(one ready endpoint's URL, the ClusterIP URL) of the sample, from the API server."""
    svc = json.loads(stack.kubectl("-n", NAMESPACE, "get", "service", MODEL_NAME, "-o", "json"))
    service = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/predict"
    slices = json.loads(stack.kubectl("-n", NAMESPACE, "get", "endpointslices", "-l",
                                      f"kubernetes.io/service-name={MODEL_NAME}", "-o", "json"))
    for item in slices["items"]:
        port = item["ports"][0]["port"]
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                return f"http://{endpoint['addresses'][0]}:{port}/predict", service
    raise SystemExit(f"{NAMESPACE}/{MODEL_NAME} has no ready endpoint: is the sample IrisModel Ready?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario and target (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="times the interleaved scenarios repeat (default 2)")
    parser.add_argument("--smoke", action="store_true", help="CI: 2 s per scenario, one round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds = 2, 1

    from irisop_deploy.local.process import exit_on_sigterm
    from irisop_deploy.local.stack import Stack

    exit_on_sigterm()
    stack = Stack()
    was_running = stack.plane.running()
    # An ExitStack, not one finally: every step of the clean-up runs even if
    # an earlier one raises. (Four work directories of full runs were found
    # left behind; the exit path that left them was not identified.)
    with contextlib.ExitStack() as cleanup:
        work = Path(tempfile.mkdtemp(prefix="irisop-svc-bench-"))
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        if not was_running:
            cleanup.callback(subprocess.run, ["irisop", "down"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["irisop", "up"], check=True, stdout=subprocess.DEVNULL)
        pod_url, service_url = pod_and_service_urls(stack)
        model = work / "model"
        subprocess.run([*bench.IRISOP, "train", "--out", str(model)], check=True, capture_output=True)
        # The same `irisop serve` process, pinned and probed, as benchmarks/serving.py runs.
        (host,) = bench.make_targets([bench.OURS], model, work, smoke=True, log=print)
        cleanup.callback(host.process.stop)
        host.process.start()
        targets = {"host": host.url, "pod": pod_url, "service": service_url}
        return measure(targets, work, args.duration, args.rounds)


def measure(targets: dict[str, str], work: Path, seconds: int, rounds: int) -> int:
    import requests

    scripts = {rows: bench.lua_script(work, f"rows-{rows}", bench.body_ours(rows)) for rows in (1, 64)}
    for name, url in targets.items():
        answer = requests.post(url, json=bench.body_ours(1), timeout=30)
        answer.raise_for_status()
        print(f"  {name:8s} {url} answers: {answer.text[:80]}", flush=True)
        bench.wrk(url, scripts[1], 16, min(3, seconds))  # warm-up, not counted
    runs: dict[tuple[str, int, int], list[tuple[float, float, float]]] = {}
    for round_no in range(1, rounds + 1):
        for rows, conns in SCENARIOS:
            for name, url in targets.items():
                rps, p50, p99, errors, _ = bench.parse_wrk(bench.wrk(url, scripts[rows], conns, seconds))
                print(f"  r{round_no} {name:8s} {rows:2d} rows c={conns:<2d} {rps:9.1f} req/s  "
                      f"p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  errors {errors}", flush=True)
                if errors:
                    raise SystemExit(f"{name}: {errors} failed requests")
                runs.setdefault((name, rows, conns), []).append((rps, p50, p99))
    print("\nmedians over rounds, and ratios (pod/host: what the pod costs; service/pod: what kube-proxy costs)")
    print(f"  {'scenario':14s} {'host req/s':>11s} {'pod req/s':>10s} {'svc req/s':>10s} {'pod/host':>9s} "
          f"{'svc/pod':>8s}   p99 host / pod / svc (ms)")
    summary = []
    for rows, conns in SCENARIOS:
        med = {name: [statistics.median(run[i] for run in runs[(name, rows, conns)]) for i in range(3)]
               for name in targets}
        pod_ratio, svc_ratio = med["pod"][0] / med["host"][0], med["service"][0] / med["pod"][0]
        print(f"  {rows:2d} rows c={conns:<2d}    {med['host'][0]:11.1f} {med['pod'][0]:10.1f} {med['service'][0]:10.1f} "
              f"{pod_ratio:8.2f}x {svc_ratio:7.2f}x   {med['host'][2]:.2f} / {med['pod'][2]:.2f} / {med['service'][2]:.2f}")
        summary.append(f"{rows}x{conns} service {med['service'][0]:.0f} req/s = {med['service'][0] / med['host'][0]:.2f}x host")
    print("summary: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
