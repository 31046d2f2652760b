"""Every metric the operator exports is documented, and the dashboard uses only documented metrics."""
from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from irisop_operator import metrics  # noqa: F401  (importing registers the collectors)

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "metrics.md").read_text()
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "irismodel-operator.json").read_text())
METRIC = re.compile(r"\b((?:irisop|bentoml|process|python)_[a-z_]+)")


def _documented(name: str) -> bool:
    base = re.sub(r"_(bucket|sum|count|created)$", "", name)
    return f"`{name}`" in DOC or f"`{base}`" in DOC


def test_every_operator_metric_is_documented():
    ours = {metric.name for metric in REGISTRY.collect() if metric.name.startswith("irisop_")}
    assert {"irisop_reconciles", "irisop_models_unseen", "irisop_settle_pending"} <= ours
    # prometheus_client reports counters without their _total suffix.
    missing = [name for name in ours if not (_documented(name) or _documented(name + "_total"))]
    assert missing == []


def test_the_dashboard_queries_only_documented_metrics():
    exprs = [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert {"irisop_reconciles_total", "bentoml_service_request_total"} <= used
    assert [name for name in used if not _documented(name)] == []
    # Panel ids are unique (Grafana keys panel state by id).
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
