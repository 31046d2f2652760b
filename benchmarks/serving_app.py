"""The serving app in process: µs per POST /predict through the whole ASGI app BentoML builds, no HTTP.

This tree's ``serving/`` against a git revision's (default HEAD), in
alternating child processes, each loading its ``serving/`` as
``irisop_serving``; the ratio is printed per body size. With no socket,
no uvicorn and no wrk in the way, it isolates what a change to the route or
the middlewares costs, which benchmarks/serving.py cannot do on a noisy
2-core machine (its p99 and its peers move by 50 % between rounds).

    python benchmarks/serving_app.py                       # against HEAD
    python benchmarks/serving_app.py --baseline 9fd363f    # against an older revision
    python benchmarks/serving_app.py --smoke               # CI: a few hundred requests, no thresholds

Each measurement: the app's lifespan is started (the service loads a freshly
trained model), 500 warm-up requests, then --repeats timed batches of
--requests calls; the best batch is kept (the least disturbed by the rest of
the machine).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROW = [5.1, 3.5, 1.4, 0.2]


def _load_serving(source: Path) -> None:
    """Make ``irisop_serving`` this folder, whatever the installed package maps it to."""
    spec = importlib.util.spec_from_file_location("irisop_serving", source / "__init__.py",
                                                  submodule_search_locations=[str(source)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["irisop_serving"] = module
    spec.loader.exec_module(module)


async def _measure(rows: int, requests: int, repeats: int) -> float:
    from _bentoml_impl.server.app import ServiceAppFactory

    from irisop_serving import service

    service.IrisClassifier.inject_config()  # what BentoML's worker does before it builds the app
    app = ServiceAppFactory(service.IrisClassifier, is_main=True)()
    lifespan_in: asyncio.Queue = asyncio.Queue()
    lifespan_out: asyncio.Queue = asyncio.Queue()
    await lifespan_in.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                         lifespan_in.get, lifespan_out.put))
    started = await lifespan_out.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app did not start: {started}")

    body = json.dumps({"rows": [ROW] * rows}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 50000)}
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(min(500, requests)):
        await app(dict(scope), receive, send)
    best = float("inf")
    for _ in range(repeats):
        statuses.clear()
        start = time.perf_counter()
        for _ in range(requests):
            await app(dict(scope), receive, send)
        best = min(best, (time.perf_counter() - start) / requests)
        if set(statuses) != {200}:
            raise SystemExit(f"/predict answered {sorted(set(statuses))}, not 200")
    lifespan.cancel()
    return best * 1e6


def worker(args: argparse.Namespace) -> int:
    from irisop_deploy.local.process import exit_on_sigterm

    exit_on_sigterm()
    _load_serving(args.source)
    os.environ["IRISOP_MODEL_DIR"] = str(args.model)
    print(json.dumps({"us": asyncio.run(_measure(args.rows[0], args.requests, args.repeats))}), flush=True)
    os._exit(0)  # BentoML's container holds threads that would outlive the measurement


def _baseline_tree(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "serving"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision} serving failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "serving"


def _one(source: Path, model: Path, rows: int, requests: int, repeats: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--worker", "--source", str(source), "--model", str(model),
                          "--rows", str(rows), "--requests", str(requests), "--repeats", str(repeats)],
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measuring {source} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision whose serving/ is the baseline (default HEAD)")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--requests", type=int, default=5000, help="calls per timed batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per measurement; the best is kept")
    parser.add_argument("--pairs", type=int, default=3, help="alternating (this tree, baseline) measurements per size")
    parser.add_argument("--smoke", action="store_true", help="CI: 300 calls, 2 batches, one pair")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.smoke:
        args.requests, args.repeats, args.pairs = 300, 2, 1

    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    with tempfile.TemporaryDirectory(prefix="irisop-serving-app-") as tmp:
        work = Path(tmp)
        model = work / "model"
        write_artifact(model, train(TrainParams(seed=7)), "joblib")
        baseline = _baseline_tree(args.baseline, work)
        ours = REPO / "serving"
        for rows in args.rows:
            mine, theirs = [], []
            for _ in range(args.pairs):
                mine.append(_one(ours, model, rows, args.requests, args.repeats))
                theirs.append(_one(baseline, model, rows, args.requests, args.repeats))
            print(f"{rows:>3} rows: this tree {', '.join(f'{v:.1f}' for v in mine)} µs; "
                  f"{args.baseline} {', '.join(f'{v:.1f}' for v in theirs)} µs; "
                  f"best {min(mine):.1f} vs {min(theirs):.1f} µs, ratio (this tree / baseline) "
                  f"{min(mine) / min(theirs):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
