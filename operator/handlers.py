"""kopf wiring: which events call which reconcile step, and how errors map to retries.

Handlers stay thin: translate kopf's arguments, call ``Reconciler``, and turn
domain errors into kopf's retry semantics — ``PermanentError`` for a spec
the user must fix, ``TemporaryError(delay=...)`` for "not yet".
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import kopf

from . import kube, metrics, names
from .debounce import Debouncer
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
# Retry delays: transient failures back off from 5 s to 5 min.
TRANSIENT_DELAYS = (5, 10, 20, 40, 80, 160, 300)


def _backoff(retry: int) -> int:
    return TRANSIENT_DELAYS[min(retry, len(TRANSIENT_DELAYS) - 1)]

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
        # kopf pauses *every* operator when peers share a priority, so each
        # replica draws its own: the highest serves, the others stand by and
        # take over when its peering record expires.
        settings.peering.priority = random.SystemRandom().randint(1, 1_000_000)
        # Logged so "which replica leads?" has an answer: the highest priority does.
        log.info("peering %s with priority %d", ours.peering, settings.peering.priority)
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


_reconciler: Reconciler | None = None
_settle: Debouncer | None = None


_reconciler_lock = threading.Lock()


def reconciler() -> Reconciler:
    """The one Reconciler (and its settle queue) of this process.

    Locked: kopf calls handlers from many threads at once, and two racing
    first calls used to build two Reconcilers. Objects reconciled by the
    discarded one then had no remembered version, so their status was never
    published (seen at operator start-up with 20+ IrisModels created at once).
    """
    global _reconciler, _settle
    with _reconciler_lock:
        if _reconciler is None:
            settings = get_settings()
            _settle = Debouncer(settings.settle_seconds, _resync_latest, name="irisop-settle")
            _reconciler = Reconciler(settings, live=_lookup, emit=kube.post_event, api=_RecordingKube(),
                                     defer=lambda key, body: _settle.submit(key, key),
                                     requeue=lambda key, body: _settle.submit(key, key))
        return _reconciler


def _resync_latest(key: tuple[str, str]) -> None:
    """Run the deferred resync on the newest body of the IrisModel, if it still exists."""
    store = _INDEXES.get(names.KIND)
    parent = next(iter(store.get(key, [])), None) if store is not None else None
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return
    try:
        _run("settle", reconciler().resync_children, parent, 0)
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        # Not retried here: the next watch event or the parent's own handler tries again.
        log.warning("resync of %s/%s failed: %s", *key, exc)


def _lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The live child from the watch cache, or what we just applied if the watch lags.

    Right after we create a child, the watch may not have delivered it yet;
    without the second source the next resync would apply it again.
    """
    store = _INDEXES.get(kind)
    if store is None:
        return kube.get(kind, namespace, name)  # indexes not handed to us yet: ask the API
    for value in store.get((namespace, name), []):
        return value
    return _APPLIED.get((kind, namespace, name))


# Children we applied whose watch event has not arrived yet: (kind, ns, name) -> object.
_APPLIED: dict[tuple[str, str, str], dict[str, Any]] = {}


class _RecordingKube:
    """kube, with applied objects remembered until their watch event arrives."""

    def __getattr__(self, attr: str) -> Any:
        return getattr(kube, attr)

    @staticmethod
    def apply(manifest: dict[str, Any]) -> dict[str, Any]:
        live = kube.apply(manifest)
        _APPLIED[(manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])] = live
        return live


def _remember_indexes(kwargs: dict[str, Any]) -> None:
    if "irismodels" in kwargs:
        _INDEXES[names.KIND] = kwargs["irismodels"]
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
        if not exc.transient:
            # A rejected artifact is a spec pointing at something unservable.
            # Permanent, not a long TemporaryError: kopf keeps a pending retry
            # delay even when the spec changes, so the user's fix would wait.
            raise kopf.PermanentError(f"{exc.reason}: {exc.message}") from exc
        raise kopf.TemporaryError(f"{exc.reason}: {exc.message}", delay=_backoff(retry)) from exc
    except kube.KubeError as exc:
        result = "api_error"
        if not exc.transient:
            raise kopf.PermanentError(str(exc)) from exc
        raise kopf.TemporaryError(str(exc), delay=_backoff(retry)) from exc
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
    def handler(namespace: str, name: str, labels: kopf.Labels, **kwargs: Any) -> None:
        """Any change of a child (drift, deletion, rollout progress): settle, then resync its IrisModel."""
        _remember_indexes(kwargs)
        _APPLIED.pop((kind, namespace, name), None)  # the index is authoritative from now on
        parent_name = labels.get(names.LABEL_INSTANCE)
        if parent_name:
            reconciler()
            assert _settle is not None
            _settle.submit((namespace, parent_name), (namespace, parent_name))

    return kopf.on.event(*CHILD_RESOURCES[kind], id=f"on_{kind.lower()}_event", labels=dict(names.MANAGED_SELECTOR))(handler)


for _kind in CHILD_RESOURCES:
    _on_child_event(_kind)
