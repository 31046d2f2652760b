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
    reason = podfacts.reason_from_log(log)
    assert reason.startswith("model not ready: cannot load model.joblib: UnpicklingError")
    assert len(reason) <= podfacts.MAX_MESSAGE
    assert podfacts.reason_from_log("INFO all good") is None
    assert podfacts.reason_from_log("") is None
