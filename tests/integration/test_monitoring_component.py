"""The optional monitoring component composes with the overlays and the API server accepts it.

The Prometheus Operator CRDs (ServiceMonitor, PodMonitor) come from the
prometheus-operator Go module at PROMETHEUS_OPERATOR_VERSION
(deploy/versions.env), fetched with `go mod download` into the cache, and are
installed into the test control plane; the overlay + component then passes a
server-side dry run, and the monitors select what the operator really runs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from irisop_deploy import versions
from irisop_deploy.local.process import cache_dir
from irisop_operator import builders, names
from irisop_operator.spec import parse_spec
from tests.fixtures.cluster import missing_tool
from tests.fixtures.tools import run
from tests.integration.test_manifests import (  # noqa: F401  (kubectl is a fixture)
    DEPLOY, OVERLAYS, assert_server_dry_run_accepts, by_kind, install_prerequisites, kubectl, render)

pytestmark = pytest.mark.integration
COMPONENT = DEPLOY / "components" / "monitoring"
MODULE = "github.com/prometheus-operator/prometheus-operator"


def prometheus_operator_crds() -> tuple[Path, ...]:
    """ServiceMonitor and PodMonitor CRD files of the pinned Prometheus Operator release."""
    go = shutil.which("go")
    if go is None:
        missing_tool("go not installed (needed to fetch the Prometheus Operator CRDs from the module proxy)")
    env = {**os.environ, "GOMODCACHE": str(cache_dir() / "go" / "mod"), "GOFLAGS": "-mod=mod"}
    out = run([go, "mod", "download", "-json", f"{MODULE}@{versions.get('PROMETHEUS_OPERATOR_VERSION')}"],
              env=env, cwd="/", timeout=600)
    crds = Path(json.loads(out.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    return tuple(crds / f"monitoring.coreos.com_{kind}.yaml" for kind in ("servicemonitors", "podmonitors"))


def with_monitoring(tmp_path: Path, overlay: str) -> Path:
    """An overlay of the user's kind: one of ours plus the component."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(OVERLAYS[overlay], tmp_path)}\n"
        f"components:\n  - {os.path.relpath(COMPONENT, tmp_path)}\n")
    return tmp_path


@pytest.mark.parametrize("overlay", ["local", "aws"])
def test_monitoring_component_passes_a_server_side_dry_run(kubectl, kube_cluster, tmp_path, overlay):  # noqa: F811
    install_prerequisites(kubectl, kube_cluster, extra_crds=prometheus_operator_crds())
    assert_server_dry_run_accepts(kubectl, kube_cluster, with_monitoring(tmp_path, overlay))


def test_monitors_select_what_the_operator_runs(kubectl, tmp_path):  # noqa: F811
    docs = by_kind(render(kubectl, with_monitoring(tmp_path, "local")))
    (deployment,) = docs["Deployment"]
    services = {s["metadata"]["name"]: s for s in docs["Service"]}
    metrics_service = services["irisop-operator-metrics"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert metrics_service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[metrics_service["spec"]["ports"][0]["targetPort"]] == 9090
    assert {"name": "IRISOP_METRICS_PORT", "value": "9090"} in container["env"]

    (monitor,) = docs["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]

    # The PodMonitor selects the serving pods the operator builds, by their port name.
    (pod_monitor,) = docs["PodMonitor"]
    owner = builders.Owner(name="iris", namespace="ml", uid="u1")
    serving = builders.build_deployment(owner, parse_spec({"model": {"uri": "s3://b/iris/"}}),
                                        "reg/iris@sha256:" + "a" * 64, "a" * 64)
    template = serving["spec"]["template"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    serving_ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= serving_ports
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    assert template["metadata"]["labels"][names.LABEL_INSTANCE] == "iris"
