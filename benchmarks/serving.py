"""Serving benchmark: our BentoML service against a minimal FastAPI baseline.

Both servers serve the same freshly trained model on loopback, both pinned to
CPU 0 but loaded one at a time, scenarios interleaved (ours, baseline, ours,
...) so background load on the machine hits both alike; wrk runs pinned to
CPU 1. For each server it measures single-row and 64-row requests at 1 and 16
connections (req/s, p50, p99, server CPU time per request), RSS cold, warm
idle and after the load, and prints the ratios to the baseline. Runtime is
bounded: about 2 x (4 x --duration) + ~30 s of start-up and warm-up.

    python benchmarks/serving.py [--duration 15] [--json results.json]

The baseline is what a reasonable user writes first: FastAPI + uvicorn, one
worker, an ``async def`` handler, pydantic request model, and
``model.predict_proba`` from scikit-learn. It runs from this same file
(``--baseline-app``) so the benchmark is self-contained.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import requests
from pydantic import BaseModel

from irisop_deploy.local.process import ManagedProcess, free_port, http_ok

SERVER_CPU = "0"
LOAD_CPU = "1"
ROW = [5.1, 3.5, 1.4, 0.2]
# What the `irisop` entry point runs (avoids loading cli.py twice under -m).
IRISOP = [sys.executable, "-c", "import sys; from irisop_operator.cli import main; sys.exit(main())"]
SCENARIOS = [("1-row", 1, 1), ("1-row", 1, 16), ("64-row", 64, 1), ("64-row", 64, 16)]


# --------------------------------------------------------------------------- baseline
class BaselineRequest(BaseModel):
    # Module level: FastAPI resolves the handler's (string) annotation here.
    rows: list[list[float]]


def baseline_app(model_dir: str):  # -> fastapi.FastAPI
    import joblib
    from fastapi import FastAPI

    model = joblib.load(Path(model_dir) / "model.joblib")
    classes = ["setosa", "versicolor", "virginica"]
    app = FastAPI()

    @app.post("/predict")
    async def predict(req: BaselineRequest) -> dict:
        proba = model.predict_proba(req.rows)
        return {"predictions": [classes[i] for i in proba.argmax(axis=1)], "probabilities": proba.tolist()}

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    return app


def run_baseline(port: int, model_dir: str) -> None:
    import uvicorn

    uvicorn.run(baseline_app(model_dir), host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- measuring
@dataclass
class Result:
    server: str
    scenario: str
    rows: int
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float  # server CPU time (user+sys, all its processes) per request

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """(req/s, p50 ms, p99 ms, errors, completed requests) from `wrk --latency`."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        if m := re.search(pattern, output):
            errors += sum(int(g) for g in m.groups())
    return rps, p50, p99, errors, total


def lua_script(directory: Path, rows: int) -> Path:
    body = json.dumps({"rows": [ROW] * rows})
    path = directory / f"post-{rows}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def wrk(url: str, script: Path, connections: int, seconds: int) -> str:
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 30).stdout


def rss_mib(pid: int) -> tuple[float, float]:
    """(largest single process, whole process tree) RSS in MiB.

    BentoML runs a supervisor (circus arbiter) plus the worker that serves;
    both numbers are reported so neither hides the other.
    """
    import psutil

    root = psutil.Process(pid)
    sizes = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    mib = 1024 * 1024
    return max(sizes) / mib, sum(sizes) / mib


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process tree: a cost per request that other
    load on the machine does not distort the way wall-clock req/s is."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Target:
    name: str
    process: ManagedProcess
    url: str
    results: list[Result]
    cold: tuple[float, float] = (0.0, 0.0)  # after start-up and one request
    idle: tuple[float, float] = (0.0, 0.0)  # after a 3 s warm-up, then 2 s idle
    loaded: tuple[float, float] = (0.0, 0.0)


def run_all(targets: list[Target], work: Path, seconds: int, log: Callable[[str], None]) -> None:
    """Scenarios interleaved across servers, so a noisy neighbour hurts both alike."""
    for target in targets:
        target.process.start()
        requests.post(target.url, json={"rows": [ROW]}, timeout=10).raise_for_status()
    time.sleep(2)
    for target in targets:
        pid = target.process.pid()
        assert pid is not None
        target.cold = rss_mib(pid)
        # Warm-up: one-off costs (allocator arenas, socket buffers, lazily
        # built routes) are paid here, so "growth under load" below measures
        # what keeps growing, not what every server allocates once.
        wrk(target.url, lua_script(work, 1), 16, 3)
    time.sleep(2)
    for target in targets:
        pid = target.process.pid()
        assert pid is not None
        target.idle = rss_mib(pid)
    for scenario, rows, conns in SCENARIOS:
        script = lua_script(work, rows)
        for target in targets:
            pid = target.process.pid()
            assert pid is not None
            cpu_before = cpu_seconds(pid)
            rps, p50, p99, errors, total = parse_wrk(wrk(target.url, script, conns, seconds))
            cpu = (cpu_seconds(pid) - cpu_before) / max(total, 1) * 1e6
            result = Result(target.name, scenario, rows, conns, rps, p50, p99, errors, cpu)
            log(
                f"  {target.name:8s} {scenario:6s} c={conns:<2d} {rps:9.1f} req/s {result.rows_per_s:9.0f} rows/s  "
                f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  cpu {cpu:6.0f} us/req  errors {errors}"
            )
            target.results.append(result)
    for target in targets:
        pid = target.process.pid()
        assert pid is not None
        target.loaded = rss_mib(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per scenario (default 15: 4 scenarios = 1 minute of load)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", choices=["ours", "baseline"], help="benchmark one server only")
    parser.add_argument("--baseline-app", nargs=2, metavar=("PORT", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_app:
        run_baseline(int(args.baseline_app[0]), args.baseline_app[1])
        return 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"benchmark needs {tool} (Debian packages wrk, util-linux)", file=sys.stderr)
            return 2
    if (os.cpu_count() or 1) < 2:
        print("benchmark needs 2 CPUs: one for the server, one for wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="irisop-bench-"))
    try:
        model = work / "model"
        subprocess.run([*IRISOP, "train", "--out", str(model)], check=True, capture_output=True)
        targets: list[Target] = []
        if args.only in (None, "ours"):
            port = free_port()
            targets.append(Target(
                "bentoml",
                ManagedProcess(
                    name="ours",
                    argv=["taskset", "-c", SERVER_CPU, *IRISOP, "serve", "--model", str(model), "--port", str(port)],
                    home=work,
                    ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
                    timeout=120,
                ),
                f"http://127.0.0.1:{port}/predict",
                [],
            ))
        if args.only in (None, "baseline"):
            port = free_port()
            targets.append(Target(
                "fastapi",
                ManagedProcess(
                    name="baseline",
                    argv=["taskset", "-c", SERVER_CPU, sys.executable, __file__, "--baseline-app", str(port), str(model)],
                    home=work,
                    ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
                    timeout=120,
                ),
                f"http://127.0.0.1:{port}/predict",
                [],
            ))
        print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
        try:
            run_all(targets, work, args.duration, lambda line: print(line, flush=True))
        finally:
            for target in targets:
                target.process.stop()
        summary: dict[str, dict] = {}
        for t in targets:
            summary[t.name] = {
                "results": [asdict(r) | {"rows_per_s": r.rows_per_s} for r in t.results],
                "rss_cold_mib": {"largest_process": t.cold[0], "tree": t.cold[1]},
                "rss_idle_mib": {"largest_process": t.idle[0], "tree": t.idle[1]},
                "rss_loaded_mib": {"largest_process": t.loaded[0], "tree": t.loaded[1]},
            }
            print(
                f"  {t.name:8s} RSS cold: worker {t.cold[0]:.0f} MiB, all processes {t.cold[1]:.0f} MiB; "
                f"warm idle: worker {t.idle[0]:.0f} MiB, all processes {t.idle[1]:.0f} MiB; "
                f"after {len(t.results) * args.duration} s of load: worker {t.loaded[0]:.0f} MiB "
                f"({(t.loaded[0] / t.idle[0] - 1) * 100:+.0f}% vs warm, {(t.loaded[0] / t.cold[0] - 1) * 100:+.0f}% vs cold), "
                f"all {t.loaded[1]:.0f} MiB ({(t.loaded[1] / t.idle[1] - 1) * 100:+.0f}% vs warm)"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if len(summary) == 2:
            print("ratios bentoml / fastapi:")
            for ours, base in zip(summary["bentoml"]["results"], summary["fastapi"]["results"]):
                print(
                    f"  {ours['scenario']:6s} c={ours['connections']:<2d} throughput {ours['rps'] / base['rps']:.2f}x  "
                    f"p50 {ours['p50_ms'] / base['p50_ms']:.2f}x  p99 {ours['p99_ms'] / base['p99_ms']:.2f}x  "
                    f"cpu/request {ours['cpu_us_per_request'] / base['cpu_us_per_request']:.2f}x"
                )
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
