"""Serving benchmark: our BentoML service against a minimal FastAPI baseline.

Both servers serve the same freshly trained model on loopback, each pinned to
CPU 0 (they are loaded one at a time); wrk runs pinned to CPU 1. For each
server it measures single-row and 64-row requests at 1 and 16 connections
(req/s, p50, p99), RSS when idle and after the load, and prints the ratios
to the baseline. Runtime is bounded: about 2 x (warm-up + 4 x --duration).

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
SCENARIOS = [("1-row", 1, 1), ("1-row", 1, 16), ("64-row", 64, 1), ("64-row", 64, 16)]


# --------------------------------------------------------------------------- baseline
class BaselineRequest(BaseModel):
    rows: list[list[float]]


def baseline_app(model_dir: str):  # -> fastapi.FastAPI
    import joblib
    from fastapi import FastAPI
    from pydantic import BaseModel

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

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"):
        if m := re.search(pattern, output):
            errors += sum(int(g) for g in m.groups())
    return rps, p50, p99, errors


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


def tree_rss_mib(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / (1024 * 1024)


def bench_server(name: str, proc: ManagedProcess, url: str, work: Path, seconds: int, log: Callable[[str], None]) -> tuple[list[Result], float, float]:
    proc.start()
    try:
        pid = proc.pid()
        assert pid is not None
        check = requests.post(url, json={"rows": [ROW]}, timeout=5)
        check.raise_for_status()
        time.sleep(1)
        idle = tree_rss_mib(pid)
        wrk(url, lua_script(work, 1), 16, 3)  # warm-up: first-request costs, allocator growth
        results = []
        for scenario, rows, conns in SCENARIOS:
            rps, p50, p99, errors = parse_wrk(wrk(url, lua_script(work, rows), conns, seconds))
            result = Result(name, scenario, rows, conns, rps, p50, p99, errors)
            log(f"  {name:9s} {scenario:6s} c={conns:<2d} {rps:9.1f} req/s {result.rows_per_s:10.0f} rows/s p50 {p50:7.2f} ms p99 {p99:7.2f} ms errors {errors}")
            results.append(result)
        loaded = tree_rss_mib(pid)
        return results, idle, loaded
    finally:
        proc.stop()


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
        subprocess.run([sys.executable, "-m", "irisop_operator.cli", "train", "--out", str(model)], check=True, capture_output=True)
        servers = []
        if args.only in (None, "ours"):
            port = free_port()
            servers.append((
                "bentoml",
                ManagedProcess(
                    name="ours",
                    argv=["taskset", "-c", SERVER_CPU, sys.executable, "-m", "irisop_operator.cli", "serve", "--model", str(model), "--port", str(port)],
                    home=work,
                    ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
                    timeout=90,
                ),
                f"http://127.0.0.1:{port}/predict",
            ))
        if args.only in (None, "baseline"):
            port = free_port()
            servers.append((
                "fastapi",
                ManagedProcess(
                    name="baseline",
                    argv=["taskset", "-c", SERVER_CPU, sys.executable, __file__, "--baseline-app", str(port), str(model)],
                    home=work,
                    ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
                    timeout=90,
                ),
                f"http://127.0.0.1:{port}/predict",
            ))
        summary: dict[str, dict] = {}
        for name, proc, url in servers:
            print(f"{name}: {url}", flush=True)
            results, idle, loaded = bench_server(name, proc, url, work, args.duration, lambda line: print(line, flush=True))
            summary[name] = {"results": [asdict(r) | {"rows_per_s": r.rows_per_s} for r in results], "rss_idle_mib": idle, "rss_loaded_mib": loaded}
            print(f"  {name:9s} RSS idle {idle:.0f} MiB, after load {loaded:.0f} MiB ({(loaded / idle - 1) * 100:+.0f}%)", flush=True)
        if len(summary) == 2:
            print("ratios bentoml / fastapi:")
            for ours, base in zip(summary["bentoml"]["results"], summary["fastapi"]["results"]):
                print(
                    f"  {ours['scenario']:6s} c={ours['connections']:<2d} throughput {ours['rps'] / base['rps']:.2f}x  "
                    f"p50 {ours['p50_ms'] / base['p50_ms']:.2f}x  p99 {ours['p99_ms'] / base['p99_ms']:.2f}x"
                )
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
