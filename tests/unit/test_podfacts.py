"""What a stalled rollout's pods say about why (pure)."""
from __future__ import annotations

from irisop_operator import names, podfacts

SHA = "a" * 64


def pod(name="iris-1", sha=SHA, containers=(), init=(), conditions=(), deleting=False):
    meta = {"name": name, "annotations": {names.ANNOTATION_MODEL_SHA: sha}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"containerStatuses": list(containers),
                                         "initContainerStatuses": list(init), "conditions": list(conditions)}}


def running(ready=False):
    return {"name": "predictor", "ready": ready, "state": {"running": {"startedAt": "x"}}}


def test_only_pods_of_the_new_model_count_and_not_terminating_ones():
    pods = [pod("old", sha="b" * 64), pod("new"), pod("gone", deleting=True)]
    assert [p["metadata"]["name"] for p in podfacts.new_revision_pods(pods, SHA)] == ["new"]


def test_image_pull_failure_is_reported_with_the_kubelet_message():
    waiting = {"name": "predictor", "ready": False,
               "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}
    found = podfacts.clue(pod(containers=[waiting]))
    assert found == podfacts.PodClue("iris-1", 'predictor: ImagePullBackOff: Back-off pulling image "x"', False)


def test_crash_loop_carries_the_last_termination_message():
    crashing = {"name": "predictor", "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3, "message": "bad config"}}}
    assert podfacts.clue(pod(containers=[crashing])).reason == "predictor: CrashLoopBackOff: bad config"


def test_container_creating_is_not_a_problem_and_running_unready_asks_for_the_log():
    creating = {"name": "predictor", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert podfacts.clue(pod(containers=[creating])) == podfacts.PodClue("iris-1", None, False)
    assert podfacts.clue(pod(containers=[running()])) == podfacts.PodClue("iris-1", None, True)
    assert podfacts.clue(pod(containers=[running(ready=True)])).read_log is False


def test_unschedulable_pod_says_so():
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes: Insufficient cpu"}
    assert podfacts.clue(pod(conditions=[cond])).reason == "unschedulable: 0/1 nodes: Insufficient cpu"


def test_reason_from_log_takes_the_last_not_ready_line_and_keeps_it_short():
    log = "\n".join(["INFO starting", "ERROR model not ready: old reason", "x",
                     "2026 ERROR irisop model not ready: cannot load model.joblib: UnpicklingError: " + "z" * 900])
    refusal = podfacts.reason_from_log(log)
    assert refusal.text().startswith("model not ready: cannot load model.joblib: UnpicklingError")
    assert len(refusal.text()) <= podfacts.MAX_MESSAGE
    assert refusal.kind is None  # no permanent tag: transient
    assert podfacts.reason_from_log("INFO all good") is None
    assert podfacts.reason_from_log("") is None


def test_a_permanent_refusal_carries_its_kind_and_the_tag_never_reaches_users():
    from irisop_serving.contract import MODEL_REJECTED, not_ready_line

    log = "INFO x\n2026-12-01 ERROR irisop " + not_ready_line("dict has no predict_proba", MODEL_REJECTED) + "\n"
    refusal = podfacts.reason_from_log(log)
    assert refusal.kind == MODEL_REJECTED and refusal.permanent
    assert refusal.text() == "model not ready: dict has no predict_proba"


def test_an_unknown_kind_is_not_taken_for_permanent():
    refusal = podfacts.reason_from_log("model not ready: x [permanent NoSuchKind]")
    assert refusal.kind is None and refusal.reason == "x [permanent NoSuchKind]"


def test_explain_prefers_a_permanent_refusal_and_reads_logs_only_of_running_unready_pods():
    from irisop_serving.contract import QUALITY_GATE_FAILED, not_ready_line

    pulling = pod("a", containers=[{"name": "predictor", "ready": False,
                                    "state": {"waiting": {"reason": "ErrImagePull", "message": "timeout"}}}])
    refusing = pod("b", containers=[running()])
    ready = pod("c", containers=[running(ready=True)])
    asked = []

    def read_log(name):
        asked.append(name)
        return not_ready_line("accuracy 0.600 below 0.900", QUALITY_GATE_FAILED)

    found = podfacts.explain([pulling, ready, refusing], read_log)
    assert found.finding == podfacts.Finding("b", "model not ready: accuracy 0.600 below 0.900", QUALITY_GATE_FAILED)
    assert asked == ["b"] and not found.starting
    only_pulling = podfacts.explain([pulling], read_log)
    assert only_pulling.finding == podfacts.Finding("a", "predictor: ErrImagePull: timeout")
    assert not only_pulling.finding.permanent and not only_pulling.starting  # left to the deadline
    loading = podfacts.explain([pod("d", containers=[running()])], lambda name: "INFO loading")
    assert loading == podfacts.Explanation(None, True)  # it may still say something: look again
    scheduled = pod("e", conditions=[{"type": "PodScheduled", "status": "True"}])
    assert podfacts.explain([scheduled], read_log).starting
    ready_pod = pod("f", containers=[running(ready=True)], conditions=[{"type": "Ready", "status": "True"}])
    assert podfacts.explain([ready_pod], read_log) == podfacts.Explanation(None, False)
