"""Pure builders: desired manifests from a spec, no cluster."""
from __future__ import annotations

import pytest

from irisop_operator import names
from irisop_operator.builders import Owner, build_children, build_deployment, build_hpa, build_pdb, build_service
from irisop_operator.spec import parse_spec

OWNER = Owner(name="iris", namespace="ml", uid="1234")
IMAGE = "registry.example/iris@sha256:" + "a" * 64
SHA = "b" * 64


def spec(**extra):
    return parse_spec({"model": {"uri": "s3://bucket/iris/v1/"}, **extra})


def test_deployment_is_safe_by_default():
    dep = build_deployment(OWNER, spec(), IMAGE, SHA)
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IRISOP_EXPECTED_SHA256"] == SHA
    assert dep["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_MODEL_SHA] == SHA
    assert dep["metadata"]["annotations"][names.ANNOTATION_MODEL_SHA] == SHA


def test_children_are_owned_labelled_and_named_from_one_place():
    for manifest in filter(None, build_children(OWNER, spec(replicas=2, autoscaling={"enabled": True}), IMAGE, SHA).values()):
        meta = manifest["metadata"]
        assert meta["name"] == names.child_name("iris")
        assert meta["namespace"] == "ml"
        assert meta["labels"][names.LABEL_MANAGED_BY] == names.OPERATOR_NAME
        ref = meta["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("IrisModel", "1234", True)


def test_replicas_are_left_to_the_hpa_when_autoscaling():
    manual = build_deployment(OWNER, spec(replicas=3), IMAGE, SHA)
    auto = build_deployment(OWNER, spec(replicas=3, autoscaling={"enabled": True}), IMAGE, SHA)
    assert manual["spec"]["replicas"] == 3
    assert "replicas" not in auto["spec"]
    assert build_hpa(OWNER, spec()) is None
    hpa = build_hpa(OWNER, spec(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5,
                                             "targetCPUUtilizationPercentage": 60}))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert hpa["spec"]["scaleTargetRef"]["name"] == "iris"


@pytest.mark.parametrize("extra, wanted", [
    ({}, False),
    ({"replicas": 2}, True),
    ({"replicas": 2, "autoscaling": {"enabled": True, "minReplicas": 1}}, False),
    ({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}, True),
])
def test_pdb_only_when_more_than_one_pod(extra, wanted):
    assert (build_pdb(OWNER, spec(**extra)) is not None) is wanted


def test_service_targets_the_named_port():
    svc = build_service(OWNER, spec(service={"type": "NodePort", "port": 8080}))
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == names.selector_labels("iris")


def test_placement_is_passed_through():
    tol = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    pod = build_deployment(OWNER, spec(nodeSelector={"pool": "ml"}, tolerations=tol), IMAGE, SHA)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "ml"}
    assert pod["tolerations"] == tol
