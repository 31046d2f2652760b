"""kopf wiring: which events call which reconcile step, and how errors map to retries.

Handlers stay thin: translate kopf's arguments, call ``Reconciler``, and turn
domain errors into kopf's retry semantics — ``PermanentError`` for a spec
the user must fix, ``TemporaryError(delay=...)`` for "not yet".
"""
from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from . import kube, metrics, names
from .pipeline import PipelineError
from .reconcile import Reconciler
from .settings import get_settings
from .spec import SpecError

log = logging.getLogger(__name__)
MODEL = (names.GROUP, names.VERSION, names.PLURAL)
CHILD_RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
}
# Retry delays: transient failures back off from 5 s to 5 min; a rejected
# artifact is re-checked every 5 min in case it is re-uploaded at the same URI.
TRANSIENT_DELAYS = (5, 10, 20, 40, 80, 160, 300)
REJECTED_DELAY = 300

# kopf indexes keep the latest body of every IrisModel and child in memory,
# so a no-op resync reads nothing from the API server.
_INDEXES: dict[str, Any] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf settings, changed from the defaults for the reasons given."""
    ours = get_settings()
    # kopf posts a Normal event for every handler success by default; users
    # need ours (Ready, ModelVersionReady, failures), not that noise, and each
    # event is an API write.
    settings.posting.level = logging.WARNING
    # Artifact downloads and registry pushes block a worker thread for seconds;
    # many IrisModels created at once should not queue behind each other.
    settings.execution.max_workers = 32
    # Keep kopf's bookkeeping in annotations under our own prefix, out of
    # status, so the status subresource holds only what users read.
    prefix = f"operator.{names.GROUP}"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix, key="last-handled")
    if ours.peering:
        # Two replicas: only the leader handles events (kopf peering).
        settings.peering.name = ours.peering
        settings.peering.mandatory = True
    metrics.serve(ours.metrics_port)


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    return {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": dict(body.status)}


@kopf.index(*MODEL)
def irismodels(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): _snapshot(body)}


def _child_index(kind: str):
    def index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
        return {(namespace, name): {"metadata": dict(body.metadata), "spec": dict(body.get("spec", {})),
                                    "status": dict(body.get("status", {}))}}

    index_id = f"children_{kind.lower()}"
    return kopf.index(*CHILD_RESOURCES[kind], id=index_id, labels=dict(names.MANAGED_SELECTOR))(index)


for _kind in CHILD_RESOURCES:
    _child_index(_kind)


def _emit(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message[:1000])


_reconciler: Reconciler | None = None


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        _reconciler = Reconciler(get_settings(), live=_lookup, emit=_emit)
    return _reconciler


def _lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    store = _INDEXES.get(kind)
    if store is None:
        return kube.get(kind, namespace, name)  # before the first event, e.g. in tests
    for value in store.get((namespace, name), []):
        return value
    return None


def _remember_indexes(kwargs: dict[str, Any]) -> None:
    for kind in CHILD_RESOURCES:
        key = f"children_{kind.lower()}"
        if key in kwargs:
            _INDEXES[kind] = kwargs[key]


def _run(trigger: str, fn, body: dict[str, Any], retry: int) -> None:
    started = time.perf_counter()
    result = "ok"
    try:
        fn(body)
    except SpecError as exc:
        result = "invalid"
        raise kopf.PermanentError(str(exc)) from exc
    except PipelineError as exc:
        result = "pipeline_error"
        metrics.PIPELINE_ERRORS.labels(reason=exc.reason).inc()
        delay = TRANSIENT_DELAYS[min(retry, len(TRANSIENT_DELAYS) - 1)] if exc.transient else REJECTED_DELAY
        raise kopf.TemporaryError(f"{exc.reason}: {exc.message}", delay=delay) from exc
    except kube.KubeError as exc:
        result = "api_error"
        if not exc.transient:
            raise kopf.PermanentError(str(exc)) from exc
        raise kopf.TemporaryError(str(exc), delay=TRANSIENT_DELAYS[min(retry, len(TRANSIENT_DELAYS) - 1)]) from exc
    finally:
        metrics.RECONCILES.labels(trigger=trigger, result=result).inc()
        metrics.RECONCILE_SECONDS.labels(trigger=trigger).observe(time.perf_counter() - started)


@kopf.on.resume(*MODEL)
@kopf.on.create(*MODEL)
@kopf.on.update(*MODEL, field="spec")
def reconcile_model(body: kopf.Body, retry: int, **kwargs: Any) -> None:
    _remember_indexes(kwargs)
    _run("model", reconciler().reconcile, _snapshot(body), retry)


@kopf.on.delete(*MODEL, optional=True)
def forget_model(namespace: str, name: str, **_: Any) -> None:
    """Children go with the IrisModel through owner references; only caches need clearing."""
    reconciler().forget(namespace, name)


def _on_child_event(kind: str):
    def handler(event: dict, namespace: str, labels: kopf.Labels, irismodels: kopf.Index, **kwargs: Any) -> None:
        _remember_indexes(kwargs)
        parent_name = labels.get(names.LABEL_INSTANCE)
        parent = next(iter(irismodels.get((namespace, parent_name), [])), None)
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return  # orphan or going away: garbage collection handles it
        try:
            _run(f"child_{kind.lower()}", reconciler().resync_children, parent, 0)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            # Event handlers are not retried by kopf; the next watch event or
            # the parent's own handler tries again.
            log.warning("resync of %s/%s after %s %s failed: %s", namespace, parent_name, kind, event.get("type"), exc)

    return kopf.on.event(*CHILD_RESOURCES[kind], id=f"on_{kind.lower()}_event", labels=dict(names.MANAGED_SELECTOR))(handler)


for _kind in CHILD_RESOURCES:
    _on_child_event(_kind)
