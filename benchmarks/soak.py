"""Soak: bounded load for 10 minutes with a model version change every minute (issue 13.6).

    python benchmarks/soak.py                           # on the running local stack (`irisop up`)
    python benchmarks/soak.py --minutes 3 --interval 30
    python benchmarks/soak.py --smoke                   # CI: a few seconds, no stack, no thresholds

It prints:
  * failed requests (goal 0): any error, timeout or wrong answer;
  * p50/p99 latency during rollouts against between them, and their ratio
    (both measured in the same run, under the same load);
  * RSS growth of the operator pod over the whole soak, and of every serving
    pod over its life (goal < 10 %). A serving pod's baseline is its first
    sample at least --rss-warmup seconds after it was first seen running, so
    start-up allocations are not counted as growth.

The load is bounded: --workers threads, one request at a time each, a short
pause between requests, to the IrisModel's Service ClusterIP (routed on this
host). A rollout lasts from the spec change until the IrisModel is Ready on the
new sha256 and no answer from the old version has been seen since. RSS is read
from /proc for the processes in each pod's cgroup (the node runs on this host).

The stack mode creates IrisModel `iris-soak` (the sample's spec) in `default`,
uploads one model per change to s3://iris-models/soak/v<N>/ beforehand, and
deletes the IrisModel at the end. It never starts or stops the stack.

--smoke runs without the stack: the load and the RSS sampler against one
`irisop serve` process on loopback, for a few seconds, no version change. It
checks the benchmark end to end; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]
CLASSES = ["setosa", "versicolor", "virginica"]
NAME, NAMESPACE = "iris-soak", "default"
IRISOP = [sys.executable, "-c", "import sys; from irisop_operator.cli import main; sys.exit(main())"]


# ----------------------------------------------------------------- pure parts
@dataclass(frozen=True)
class Sample:
    started: float  # time.monotonic()
    seconds: float
    ok: bool
    sha: str = ""
    error: str = ""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def within(t: float, windows: Iterable[tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in windows)


def split_by_windows(samples: Iterable[Sample], windows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Latencies of successful requests started during a window, and of the others."""
    during, between = [], []
    for s in samples:
        if s.ok:
            (during if within(s.started, windows) else between).append(s.seconds)
    return during, between


def rollout_end(samples: Iterable[Sample], started: float, ready_at: float, old_sha: str) -> float:
    """When a rollout is over: Ready on the new sha, and the old version's last answer after the change."""
    last_old = max((s.started + s.seconds for s in samples if s.ok and s.sha == old_sha and s.started >= started),
                   default=started)
    return max(ready_at, last_old)


@dataclass
class RssSeries:
    """RSS samples of one pod (or process): (time, bytes)."""

    first_seen: float
    points: list[tuple[float, int]] = field(default_factory=list)

    def growth(self, warmup: float) -> tuple[int, int, float] | None:
        """(baseline, last, relative growth) or None without two samples after the warm-up."""
        settled = [(t, rss) for t, rss in self.points if t >= self.first_seen + warmup]
        if len(settled) < 2 or settled[0][1] <= 0:
            return None
        base, last = settled[0][1], settled[-1][1]
        return base, last, last / base - 1


# ------------------------------------------------------------------- the load
class Load:
    """--workers threads, one request at a time each; every answer recorded."""

    def __init__(self, url: str, workers: int, pause: float, timeout: float = 5.0) -> None:
        self.url, self.pause, self.timeout = url, pause, timeout
        self.samples: list[Sample] = []  # list.append is atomic under the GIL
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                resp = session.post(self.url, json={"rows": ROWS}, timeout=self.timeout)
                body = resp.json() if resp.ok else {}
                ok = resp.ok and body.get("predictions") == CLASSES
                error = "" if ok else f"HTTP {resp.status_code}: {resp.text[:200]}"
                sample = Sample(started, time.monotonic() - started, ok, body.get("model_sha256", ""), error)
            except (requests.RequestException, ValueError) as exc:
                sample = Sample(started, time.monotonic() - started, False, error=repr(exc)[:200])
            self.samples.append(sample)
            self._halt.wait(self.pause)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)


# ----------------------------------------------------------------------- RSS
def rss_of_pod(uid: str) -> int:
    """Total VmRSS (bytes) of the processes in a pod's cgroup (its path holds the pod UID)."""
    variants = (uid, uid.replace("-", "_"))  # cgroupfs or systemd driver spelling
    return _total_rss(lambda proc: any(v in (proc / "cgroup").read_text() for v in variants))


def rss_of_tree(pid: int) -> int:
    """Total VmRSS (bytes) of a process and its descendants: a server and the
    workers it forked (BentoML's start sessions of their own)."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree = {pid}
    while True:
        grown = tree | {child for child, parent in parents.items() if parent in tree}
        if grown == tree:
            break
        tree = grown
    return _total_rss(lambda proc: int(proc.name) in tree)


def _total_rss(member: Callable[[Path], bool]) -> int:
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if member(proc):
                total += _vmrss(proc / "status")
        except OSError:
            continue  # the process ended meanwhile
    return total


def _vmrss(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    """Every `every` seconds: RSS of each target that `targets()` names (name -> reader)."""

    def __init__(self, targets: Callable[[], dict[str, Callable[[], int]]], every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.targets, self.every = targets, every
        self.series: dict[str, RssSeries] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            for name, read in self.targets().items():
                rss = read()
                if rss > 0:
                    self.series.setdefault(name, RssSeries(first_seen=now)).points.append((now, rss))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.every + 5)


# -------------------------------------------------------------------- report
def report(samples: list[Sample], windows: list[tuple[float, float]], durations: list[float],
           operator: dict[str, RssSeries], serving: dict[str, RssSeries], warmup: float, elapsed: float,
           smoke: bool, out: Callable[[str], None] = print) -> dict[str, Any]:
    failed = [s for s in samples if not s.ok]
    during, between = split_by_windows(samples, windows)
    p99_during, p99_between = percentile(during, 99), percentile(between, 99)
    ratio = p99_during / p99_between if during and between else float("nan")
    goal = "" if smoke else " (goal 0)"
    out(f"soak: {elapsed / 60:.1f} min, {len(windows)} version changes, {len(samples)} requests")
    out(f"failed requests: {len(failed)}{goal}")
    for text in sorted({s.error for s in failed})[:5]:
        out(f"  e.g. {text}")
    out(f"latency between rollouts: p50 {percentile(between, 50) * 1e3:.1f} ms, p99 {p99_between * 1e3:.1f} ms "
        f"(n={len(between)})")
    out(f"latency during rollouts:  p50 {percentile(during, 50) * 1e3:.1f} ms, p99 {p99_during * 1e3:.1f} ms "
        f"(n={len(during)})")
    out(f"p99 during / between rollouts: {ratio:.2f}")
    if durations:
        out(f"rollout durations: median {statistics.median(durations):.1f} s, max {max(durations):.1f} s")
    rss_goal = "" if smoke else ", goal < 10%"
    op = _growths(operator, warmup)
    for name, (base, last, growth) in op.items():
        out(f"RSS operator {name}: {base / 2**20:.1f} -> {last / 2**20:.1f} MiB ({growth:+.1%}{rss_goal})")
    if not op:
        out("RSS operator: not measured (no operator pod in this mode)" if smoke else "RSS operator: too few samples")
    sv = _growths(serving, warmup)
    if sv:
        values = [g for _, _, g in sv.values()]
        out(f"RSS serving pods ({len(sv)} measured): median {statistics.median(values):+.1%}, "
            f"max {max(values):+.1%}{rss_goal}")
    else:
        out("RSS serving pods: too few samples after the warm-up")
    worst_serving = max((g for _, _, g in sv.values()), default=float("nan"))
    worst_operator = max((g for _, _, g in op.values()), default=float("nan"))
    out(f"summary: failed {len(failed)}, p99 during/between {ratio:.2f}, operator RSS {worst_operator:+.1%}, "
        f"serving RSS max {worst_serving:+.1%}")
    return {"failed": len(failed), "requests": len(samples), "p99_during": p99_during, "p99_between": p99_between,
            "ratio": ratio, "operator_growth": worst_operator, "serving_growth": worst_serving,
            "rollouts": durations}


def _growths(series: dict[str, RssSeries], warmup: float) -> dict[str, tuple[int, int, float]]:
    return {name: g for name, s in series.items() if (g := s.growth(warmup)) is not None}


# --------------------------------------------------------------- smoke (no stack)
def smoke(seconds: float, workers: int) -> int:
    from irisop_deploy.local.process import ManagedProcess, free_port, http_ok
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    with tempfile.TemporaryDirectory(prefix="irisop-soak-") as tmp:
        model = Path(tmp) / "model"
        write_artifact(model, train(TrainParams()), "joblib")
        port = free_port()
        server = ManagedProcess(name="soak-serve", argv=[*IRISOP, "serve", "--model", str(model), "--port", str(port)],
                                home=Path(tmp), env={"BENTOML_DO_NOT_TRACK": "True"},
                                ready=http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=120)
        server.start()
        try:
            pid = server.pid() or 0
            sampler = RssSampler(lambda: {"irisop serve": lambda: rss_of_tree(pid)}, every=0.5)
            started = time.monotonic()
            sampler.start()
            with Load(f"http://127.0.0.1:{port}/predict", workers, pause=0.01) as load:
                time.sleep(seconds)
            sampler.stop()
            report(load.samples, [], [], {}, sampler.series, warmup=0.0, elapsed=time.monotonic() - started,
                   smoke=True)
        finally:
            server.stop()
    return 0


# --------------------------------------------------------------- the stack
class StackSoak:
    """One soak on the running local stack."""

    def __init__(self, minutes: float, interval: float, workers: int, warmup: float) -> None:
        from irisop_deploy.local.stack import Stack

        self.stack = Stack()
        self.minutes, self.interval, self.workers, self.warmup = minutes, interval, workers, warmup

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.stack.kubectl(*args, "-o", "json"))

    def status(self) -> dict[str, Any]:
        obj = self.kubectl_json("-n", NAMESPACE, "get", "irismodel", NAME)
        status = obj.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        return {"ready": ready and current, "sha": status.get("model", {}).get("sha256", "")}

    def wait_ready(self, sha: str | None, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st["ready"] and (sha is None or st["sha"] == sha):
                return time.monotonic()
            time.sleep(0.5)
        raise SystemExit(f"{NAMESPACE}/{NAME} not Ready on {sha or 'any sha'} after {timeout:.0f}s")

    def upload_versions(self, count: int, tmp: Path) -> list[tuple[str, str]]:
        """(uri, sha256) of `count` models trained with other seeds, uploaded before the soak."""
        from irisop_deploy.local import network, s3store
        from irisop_model.artifact import write_artifact
        from irisop_model.training import TrainParams, train
        from irisop_model.upload import parse_s3_uri, upload_artifact

        s3 = s3store.client(network.S3_PORT, network.STACK_ADDRESS)
        versions = []
        for i in range(count):
            out = tmp / f"v{i}"
            meta = write_artifact(out, train(TrainParams(seed=1000 + i)), "joblib")
            uri = f"s3://iris-models/soak/v{i}/"
            upload_artifact(out, [p.name for p in out.iterdir() if p.is_file()], parse_s3_uri(uri), client=s3)
            versions.append((uri, meta["sha256"]))
        return versions

    def apply(self, uri: str, tmp: Path) -> None:
        sample = self.kubectl_json("-n", "default", "get", "irismodel", "iris")
        body = {"apiVersion": sample["apiVersion"], "kind": sample["kind"],
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {**sample["spec"], "model": {**sample["spec"]["model"], "uri": uri}}}
        body["spec"]["model"].pop("sha256", None)
        path = tmp / "soak.json"
        path.write_text(json.dumps(body))
        self.stack.kubectl("apply", "--server-side", "-f", str(path))

    def service_url(self) -> str:
        svc = self.kubectl_json("-n", NAMESPACE, "get", "service", NAME)
        return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/predict"

    def pods(self, selector: str, namespace: str) -> dict[str, Callable[[], int]]:
        found = self.kubectl_json("-n", namespace, "get", "pods", "-l", selector)
        return {p["metadata"]["name"]: (lambda uid=p["metadata"]["uid"]: rss_of_pod(uid))
                for p in found["items"] if p.get("status", {}).get("phase") == "Running"}

    def run(self) -> int:
        from irisop_deploy.local import install
        from irisop_operator import names

        if not self.stack.plane.running():
            raise SystemExit("the local stack is not running: `irisop up` first (or use --smoke)")
        # A change at every interval mark before the end (10 min, 60 s: nine,
        # at 1..9 min); the last interval shows the settled state after them.
        changes = max(1, math.ceil(self.minutes * 60 / self.interval) - 1)
        with tempfile.TemporaryDirectory(prefix="irisop-soak-") as tmp_name:
            tmp = Path(tmp_name)
            versions = self.upload_versions(changes + 1, tmp)
            self.apply(versions[0][0], tmp)
            try:
                self.wait_ready(versions[0][1])
                return self._soak(versions, tmp, install, names)
            finally:
                self.stack.kubectl("-n", NAMESPACE, "delete", "irismodel", NAME, "--ignore-not-found", "--wait=false")

    def _soak(self, versions: list[tuple[str, str]], tmp: Path, install: Any, names: Any) -> int:
        operator_sel = f"app.kubernetes.io/name={install.DEPLOYMENT}"
        serving_sel = names.selector_string(NAME)
        operator_rss = RssSampler(lambda: self.pods(operator_sel, install.NAMESPACE), every=5.0)
        serving_rss = RssSampler(lambda: self.pods(serving_sel, NAMESPACE), every=2.0)
        changes: list[tuple[float, float, str]] = []  # (patched at, ready at, old sha)
        started = time.monotonic()
        operator_rss.start()
        serving_rss.start()
        with Load(self.service_url(), self.workers, pause=0.02) as load:
            for i in range(1, len(versions)):
                next_change = started + i * self.interval
                time.sleep(max(0.0, next_change - time.monotonic()))
                uri, sha = versions[i]
                patched = time.monotonic()
                self.stack.kubectl("-n", NAMESPACE, "patch", "irismodel", NAME, "--type=merge", "-p",
                                   json.dumps({"spec": {"model": {"uri": uri}}}))
                changes.append((patched, self.wait_ready(sha), versions[i - 1][1]))
            time.sleep(max(0.0, started + max(self.minutes * 60, len(versions) * self.interval) - time.monotonic()))
        operator_rss.stop()
        serving_rss.stop()
        windows = [(at, rollout_end(load.samples, at, ready, old)) for at, ready, old in changes]
        report(load.samples, windows, [end - start for start, end in windows], operator_rss.series,
               serving_rss.series, self.warmup, time.monotonic() - started, smoke=False)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no stack, no thresholds (CI)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between version changes (default 60)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent requests (default 4)")
    parser.add_argument("--rss-warmup", type=float, default=15.0,
                        help="seconds after a pod is first seen before its RSS baseline (default 15)")
    args = parser.parse_args(argv)

    from irisop_deploy.local.process import exit_on_sigterm

    exit_on_sigterm()
    if args.smoke:
        return smoke(seconds=3.0, workers=2)
    return StackSoak(args.minutes, args.interval, args.workers, args.rss_warmup).run()


if __name__ == "__main__":
    sys.exit(main())
