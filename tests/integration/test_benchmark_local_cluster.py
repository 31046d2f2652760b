"""benchmarks/local_cluster.py in its smoke mode, on the real local node.

Separate from test_benchmarks_smoke.py because it needs the real single-node
cluster (`irisop up`): one kubelet/containerd per machine, so it runs where
the local-node tests run (test_local_node.py, test_e2e_local.py). The smoke
mode never stops a stack that was running, and asserts no timings.
"""
from __future__ import annotations

import pytest

from tests.integration.test_benchmarks_smoke import run_benchmark

# The machine's one node: tests/run.sh runs these after the main session (see pyproject.toml).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.whole_stack]


def test_local_cluster_smoke():
    # The benchmark brings the stack up itself (`irisop up`) and stops it
    # again only if it was not running before.
    out = run_benchmark("local_cluster.py", "--smoke", timeout=900)
    assert "summary: apply-to-Ready" in out, out


def test_service_throughput_smoke():
    # A pod through its ClusterIP against `irisop serve` on the host (issue 10).
    out = run_benchmark("service_throughput.py", "--smoke", timeout=900)
    assert "summary: 1x1 service" in out, out
