"""Prometheus metrics of the operator (served on IRISOP_METRICS_PORT).

Every name here is documented in docs/metrics.md; the Grafana dashboard in
deploy/grafana/ and the monitoring component in deploy/components/ use them.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("irisop_reconciles_total", "Reconciles of IrisModels, by trigger and result", ["trigger", "result"])
RECONCILE_SECONDS = Histogram(
    "irisop_reconcile_duration_seconds",
    "Time spent in one reconcile, by trigger",
    ["trigger"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_WRITES = Counter("irisop_api_writes_total", "Writes to the Kubernetes API, by verb and kind", ["verb", "kind"])
PIPELINE_ERRORS = Counter("irisop_pipeline_errors_total", "Artifact and image failures, by reason", ["reason"])
CHILD_EVENTS = Counter("irisop_child_events_total",
                       "Watch events of children, by kind and whether they scheduled a resync (resync, ignored)",
                       ["kind", "action"])
ARTIFACT_READS_JOINED = Counter("irisop_artifact_reads_joined_total",
                                "Artifact verifications answered by one already running for the same source "
                                "(no S3 request of their own)")
EVENTS_PENDING = Gauge("irisop_events_pending", "Events queued or being posted")
EVENTS_DROPPED = Counter("irisop_events_dropped_total",
                         "Events not posted because the event queue was full (the API server fell behind)")
WATCH_RESTARTS = Counter("irisop_watch_restarts_total",
                         "The watch cache's full lists (list) and failed watches (error), by kind", ["kind", "reason"])
MODELS_UNSEEN = Gauge("irisop_models_unseen",
                      "IrisModels in this process's watch cache not yet reconciled since it started "
                      "(0 once the resume pass covered them)")
SETTLE_PENDING = Gauge("irisop_settle_pending", "IrisModels waiting in the settle queue for a resync")
RECONCILE_PENDING = Gauge("irisop_reconcile_pending",
                          "IrisModels waiting for (or in) a reconcile, retries with their backoff included")


@dataclass
class Result:
    result: str = "ok"


@contextlib.contextmanager
def reconcile_timer(trigger: str) -> Iterator[Result]:
    """Count and time one reconcile; the caller sets .result on failure."""
    outcome = Result()
    started = time.perf_counter()
    try:
        yield outcome
    finally:
        RECONCILES.labels(trigger=trigger, result=outcome.result).inc()
        RECONCILE_SECONDS.labels(trigger=trigger).observe(time.perf_counter() - started)


def serve(port: int) -> None:
    if port:
        start_http_server(port)
