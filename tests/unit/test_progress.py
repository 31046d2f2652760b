"""Status while waiting (issue 13.3): attempt numbering and the slow-step announcement."""
from __future__ import annotations

import threading

from irisop_operator.kube import KubeError
from irisop_operator.progress import Attempt, Attempts, announce_if_slow


def test_attempts_count_per_source_and_start_again_for_a_new_one():
    tries = Attempts()
    assert tries.start("artifact", "src1") == Attempt(1, None)
    assert tries.failed("artifact", "src1", "S3 unreachable: timeout") == Attempt(1, "S3 unreachable: timeout")
    assert tries.start("artifact", "src1") == Attempt(2, "S3 unreachable: timeout")
    assert tries.failed("artifact", "src1", "503") == Attempt(2, "503")
    assert tries.start("artifact", "src2") == Attempt(1, None)  # the user changed the spec meanwhile
    assert tries.start("image", "src1") == Attempt(1, None)  # steps are counted apart
    tries.failed("artifact", "src2", "x")
    tries.finished("artifact")
    assert tries.start("artifact", "src2") == Attempt(1, None)


def test_attempt_descriptions():
    assert Attempt(1, None).describe("reading s3://b/v2/") == "reading s3://b/v2/"
    assert Attempt(2, "timeout").describe("reading s3://b/v2/") == "reading s3://b/v2/ (attempt 2: timeout)"


def test_a_slow_step_is_announced_once():
    calls, announced = [], threading.Event()

    def announce():
        calls.append(1)
        announced.set()

    with announce_if_slow(0.01, announce) as notice:
        assert announced.wait(10), "the slow step was never announced"
    notice.join(10)
    assert calls == [1] and notice.announced


def test_a_fast_step_announces_nothing():
    calls = []
    with announce_if_slow(0.2, lambda: calls.append(1)) as notice:
        pass
    notice.join(10)  # the timer thread has ended: it can no longer announce
    assert calls == [] and not notice.announced


def test_an_announcement_that_fails_is_only_logged():
    def announce():
        raise KubeError("PATCH status: 503", 503)

    with announce_if_slow(0.0, announce) as notice:
        notice.join(10)
    assert not notice.announced
