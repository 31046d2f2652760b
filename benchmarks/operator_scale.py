"""Operator at scale: N IrisModels created at once on a private control plane.

Measures, for N in --sizes (default 500 and 2000):
  * seconds until every IrisModel has its Deployment, its Service and a status
    with ArtifactReady=True for its generation (the operator's work is done);
  * API writes per IrisModel, counted by the API server itself
    (apiserver_request_total for PATCH/APPLY on the kinds the operator writes,
    plus the Events it posted, Normal and Warning apart);
  * operator log lines per new IrisModel;
  * a restart: writes and log lines of the no-op resync of all N, how long
    until every object was seen again, and the time from the restart to
    Ready=True for one IrisModel created right after it (this script plays
    the kubelet for that one pod: the control plane has no node);
  * operator RSS after the burst and after the restart.
In the same run, a plain client makes the same writes with the operator's own
Kubernetes client code (create the IrisModel, apply Deployment and Service,
patch status, post the Event) from the same number of threads; the ratio of
the two throughputs is printed last.

    python benchmarks/operator_scale.py --sizes 500 2000
    python benchmarks/operator_scale.py --smoke           # CI: N=3, seconds, no targets
    python benchmarks/operator_scale.py --sizes 500 --profile /tmp/prof   # py-spy of the burst
    python benchmarks/operator_scale.py --sizes 500 --repeat 3            # the median of three ratios

Starts its own control plane (no node) and moto_server under a temp dir and
stops them on every exit path. Nothing here talks to anything but loopback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

from speedprobe import SpeedProbe  # benchmarks/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]

WRITE_VERBS = ("APPLY", "PATCH")  # POST/PUT on our kinds are the benchmark's creates and controllers' updates
CONTROLLER_VERBS = ("POST", "PUT", "DELETE")  # what the controllers write too (quiesce waits for them)
COUNTED = ("irismodels", "deployments", "services", "horizontalpodautoscalers", "poddisruptionbudgets")
IMAGE = "registry.invalid/iris@sha256:" + "e" * 64
THREADS = 32
# What the `irisop` entry point runs, with this interpreter (no PATH lookup).
IRISOP = [sys.executable, "-c", "import sys; from irisop_operator.cli import main; sys.exit(main())"]
FAKE_NODE = "bench-node"
STALL_AFTER_S = 3600  # spec.serving.progressDeadlineSeconds of every IrisModel (create_model says why)
TARGETS = {"ratio": 0.7, "writes_per_model": 5, "resync_writes": 0, "rss_mib": 250, "restart_to_ready_s": 30,
           "log_lines_per_model": 3, "log_lines_per_resync": 0}


def metric_lines(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of one metric in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            yield labels, float(line.rsplit(" ", 1)[1])


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


class Cluster:
    """The private control plane, seen through the client the benchmark uses."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        from irisop_operator import kube

        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.api.configuration.connection_pool_maxsize = THREADS
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)
        self.writer = kube.ApiServer(self.api)  # the operator's own write path, for the plain client
        self._node = False  # the fake node is registered

    def raw_get(self, path: str) -> str:
        headers = self.api.param_serialize("GET", path, auth_settings=["BearerToken"])[2]
        return self.api.call_api("GET", self.api.configuration.host + path, header_params=headers).read().decode()

    def writes(self) -> dict[str, float]:
        """Write counters per resource from the API server's own metrics."""
        totals: dict[str, float] = {}
        for labels, value in metric_lines(self.raw_get("/metrics"), "apiserver_request_total"):
            if labels.get("verb") in WRITE_VERBS and labels.get("resource") in COUNTED:
                key = labels["resource"] + ("/" + labels["subresource"] if labels.get("subresource") else "")
                totals[key] = totals.get(key, 0) + value
        return totals

    def requests(self) -> dict[str, float]:
        """Every request the API server served, by verb and resource (where its CPU went)."""
        totals: dict[str, float] = {}
        for labels, value in metric_lines(self.raw_get("/metrics"), "apiserver_request_total"):
            key = f"{labels.get('verb')} {labels.get('resource')}" + (
                "/" + labels["subresource"] if labels.get("subresource") else "")
            totals[key] = totals.get(key, 0) + value
        return totals

    def watch_events(self) -> dict[str, float]:
        """Watch events the API server sent, per kind: what every watcher (ours, the controllers') cost it."""
        totals: dict[str, float] = {}
        for labels, value in metric_lines(self.raw_get("/metrics"), "apiserver_watch_events_total"):
            kind = labels.get("resource") or labels.get("kind", "?")
            totals[kind] = totals.get(kind, 0) + value
        return totals

    def quiesce(self, quiet_s: float = 4.0, limit_s: float = 600.0) -> None:
        """Wait until no writes at all (the operator's and the controllers': status of
        Deployments, ReplicaSets, pods) have been made for quiet_s seconds."""
        def all_writes() -> dict[str, float]:
            return {k: v for k, v in self.requests().items() if k.split(" ", 1)[0] in WRITE_VERBS + CONTROLLER_VERBS
                    and not k.endswith(" leases") and " events" not in k}

        last, quiet_since, deadline = all_writes(), time.monotonic(), time.monotonic() + limit_s
        while time.monotonic() < deadline:
            time.sleep(1)
            now = all_writes()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    def install_crd(self) -> None:
        import yaml
        from kubernetes import client

        crd = yaml.safe_load((REPO / "crds/irismodel.yaml").read_text())
        try:
            self.ext.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        wait(lambda: any(c.type == "Established" and c.status == "True"
                         for c in self.ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions
                         or []), 30, "the CRD to be established", 0.2)

    def fresh_namespace(self, prefix: str) -> str:
        ns = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
        self.core.create_namespace({"metadata": {"name": ns}})
        wait(lambda: self.core.list_namespaced_service_account(ns).items, 30, f"{ns} default ServiceAccount", 0.2)
        return ns

    def models(self, ns: str) -> list[dict]:
        from irisop_operator import names

        return self.custom.list_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL)["items"]

    def create_model(self, ns: str, name: str, uri: str) -> dict:
        from irisop_operator import names

        # No node runs the pods, so every rollout would stall after the default
        # 120 s progress deadline, and the operator would rightly publish that:
        # status writes in the middle of a restart phase that should make none.
        # An hour keeps the run about the operator's own work.
        body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name},
                "spec": {"model": {"uri": uri}, "image": IMAGE,
                         "serving": {"progressDeadlineSeconds": STALL_AFTER_S}}}
        return self.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL, body)

    def done(self, ns: str, n: int) -> bool:
        """Every IrisModel verified and its Deployment and Service exist (children listed only then)."""
        ok = sum(1 for i in self.models(ns) if condition(i, "ArtifactReady") == "True")
        if ok < n:
            return False
        return (len(self.apps.list_namespaced_deployment(ns).items) >= n
                and len(self.core.list_namespaced_service(ns).items) >= n)

    def our_events(self, ns: str) -> dict[str, int]:
        from irisop_operator import names

        counts: dict[str, int] = {}
        for event in self.core.list_namespaced_event(ns).items:
            if event.source and event.source.component in ("kopf", names.OPERATOR_NAME):
                counts[event.type] = counts.get(event.type, 0) + (event.count or 1)
        return counts

    def delete_namespaces(self, *namespaces: str) -> None:
        from kubernetes import client

        # Pods bound to the fake node have no kubelet to confirm a graceful
        # delete: remove them at once, or their namespace never goes.
        for ns in namespaces:
            for pod in self.core.list_namespaced_pod(ns, field_selector=f"spec.nodeName={FAKE_NODE}").items:
                self.core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=0,
                                                body=client.V1DeleteOptions(grace_period_seconds=0))
            self.core.delete_namespace(ns)
        # The controller-manager's deletion backlog would slow the next size.
        wait(lambda: not set(namespaces) & {n.metadata.name for n in self.core.list_namespace().items},
             600, "namespaces to go", 1)

    # -- playing the kubelet for one pod ------------------------------------

    def serve_pods(self, ns: str, selector: str) -> None:
        """Bind the selected pods to a registered fake node and report them Running and Ready."""
        from kubernetes import client

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if not self._node:
            # Unschedulable: the scheduler must not bind every pending pod of the
            # run to it; this script binds the one pod it serves itself.
            try:
                self.core.create_node({"metadata": {"name": FAKE_NODE}, "spec": {"unschedulable": True}})
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            self._node = True
        # A heartbeat on every call: the node lifecycle controller would mark a
        # silent node NotReady, and its pods with it.
        self.core.patch_node_status(FAKE_NODE, {"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "benchmark",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
        for pod in self.core.list_namespaced_pod(ns, label_selector=selector).items:
            if not pod.spec.node_name:
                self.core.create_namespaced_binding(ns, client.V1Binding(
                    metadata=client.V1ObjectMeta(name=pod.metadata.name),
                    target=client.V1ObjectReference(kind="Node", name=FAKE_NODE)), _preload_content=False)
            if pod.status.phase != "Running":
                self.core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": {
                    "phase": "Running", "startTime": now,
                    "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                   for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                    "containerStatuses": [{"name": c.name, "ready": True, "restartCount": 0, "image": c.image,
                                           "imageID": "", "started": True, "state": {"running": {"startedAt": now}}}
                                          for c in pod.spec.containers]}})


def condition(obj: dict, type_: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond["status"]
    return None


class Operator:
    """`irisop operator run -n <ns>` as a process, with its metrics and log."""

    def __init__(self, work: Path, ns: str, env: dict[str, str]) -> None:
        from irisop_deploy.local.process import ManagedProcess, free_port, http_ok

        self.metrics_port, health = free_port(), free_port()
        self.process = ManagedProcess(
            name=f"operator-{ns}",
            argv=[*IRISOP, "operator", "run", "-n", ns, "--liveness", f"http://127.0.0.1:{health}/healthz"],
            home=work, env={**env, "IRISOP_METRICS_PORT": str(self.metrics_port)},
            ready=http_ok(f"http://127.0.0.1:{health}/healthz"), timeout=120)

    def metrics(self) -> str:
        import requests

        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def reconciles(self, trigger: str) -> float:
        return sum(v for labels, v in metric_lines(self.metrics(), "irisop_reconciles_total")
                   if labels.get("trigger") == trigger)

    def caught_up(self, n: int) -> bool:
        """Whether the operator's own metrics (no API request) say n IrisModels may be done.

        n reconciles ran, none is queued, and at least n status writes were
        made. Not the settle queue: with no node no rollout ends, so resyncs
        stay scheduled; done() then asks the API server.
        """
        text = self.metrics()
        pending = [v for _, v in metric_lines(text, "irisop_reconcile_pending")]
        model = sum(v for labels, v in metric_lines(text, "irisop_reconciles_total") if labels.get("trigger") == "model")
        status = sum(v for labels, v in metric_lines(text, "irisop_api_writes_total") if labels.get("verb") == "status")
        return model >= n and status >= n and pending == [0]

    def reconcile_means_ms(self) -> dict[str, float]:
        text = self.metrics()
        sums = {lb["trigger"]: v for lb, v in metric_lines(text, "irisop_reconcile_duration_seconds_sum")}
        counts = {lb["trigger"]: v for lb, v in metric_lines(text, "irisop_reconcile_duration_seconds_count")}
        return {t: round(1000 * sums[t] / counts[t], 1) for t in sums if counts.get(t)}

    def log_lines(self) -> int:
        try:
            with open(self.process.log_file, "rb") as log:
                return sum(1 for _ in log)
        except FileNotFoundError:
            return 0

    def rss_mib(self) -> float:
        pid = self.process.pid()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


@contextlib.contextmanager
def profiled(op: Operator, out: Path | None, label: str) -> Iterator[None]:
    """py-spy (if asked for) samples the operator's threads while the block runs."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([shutil.which("py-spy") or "py-spy", "record", "--pid", str(op.process.pid()),
                            "--gil", "--format", "raw", "--rate", "100", "-o", str(out / f"{label}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        spy.wait(30)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def busy_since(start: tuple[int, int]) -> float:
    """The fraction of the machine's CPU time that was busy since ``start`` (1.0: every core, all the time)."""
    busy, total = machine_jiffies()
    return round((busy - start[0]) / max(1, total - start[1]), 2)


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User+system CPU seconds of each named process so far (where the machine's 2 cores went)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (proc(5) fields 14, 15)
    return out


class Watchdog:
    """Restarts a control-plane component that died, and says so.

    On the shared development machine etcd was found dead three times in a
    morning mid-run (no error in its log, no OOM); a restart from its data
    directory keeps the run alive. Every restart is printed and counted in
    the results: a phase with one is slower than it should be.
    """

    def __init__(self, plane: Any) -> None:
        import threading

        self.plane, self.restarts = plane, []  # (seconds after start, component)
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            dead = [name for name, pid in self.plane.status().items() if pid is None]
            if dead:
                at = round(time.monotonic() - self._started)
                print(f"watchdog: {dead} died {at} s into the run; restarting", file=sys.stderr, flush=True)
                self.restarts += [(at, name) for name in dead]
                self.plane.up()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def plain_client(cluster: Cluster, ns: str, n: int, uri: str, sha256: str) -> float:
    """The operator's writes made directly, with the operator's own client code and builders."""
    from irisop_operator import builders
    from irisop_operator.spec import parse_spec

    def one(i: int) -> None:
        name = f"m{i}"
        obj = cluster.create_model(ns, name, uri)
        owner = builders.Owner(name=name, namespace=ns, uid=obj["metadata"]["uid"])
        spec = parse_spec(obj["spec"])
        for manifest in (builders.build_deployment(owner, spec, IMAGE, sha256), builders.build_service(owner, spec)):
            cluster.writer.apply(manifest)
        cluster.writer.patch_status(ns, name, {"conditions": [
            {"type": "ArtifactReady", "status": "True", "reason": "Verified", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]})
        cluster.writer.post_event(obj, "Normal", "ModelVersionReady", f"image {IMAGE}")

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started


def measure(cluster: Cluster, work: Path, env: dict[str, str], n: int, uri: str, sha256: str,
            timeout: float, profile: Path | None, stack: contextlib.ExitStack,
            services: Callable[[], dict[str, int | None]], probe: SpeedProbe, plain: bool = True) -> dict[str, Any]:
    from irisop_operator import names

    def plain_run() -> tuple[float, dict[str, float]]:
        if not plain:
            return float("nan"), {}
        base_ns = cluster.fresh_namespace("plain")
        cpu0, machine0 = cpu_seconds({**services(), "benchmark": os.getpid()}), machine_jiffies()
        watch0 = cluster.watch_events()
        begun = time.monotonic()
        seconds = plain_client(cluster, base_ns, n, uri, sha256)
        window["plain_speed"].append(probe.speed(begun, time.monotonic()))
        window["plain_busy"].append(busy_since(machine0))
        window["plain_cpu"].append(diff(cpu_seconds({**services(), "benchmark": os.getpid()}), cpu0))
        # Let the controllers catch up with the plain client's Deployments, as the
        # operator run waits for them too (quiesce).
        cluster.quiesce()
        cpu = diff(cpu_seconds({**services(), "benchmark": os.getpid()}), cpu0)
        window["plain_watch"].append({k: round(v / n, 2) for k, v in sorted(diff(cluster.watch_events(), watch0).items())})
        # Gone before the next run, so the controllers' work on the plain
        # client's Deployments does not slow the operator down.
        cluster.delete_namespaces(base_ns)
        return seconds, cpu

    # Within each timed window: how busy the machine was, and who used it.
    window: dict[str, list] = {"plain_busy": [], "plain_cpu": [], "plain_watch": [], "plain_speed": []}
    # The plain client runs before and after the operator: on a shared machine
    # the load drifts, and bracketing keeps the ratio from depending on when.
    base_s, plain_cpu = plain_run()

    ns = cluster.fresh_namespace("op")
    op = Operator(work, ns, env)
    op.process.start()
    stack.callback(op.process.stop)
    lines0, before = op.log_lines(), cluster.writes()
    pids = lambda: {**services(), "operator": op.process.pid()}  # noqa: E731
    cpu0, requests0, machine0 = cpu_seconds(pids()), cluster.requests(), machine_jiffies()
    watch0 = cluster.watch_events()
    started, begun = time.perf_counter(), time.monotonic()
    with profiled(op, profile, f"burst-{n}"):
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: cluster.create_model(ns, f"m{i}", uri), range(n)))
        # Checked often but cheaply: listing n IrisModels every 0.2 s would load
        # the API server, and a 1 s poll added ~0.5 s to a ~12 s window that
        # the plain client's own timer does not have. The operator's metrics
        # say when it is worth asking the API server.
        caught_up_at: list[float] = []

        def finished() -> bool:
            if not op.caught_up(n):
                return False
            at = time.perf_counter()  # n status writes had been sent by now
            if not cluster.done(ns, n):
                return False
            # The window ends when the operator's metrics said done, not after
            # the three LISTs of n objects that confirm it (~0.3-0.5 s at 500
            # under load): the plain client's timer pays no such check. A write
            # still in flight then had to land before the LISTs saw it, so this
            # is at most one write's latency early.
            caught_up_at.append(at)
            return True

        wait(finished, timeout, f"{n} IrisModels done", 0.2)
    op_s = caught_up_at[0] - started
    op_speed = probe.speed(begun, time.monotonic())
    op_busy, op_window_cpu = busy_since(machine0), diff(cpu_seconds(pids()), cpu0)
    cluster.quiesce()  # let status follow the Deployment controller's updates
    op_cpu = diff(cpu_seconds(pids()), cpu0)
    requests = sorted(diff(cluster.requests(), requests0).items(), key=lambda kv: -kv[1])
    watch_events = diff(cluster.watch_events(), watch0)
    print(f"N={n} burst: operator {n / op_s:.1f}/s, plain {n / base_s:.1f}/s; CPU s plain {plain_cpu}, "
          f"operator {op_cpu}; API requests during the operator run: {requests[:12]}", file=sys.stderr, flush=True)
    writes = diff(cluster.writes(), before)
    events = cluster.our_events(ns)
    burst_lines = op.log_lines() - lines0
    rss = op.rss_mib()
    reconcile_ms = op.reconcile_means_ms()
    joined = sum(v for _, v in metric_lines(op.metrics(), "irisop_artifact_reads_joined_total"))

    op.process.stop()
    base_after_s, _ = plain_run()

    # Restart 1: a no-op resync of all n. Seen again = the resume pass reached every object.
    before, lines0 = cluster.writes(), op.log_lines()
    restarted = time.perf_counter()
    op.process.start()
    wait(lambda: op.reconciles("model") >= n, timeout, "the resume pass")
    resumed_s = time.perf_counter() - restarted
    wait(lambda: op.reconciles("settle") >= n, timeout, "the resumed objects' settle pass")
    cluster.quiesce()
    resync = diff(cluster.writes(), before)
    resync_lines = op.log_lines() - lines0
    rss_after = op.rss_mib()

    # Restart 2: a new IrisModel right after the restart, timed to Ready=True.
    op.process.stop()
    restarted = time.perf_counter()
    op.process.start()
    cluster.create_model(ns, "fresh", uri)

    def fresh_ready() -> bool:
        cluster.serve_pods(ns, names.selector_string("fresh"))
        obj = cluster.custom.get_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL, "fresh")
        return condition(obj, "Ready") == "True"

    def fresh_handled() -> bool:
        obj = cluster.custom.get_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL, "fresh")
        return condition(obj, "ArtifactReady") == "True" and cluster.apps.list_namespaced_deployment(
            ns, field_selector="metadata.name=fresh").items

    wait(fresh_handled, timeout, "the new IrisModel to be handled", 0.2)
    restart_to_handled = time.perf_counter() - restarted
    wait(fresh_ready, timeout, "the new IrisModel to be Ready", 0.2)
    restart_to_ready = time.perf_counter() - restarted
    op.process.stop()
    cluster.delete_namespaces(ns)

    total_writes = sum(writes.values()) + sum(events.values())
    return {
        "n": n,
        "operator_s": round(op_s, 2),
        "plain_s": [round(base_s, 2), round(base_after_s, 2)],  # before and after the operator run
        "operator_per_s": round(n / op_s, 1),
        "plain_per_s": round(2 * n / (base_s + base_after_s), 1),
        "ratio": round((base_s + base_after_s) / 2 / op_s, 2),
        # The CPU's speed in each window (SpeedProbe), and the ratio of the
        # windows' work (length x speed): the same comparison with the
        # machine's drift between the windows taken out.
        "speed_plain": [round(v, 2) for v in window["plain_speed"]],
        "speed_operator": round(op_speed, 2),
        "ratio_speed_normalized": round(
            (base_s * window["plain_speed"][0] + base_after_s * window["plain_speed"][-1]) / 2 / (op_s * op_speed), 2)
        if plain else float("nan"),
        "writes_per_model": round(total_writes / n, 2),
        "writes_by_kind": writes,
        # Every watch event the API server sent from the burst until the writes were quiet, per model.
        "watch_events_per_model": {k: round(v / n, 2) for k, v in sorted(watch_events.items())},
        "plain_watch_events_per_model": window["plain_watch"],
        "events": events,
        "log_lines_per_model": round(burst_lines / n, 2),
        "resync_writes_per_model": round(sum(resync.values()) / n, 3),
        "resync_writes_by_kind": resync,
        "log_lines_per_resync": round(resync_lines / n, 3),
        "restart_resumed_all_s": round(resumed_s, 1),
        "restart_to_handled_s": round(restart_to_handled, 1),  # verified, Deployment applied
        "restart_to_ready_s": round(restart_to_ready, 1),  # ...and Ready=True (includes the controllers' backlog)
        "rss_mib": round(rss, 1),
        "rss_after_restart_mib": round(rss_after, 1),
        "reconcile_mean_ms": reconcile_ms,
        "artifact_fetches_joined": joined,  # fetches that shared another's S3 reads (singleflight.py)
        # Within the timed windows only: the machine's busy fraction (1.0 = both
        # cores all the time) and CPU seconds per component.
        "machine_busy_plain": window["plain_busy"],
        "machine_busy_operator": op_busy,
        "cpu_s_plain_window": [{k: round(v, 1) for k, v in w.items()} for w in window["plain_cpu"]],
        "cpu_s_operator_window": {k: round(v, 1) for k, v in op_window_cpu.items()},
        # CPU seconds per component, each run until its writes were quiet.
        "cpu_s_plain": {k: round(v, 1) for k, v in plain_cpu.items()},
        "cpu_s_operator": {k: round(v, 1) for k, v in op_cpu.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--smoke", action="store_true", help="N=3 with short timeouts, no targets (CI)")
    parser.add_argument("--profile", type=Path, help="write py-spy samples of each burst here (needs py-spy)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each size this many times and print the median ratio (the machine's "
                             "speed can drift by 2x between minutes; each repeat brackets its own burst)")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain client (operator burst, restarts and memory only; no ratio)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.timeout = [3], 120

    import boto3

    from irisop_deploy.local.controlplane import ControlPlane
    from irisop_deploy.local.moto import aws_env, moto_server
    from irisop_deploy.local.process import exit_on_sigterm, free_port
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="irisop-bench-"))
    results = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        # A private control plane with no node: the benchmark measures the
        # operator, not pods, and must not leave 1,000s of Deployments in the
        # cluster `irisop up` uses.
        plane = ControlPlane(work / "controlplane")
        stack.callback(plane.destroy)
        kubeconfig = plane.up()
        watchdog = Watchdog(plane)
        stack.callback(watchdog.stop)  # runs before plane.destroy (LIFO)
        probe = SpeedProbe()
        stack.callback(probe.stop)
        moto_port = free_port()
        moto = moto_server(moto_port, home=work)
        stack.callback(moto.stop)
        moto.start()
        env = {**aws_env(moto_port), "KUBECONFIG": str(kubeconfig), "IRISOP_WORK_DIR": str(work / "op"),
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
        os.environ.update(env)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        meta = write_artifact(work / "artifact", train(TrainParams(seed=7)), "joblib")
        for path in sorted((work / "artifact").iterdir()):
            if path.is_file():
                s3.put_object(Bucket="bench", Key=f"iris/v1/{path.name}", Body=path.read_bytes())
        uri = "s3://bench/iris/v1/"

        cluster = Cluster(kubeconfig)
        cluster.install_crd()
        try:
            for n in args.sizes:
                for _ in range(args.repeat):
                    row = measure(cluster, work, env, n, uri, meta["sha256"], args.timeout, args.profile, stack,
                                  lambda: {**plane.status(), "moto": moto.pid()}, probe, plain=not args.no_plain)
                    row["control_plane_restarts"] = list(watchdog.restarts)
                    watchdog.restarts.clear()
                    results.append(row)
                    print(json.dumps(row), flush=True)
        except Exception:
            # The work dir goes with the cleanup: say what the services said first.
            for log in sorted(work.rglob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.relative_to(work)}\n" + "\n".join(tail), file=sys.stderr)
            raise

    for row in results:
        print(f"N={row['n']}: operator {row['operator_per_s']}/s vs plain client {row['plain_per_s']}/s "
              f"(ratio {row['ratio']}x; speed-normalized {row['ratio_speed_normalized']}x, CPU speed plain "
              f"{row['speed_plain']}, operator {row['speed_operator']}); {row['writes_per_model']} writes/model; "
              f"{row['log_lines_per_model']} log lines/model; events {row['events']}; "
              f"restart: {row['resync_writes_per_model']} writes/model, {row['log_lines_per_resync']} log lines/model, "
              f"all resumed in {row['restart_resumed_all_s']} s, restart -> new model handled "
              f"{row['restart_to_handled_s']} s, Ready {row['restart_to_ready_s']} s; "
              f"RSS {row['rss_mib']} MiB ({row['rss_after_restart_mib']} MiB after restart); "
              f"machine busy in the timed windows: plain {row['machine_busy_plain']}, "
              f"operator {row['machine_busy_operator']}"
              + (f"; control plane restarted by the watchdog: {row['control_plane_restarts']}"
                 if row["control_plane_restarts"] else ""))
    for n in args.sizes:
        ratios = [row["ratio"] for row in results if row["n"] == n]
        normalized = [row["ratio_speed_normalized"] for row in results if row["n"] == n]
        if len(ratios) > 1:
            print(f"N={n}: ratios {ratios}, median {statistics.median(ratios):.2f}x; speed-normalized {normalized}, "
                  f"median {statistics.median(normalized):.2f}x")
    if not args.smoke:
        print("targets: " + ", ".join(f"{k} {'>=' if k == 'ratio' else '<='} {v}" for k, v in TARGETS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
