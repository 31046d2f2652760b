"""Prometheus metrics of the operator (served on IRISOP_METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter("irisop_reconciles_total", "Reconciles of IrisModels, by trigger and result", ["trigger", "result"])
RECONCILE_SECONDS = Histogram(
    "irisop_reconcile_duration_seconds",
    "Time spent in one reconcile, by trigger",
    ["trigger"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_WRITES = Counter("irisop_api_writes_total", "Writes to the Kubernetes API, by verb and kind", ["verb", "kind"])
PIPELINE_ERRORS = Counter("irisop_pipeline_errors_total", "Artifact and image failures, by reason", ["reason"])


def serve(port: int) -> None:
    if port:
        start_http_server(port)
