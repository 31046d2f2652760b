"""Every benchmark runs in CI in its short smoke mode, so a broken benchmark fails CI.

Smoke modes check that a benchmark still runs end to end (its services start,
its scenarios complete, it stops what it started); they assert no performance
numbers. Each benchmark starts its own services on loopback. The one that
needs the real local node (benchmarks/local_cluster.py) is in
test_benchmark_local_cluster.py, run by whoever owns the node.
"""
from __future__ import annotations

import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.aws import require_tool
from tests.fixtures.tools import run

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str, timeout: float = 600) -> str:
    """Run benchmarks/<script> from the repo root; its own output on failure.

    Afterwards no process it started may live on. Every process it starts
    inherits its environment, so a marker variable finds them exactly, even
    the ones in sessions of their own.
    """
    marker = f"IRISOP_BENCH_SMOKE={uuid.uuid4().hex}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           **dict([marker.split("=", 1)])}
    out = run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env, check=False,
              timeout=timeout)
    assert out.returncode == 0, f"{script} {' '.join(args)} exited {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    left = _carrying(marker.encode())
    assert not left, f"{script} left processes running: {left}"
    return out.stdout


def _carrying(marker: bytes) -> list[str]:
    """Live (non-zombie) processes whose environment holds marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def test_operator_scale_smoke():
    out = run_benchmark("operator_scale.py", "--smoke", timeout=600)
    assert "N=3: operator" in out and "restart -> new model handled" in out, out
    assert re.search(r"speed-normalized [\d.]+x", out), out  # the CPU-speed probe sampled both windows


def test_image_pipeline_smoke():
    for tool in ("podman", "buildah", "skopeo", "docker-registry", "moto_server", "bentoml"):
        require_tool(tool)
    out = run_benchmark("image_pipeline.py", "--smoke", timeout=1800)
    assert "summary: layer" in out, out


def test_serving_smoke():
    for tool in ("wrk", "taskset"):
        require_tool(tool)
    out = run_benchmark("serving.py", "--smoke", timeout=600)
    # Smoke: the comparison ran end to end (ratios printed); no thresholds.
    assert "every ratio to ours (irisop)" in out and "targets (issue 10):" in out, out
    assert "the same, speed-normalized:" in out and " nan " not in out, out


def test_serving_app_smoke():
    require_tool("git")
    out = run_benchmark("serving_app.py", "--smoke", timeout=600)
    # Both trees answered 200 to every timed call, and the ratio was printed.
    assert out.count("ratio (this tree / baseline)") == 2, out
