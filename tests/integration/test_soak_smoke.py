"""benchmarks/soak.py --smoke: the load, the latency split and the RSS sampler end to end,
against a real `irisop serve` process on loopback (no stack, no thresholds)."""
from __future__ import annotations

import re

import pytest

from tests.integration.test_benchmarks_smoke import run_benchmark

pytestmark = pytest.mark.integration


def test_soak_smoke_reports_every_line():
    out = run_benchmark("soak.py", "--smoke", timeout=300)
    requests = int(re.search(r"(\d+) requests", out).group(1))
    assert requests > 0, out
    assert "failed requests: " in out and "p99 during / between rollouts" in out, out
    assert re.search(r"RSS serving pods \(1 measured\): median [+-]\d", out), out
    assert out.rstrip().splitlines()[-1].startswith("summary: failed "), out
