from __future__ import annotations

import pytest

from irisop_operator.spec import SpecError, parse_spec


def test_defaults_fill_every_field():
    spec = parse_spec({"model": {"uri": "s3://b/p/"}})
    assert spec.replicas == 1 and spec.model_format == "joblib"
    assert spec.requests == {"cpu": "250m", "memory": "256Mi"}
    assert spec.service_port == 80 and not spec.autoscaling.enabled


@pytest.mark.parametrize("spec, field", [
    ({}, "spec.model.uri"),
    ({"model": {"uri": "https://b/p"}}, "spec.model.uri"),
    ({"model": {"uri": "s3://b/p"}, "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}, "minReplicas"),
    ({"model": {"uri": "s3://b/p"}, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "requests.cpu"),
    ({"model": {"uri": "s3://b/p"}, "resources": {"requests": {"memory": "lots"}}}, "requests.memory"),
    ({"model": {"uri": "s3://b/p"}, "resources": {"requests": {"gpu": "1"}}}, "requests.gpu"),
    ({"model": {"uri": "s3://b/p"}, "service": {"type": "ExternalName"}}, "spec.service.type"),
])
def test_invalid_specs_name_the_field(spec, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(spec)


def test_quantities_compare_numerically():
    spec = parse_spec({"model": {"uri": "s3://b/p"}, "resources": {"requests": {"cpu": "1000m"}, "limits": {"cpu": "1"}}})
    assert spec.requests["cpu"] == "1000m"
