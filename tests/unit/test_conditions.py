from __future__ import annotations

from irisop_operator import conditions as c


def deployment(replicas=2, ready=2, updated=2, available=2, generation=1, observed=1, image="img", progressing=None,
               terminating=0):
    conds = [{"type": "Available", "status": "True" if available >= replicas else "False"}]
    if progressing:
        conds.append(progressing)
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}},
        "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                   "availableReplicas": available, "observedGeneration": observed, "conditions": conds,
                   "terminatingReplicas": terminating},
    }


def test_ready_only_when_pods_are_serving():
    assert c.observe_rollout(None, "img").reason == c.DEPLOYMENT_MISSING
    assert c.observe_rollout(deployment(ready=1, available=1), "img").reason == c.PODS_NOT_READY
    assert c.observe_rollout(deployment(updated=1), "img").reason == c.ROLLOUT_IN_PROGRESS
    assert c.observe_rollout(deployment(generation=2), "img").reason == c.ROLLOUT_IN_PROGRESS
    assert c.observe_rollout(deployment(), "other").reason == c.ROLLOUT_IN_PROGRESS
    assert c.observe_rollout(deployment(replicas=0, ready=0, updated=0, available=0), "img").reason == c.SCALED_TO_ZERO
    ok = c.observe_rollout(deployment(), "img")
    assert ok.ready and ok.reason == c.SERVING and (ok.ready_replicas, ok.desired) == (2, 2)


def test_ready_waits_for_the_old_pods_to_terminate_but_a_scale_down_does_not_revoke_it():
    # The old pods still answer through the Service in their grace period (found by CI:
    # a request right after Ready got the previous model).
    rolling = c.observe_rollout(deployment(terminating=1), "img")
    assert not rolling.ready and rolling.reason == c.ROLLOUT_IN_PROGRESS and "terminating" in rolling.message
    assert c.observe_rollout(deployment(terminating=1), "img", was_ready=True).ready  # HPA scale-down


def test_stalled_rollout_is_degraded():
    stalled = c.observe_rollout(deployment(ready=1, updated=1, progressing={
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "RS x timed out"}), "img")
    assert stalled.stalled and not stalled.ready
    status = c.desired_status({}, c.StatusFacts(generation=3, selector="a=b", rollout=stalled))
    degraded = c.condition(status, c.DEGRADED)
    assert degraded["status"] == "True" and degraded["reason"] == c.ROLLOUT_STALLED


def test_transition_time_moves_only_on_flip():
    first = c.merge_conditions([], [c.Condition(c.READY, False, "PodsNotReady", "0/1")], 1, now="T1")
    same = c.merge_conditions(first, [c.Condition(c.READY, False, "PodsNotReady", "still 0/1")], 2, now="T2")
    flipped = c.merge_conditions(same, [c.Condition(c.READY, True, "Serving", "1/1")], 2, now="T3")
    assert same[0]["lastTransitionTime"] == "T1" and same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_unchanged_world_writes_nothing():
    facts = c.StatusFacts(generation=1, selector="a=b", rollout=c.observe_rollout(deployment(), "img"), url="http://x",
                          image="img", model={"sha256": "s"})
    first = c.desired_status({}, facts, now="T1")
    assert c.status_patch(first, c.desired_status(first, facts, now="T2")) == {}


def test_blocking_problem_keeps_previous_version_ready_but_degraded():
    facts = c.StatusFacts(generation=2, selector="a=b", rollout=c.observe_rollout(deployment(), "img"),
                          decided=(c.Condition(c.ARTIFACT_READY, False, "ChecksumMismatch", "sha differs"),),
                          blocking=c.Condition(c.DEGRADED, True, "ChecksumMismatch", "sha differs"))
    status = c.desired_status({}, facts)
    assert c.condition(status, c.READY)["status"] == "True"
    assert "previous version" in c.condition(status, c.READY)["message"]
    assert c.condition(status, c.DEGRADED)["reason"] == "ChecksumMismatch"
    assert [x["type"] for x in status["conditions"]] == [c.ARTIFACT_READY, c.READY, c.DEGRADED]
