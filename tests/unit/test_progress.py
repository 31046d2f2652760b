"""Status while waiting (issue 13.3): attempt numbering and the slow-step announcement."""
from __future__ import annotations

import threading
import time

import pytest

from irisop_operator import conditions as c
from irisop_operator.kube import KubeError
from irisop_operator.pipeline import ArtifactError, ImageError
from irisop_operator.progress import Attempt, Attempts, SlowSteps
from irisop_operator.reconcile import Reconciler
from irisop_operator.settings import Settings
from tests.unit.test_reconcile import FakeAPI, FakePipeline, body


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

    with SlowSteps().announce_if_slow(0.01, announce) as notice:
        assert announced.wait(10), "the slow step was never announced"
    notice.join(10)
    assert calls == [1] and notice.announced


def test_a_fast_step_announces_nothing():
    calls = []
    with SlowSteps().announce_if_slow(0.2, lambda: calls.append(1)) as notice:
        pass
    notice.join(10)  # cancelled: it can no longer announce
    assert calls == [] and not notice.announced


def test_an_announcement_that_fails_is_only_logged():
    def announce():
        raise KubeError("PATCH status: 503", 503)

    with SlowSteps().announce_if_slow(0.0, announce) as notice:
        notice.join(10)
    assert not notice.announced


# ---- wired into the Reconciler (the recording fake API of test_reconcile) ------------------------


class Gate(FakePipeline):
    """A pipeline whose steps block until the test has seen what status says meanwhile."""

    def __init__(self):
        super().__init__()
        self.fetch_may_finish, self.push_may_finish = threading.Event(), threading.Event()
        self.fetch_error = self.push_error = None

    def fetch_artifact(self, source, settings):
        assert self.fetch_may_finish.wait(10), "the test never released the fetch"
        if self.fetch_error:
            raise self.fetch_error
        return super().fetch_artifact(source, settings)

    def ensure_model_image(self, artifact, repository, settings):
        assert self.push_may_finish.wait(10), "the test never released the push"
        if self.push_error:
            raise self.push_error
        return super().ensure_model_image(artifact, repository, settings)


@pytest.fixture
def slow():
    events = []
    api = FakeAPI(emit=lambda b, t, r, m: events.append((t, r)))
    rec = Reconciler(Settings(default_repository="reg.local/iris"), api, pipeline=Gate())
    rec.announce_after = 0.01
    return rec, api, events


def _in_background(fn, *args):
    errors = []

    def run():
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _status_says(api, type_, status, reason, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cond = c.condition(api.status, type_)
        if (cond.get("status"), cond.get("reason")) == (status, reason):
            return cond
        time.sleep(0.005)
    raise AssertionError(f"status never said {type_}={status} {reason}: {api.status.get('conditions')}")


def test_a_slow_read_and_a_slow_push_are_announced_with_the_new_generation(slow):
    rec, api, _ = slow
    thread, errors = _in_background(rec.reconcile, body(generation=2))
    reading = _status_says(api, c.ARTIFACT_READY, "Unknown", c.READING)
    assert reading["message"] == "reading s3://b/iris/v1/" and reading["observedGeneration"] == 2
    assert api.status["observedGeneration"] == 2
    assert c.condition(api.status, c.IMAGE_READY)["reason"] == c.PENDING
    rec.pipeline.fetch_may_finish.set()
    pushing = _status_says(api, c.IMAGE_READY, "Unknown", c.PUSHING)
    assert pushing["message"] == "pushing the model image to reg.local/iris"
    assert c.condition(api.status, c.ARTIFACT_READY)["reason"] == c.VERIFIED
    rec.pipeline.push_may_finish.set()
    thread.join(10)
    assert not errors
    assert c.condition(api.status, c.IMAGE_READY)["status"] == "True"


def test_a_transient_failure_reads_unknown_and_the_retry_names_the_attempt(slow):
    rec, api, events = slow
    rec.pipeline.fetch_error = ArtifactError("S3Unavailable", "S3 unreachable reading s3://b/iris/v1/model.json: "
                                             "Read timeout", transient=True)
    rec.pipeline.fetch_may_finish.set()
    with pytest.raises(ArtifactError):
        rec.reconcile(body())
    failed = c.condition(api.status, c.ARTIFACT_READY)
    assert (failed["status"], failed["reason"]) == ("Unknown", "S3Unavailable")
    assert failed["message"] == ("reading s3://b/iris/v1/ failed (attempt 1: S3 unreachable reading "
                                 "s3://b/iris/v1/model.json: Read timeout); retrying")
    assert c.condition(api.status, c.DEGRADED)["reason"] == "S3Unavailable"

    # kopf's retry: the store is still slow; status says which attempt runs and why there is one.
    rec.pipeline.fetch_may_finish.clear()
    thread, errors = _in_background(rec.reconcile, body())
    retry = _status_says(api, c.ARTIFACT_READY, "Unknown", c.READING)
    assert retry["message"] == ("reading s3://b/iris/v1/ (attempt 2: S3 unreachable reading "
                                "s3://b/iris/v1/model.json: Read timeout)")
    rec.pipeline.fetch_error = None
    rec.pipeline.fetch_may_finish.set()
    rec.pipeline.push_may_finish.set()
    thread.join(10)
    assert not errors
    assert c.condition(api.status, c.ARTIFACT_READY)["reason"] == c.VERIFIED
    assert events.count(("Warning", "S3Unavailable")) == 1


def test_a_permanent_failure_is_false_and_fast_steps_write_nothing_extra(slow):
    rec, api, _ = slow
    rec.announce_after = 30.0  # every step below finishes long before
    rec.pipeline.push_may_finish.set()
    rec.pipeline.fetch_may_finish.set()
    rec.pipeline.fetch_error = ArtifactError("ChecksumMismatch", "hashes differ")
    with pytest.raises(ArtifactError):
        rec.reconcile(body())
    assert c.condition(api.status, c.ARTIFACT_READY)["status"] == "False"
    writes = len([w for w in api.writes if w[0] == "status"])
    rec.pipeline.fetch_error = None
    rec.reconcile(body(generation=2))
    assert len([w for w in api.writes if w[0] == "status"]) == writes + 1  # the result only, no announcement

    rec.pipeline.push_error = ImageError("RegistryUnreachable", "connection refused", transient=True)
    with pytest.raises(ImageError):
        rec.reconcile(body(generation=3, repository="other.local/iris"))
    image = c.condition(api.status, c.IMAGE_READY)
    assert image["status"] == "Unknown" and "pushing the model image to other.local/iris failed (attempt 1" in image["message"]
