"""Fast Degraded (issue 13.2): the new pods' permanent refusal is reported without waiting for the deadline.

The Reconciler runs with the recording fake API of test_reconcile; the clock
is injected, so the read throttle is tested without sleeping.
"""
from __future__ import annotations

import pytest

from irisop_operator import conditions as c
from irisop_operator.newpods import NewPodsInspector
from irisop_operator.reconcile import Reconciler
from irisop_operator.settings import Settings
from irisop_serving.contract import MODEL_REJECTED, QUALITY_GATE_FAILED, not_ready_line
from tests.unit.test_reconcile import SHA1, FakeAPI, FakePipeline, body

NEW_POD = {"metadata": {"name": "iris-new", "annotations": {"ml.irisop.dev/model-sha256": SHA1}},
           "status": {"containerStatuses": [{"name": "predictor", "ready": False, "state": {"running": {}}}]}}
STALLED = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "iris-abc" has timed out progressing.'}]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def world():
    events, requeued, clock = [], [], Clock()
    api = FakeAPI(emit=lambda b, t, r, m: events.append((t, r, m)))
    api.reads = 0
    rec = Reconciler(Settings(default_repository="reg.local/iris"), api, pipeline=FakePipeline(),
                     requeue=lambda key, b: requeued.append(key))
    rec.new_pods = NewPodsInspector(api, interval=3.0, clock=clock)
    rec.reconcile(body())
    clock.now += 10  # the first look (no pods yet) is long past
    requeued.clear()
    return rec, api, events, requeued, clock


def _rolling(api, log, conditions=()):
    """One old pod serves, the surge pod of the new revision runs but is not ready."""
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                     "availableReplicas": 1, "conditions": list(conditions)}

    def list_pods(namespace, selector):
        api.reads += 1
        return [NEW_POD]

    api.list_pods = list_pods
    api.pod_log_tail = lambda namespace, pod, container: log


def test_a_permanent_refusal_degrades_at_once_with_the_pods_reason(world):
    rec, api, events, requeued, _ = world
    _rolling(api, "INFO starting\nERROR irisop " + not_ready_line("dict has no predict_proba", MODEL_REJECTED))
    rec.resync_children(body())
    degraded = c.condition(api.status, c.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", MODEL_REJECTED)
    assert degraded["message"] == "pod iris-new: model not ready: dict has no predict_proba"
    assert "[permanent" not in degraded["message"]
    assert c.condition(api.status, c.READY)["status"] == "False"
    assert ("Warning", MODEL_REJECTED, degraded["message"]) in events
    assert requeued == []  # nothing left to wait for: the rollout stays held until the spec changes
    # The Deployment is not touched: its template still names the new version.
    writes = len(api.writes)
    rec.resync_children(body())
    assert len(api.writes) == writes and sum(e[1] == MODEL_REJECTED for e in events) == 1


def test_a_transient_refusal_waits_for_the_deadline(world):
    rec, api, events, requeued, clock = world
    _rolling(api, "ERROR irisop " + not_ready_line("loading model.joblib in a child process failed: timed out", None))
    rec.resync_children(body())
    assert c.condition(api.status, c.DEGRADED)["status"] == "False"
    assert requeued == []  # the pod has said its (transient) piece: the deadline decides

    _rolling(api, "ERROR irisop " + not_ready_line("loading model.joblib in a child process failed: timed out", None),
             conditions=STALLED)
    rec.resync_children(body())
    degraded = c.condition(api.status, c.DEGRADED)
    assert (degraded["status"], degraded["reason"]) == ("True", c.ROLLOUT_STALLED)
    assert degraded["message"].startswith("pod iris-new: model not ready: loading model.joblib")


def test_a_loading_pod_is_looked_at_again_and_an_unschedulable_one_is_not(world):
    rec, api, _, requeued, clock = world
    _rolling(api, "INFO loading the model")
    rec.resync_children(body())
    assert requeued == [("ml", "iris")]  # it may still refuse: keep looking while the rollout is unfinished

    requeued.clear()
    clock.now += 10
    unschedulable = {"metadata": NEW_POD["metadata"], "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/0 nodes are available"}]}}
    api.list_pods = lambda namespace, selector: [unschedulable]
    rec.resync_children(body())
    # A fleet whose pods cannot start (no node, no capacity) costs no polling: the deadline reports it.
    assert requeued == [] and c.condition(api.status, c.DEGRADED)["status"] == "False"


def test_a_permanent_refusal_keeps_its_reason_after_the_deadline(world):
    rec, api, _, _, _ = world
    _rolling(api, not_ready_line("dict has no predict_proba", MODEL_REJECTED), conditions=STALLED)
    rec.resync_children(body())
    degraded = c.condition(api.status, c.DEGRADED)
    assert degraded["reason"] == MODEL_REJECTED
    assert degraded["message"].startswith("pod iris-new: model not ready: dict has no predict_proba; rollout made no")


def test_pods_are_read_at_most_once_per_interval_and_the_finding_is_kept(world):
    rec, api, _, requeued, clock = world
    _rolling(api, "INFO still loading")
    rec.resync_children(body())
    assert api.reads == 1
    api.pod_log_tail = lambda namespace, pod, container: not_ready_line("dict has no predict_proba", MODEL_REJECTED)
    clock.now += 1.0
    rec.resync_children(body())
    assert api.reads == 1 and c.condition(api.status, c.DEGRADED)["status"] == "False"
    clock.now += 2.5
    rec.resync_children(body())
    assert api.reads == 2 and c.condition(api.status, c.DEGRADED)["reason"] == MODEL_REJECTED
    clock.now += 1.0  # within the interval the remembered refusal holds: no flapping back to AsExpected
    rec.resync_children(body())
    assert api.reads == 2 and c.condition(api.status, c.DEGRADED)["reason"] == MODEL_REJECTED


def test_a_finished_rollout_reads_no_pods(world):
    rec, api, _, requeued, _ = world
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                     "availableReplicas": 1}
    api.list_pods = lambda namespace, selector: pytest.fail("pods read although every pod is ready")
    requeued.clear()
    rec.resync_children(body())
    assert c.condition(api.status, c.READY)["status"] == "True" and requeued == []


def test_a_newer_template_of_the_same_model_is_looked_at_afresh(world):
    """minAccuracy changed (same model, new pod template): the old refusal must not stand for the new pods."""
    rec, api, _, requeued, clock = world
    _rolling(api, not_ready_line("held-out accuracy 0.667 on 30 rows is below minAccuracy 0.900", QUALITY_GATE_FAILED))
    rec.resync_children(body())
    assert "below minAccuracy 0.900" in c.condition(api.status, c.DEGRADED)["message"]
    assert requeued == []

    # The Deployment now has a newer template (generation 2); its pod is still starting.
    dep = api.objects[("Deployment", "ml", "iris")]
    dep["metadata"]["generation"] = 2
    dep["status"]["observedGeneration"] = 2
    api.pod_log_tail = lambda namespace, pod, container: "INFO loading"
    clock.now += 0.5  # well inside the read throttle: a new template is read anyway
    reads = api.reads
    rec.resync_children(body())
    assert api.reads == reads + 1
    assert c.condition(api.status, c.DEGRADED)["status"] == "False"
    assert requeued == [("ml", "iris")]


def test_a_remembered_refusal_is_checked_once_more(world):
    rec, api, _, requeued, clock = world
    _rolling(api, not_ready_line("dict has no predict_proba", MODEL_REJECTED))
    rec.resync_children(body())
    assert requeued == []  # read just now: final until something changes
    clock.now += 1.0
    rec.resync_children(body())  # within the throttle: remembered, so one more look is queued
    assert requeued == [("ml", "iris")]
    assert c.condition(api.status, c.DEGRADED)["reason"] == MODEL_REJECTED
