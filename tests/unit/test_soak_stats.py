"""benchmarks/soak.py's pure parts: percentiles, rollout windows, RSS growth."""
from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py")
soak = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("soak", soak)  # dataclasses look their module up there
_SPEC.loader.exec_module(soak)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert soak.percentile(values, 50) == 50.0
    assert soak.percentile(values, 99) == 99.0
    assert soak.percentile([3.0], 99) == 3.0
    assert math.isnan(soak.percentile([], 99))


def test_latencies_split_by_rollout_windows_and_failures_left_out() -> None:
    samples = [soak.Sample(1.0, 0.01, True), soak.Sample(5.0, 0.50, True), soak.Sample(9.0, 0.02, True),
               soak.Sample(5.5, 3.0, False, error="timeout")]
    during, between = soak.split_by_windows(samples, [(4.0, 6.0)])
    assert during == [0.50] and between == [0.01, 0.02]


def test_a_rollout_ends_when_ready_and_the_old_version_stopped_answering() -> None:
    samples = [soak.Sample(10.0, 0.1, True, "old"), soak.Sample(14.0, 0.1, True, "old"),
               soak.Sample(15.0, 0.1, True, "new"), soak.Sample(3.0, 0.1, True, "old")]
    assert soak.rollout_end(samples, started=9.0, ready_at=12.0, old_sha="old") == 14.1
    # Ready after the old version's last answer: Ready decides.
    assert soak.rollout_end(samples, started=9.0, ready_at=20.0, old_sha="old") == 20.0
    # Answers from before the change do not count.
    assert soak.rollout_end(samples[3:], started=9.0, ready_at=12.0, old_sha="old") == 12.0


def test_rss_growth_starts_after_the_warmup() -> None:
    series = soak.RssSeries(first_seen=0.0, points=[(0.0, 50), (10.0, 100), (20.0, 105), (30.0, 110)])
    base, last, growth = series.growth(warmup=5.0)
    assert (base, last) == (100, 110) and abs(growth - 0.10) < 1e-9
    assert soak.RssSeries(first_seen=0.0, points=[(0.0, 50), (10.0, 60)]).growth(warmup=5.0) is None


def _comm_state(pid: int) -> tuple[str, str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split("(", 1)[1].rsplit(")", 1)[0], stat.rsplit(")", 1)[1].split()[0]


def test_rss_of_a_process_tree_is_the_parent_plus_its_descendants() -> None:
    # Idle processes, so their RSS holds still between the readings (this
    # test process's own RSS does not: other tests' threads free memory).
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")

        def settled() -> bool:
            # sh waiting, its child exec'd into sleep and in its nanosleep: both RSS hold still.
            pids = children.read_text().split()
            return bool(pids) and _comm_state(parent.pid)[1] == "S" and _comm_state(int(pids[0])) == ("sleep", "S")

        deadline = time.monotonic() + 5
        while not settled():
            assert time.monotonic() < deadline, "sh did not start sleep"
            time.sleep(0.01)
        child = int(children.read_text().split()[0])
        expected = sum(soak._vmrss(Path(f"/proc/{pid}/status")) for pid in (parent.pid, child))
        assert expected > 0 and soak.rss_of_tree(parent.pid) == expected
    finally:
        for pid in [int(p) for p in children.read_text().split()]:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
