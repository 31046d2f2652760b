from __future__ import annotations

from irisop_operator.drift import is_subset, needs_apply


def test_server_defaults_are_not_drift():
    desired = {"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"ports": [{"port": 80}]}}
    live = {"metadata": {"name": "x", "labels": {"a": "b"}, "uid": "u"},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.5"}}
    assert not needs_apply(desired, live)


def test_normalised_quantities_are_not_drift():
    assert is_subset({"requests": {"cpu": "1000m", "memory": "1024Mi"}}, {"requests": {"cpu": "1", "memory": "1Gi"}})
    assert not is_subset({"requests": {"cpu": "500m"}}, {"requests": {"cpu": "1"}})
    # only resource quantities are compared numerically
    assert not is_subset({"image": "1000m"}, {"image": "1"})


def test_hand_edits_and_deletion_are_drift():
    desired = {"metadata": {"name": "x"}, "spec": {"replicas": 2, "ports": [{"port": 80}]}}
    assert needs_apply(desired, None)
    assert needs_apply(desired, {"metadata": {"name": "x"}, "spec": {"replicas": 5, "ports": [{"port": 80}]}})
    assert needs_apply(desired, {"metadata": {"name": "x"}, "spec": {"replicas": 2, "ports": []}})
    assert needs_apply(desired, {"metadata": {"name": "x", "deletionTimestamp": "now"}, "spec": desired["spec"]})
