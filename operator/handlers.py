"""kopf wiring: which events call which reconcile step.

Handlers stay thin: they take the process's ``Runtime`` from kopf's memo
(built once by the startup handler), translate kopf's arguments and call it.

Every handler is an ``async`` watch-event handler or index: it runs on
kopf's event loop (a sync handler costs a hop to a worker thread per event)
and only records or queues. Reconciles, which block on S3, the registry and
the API server, run on the Runtime's own queues, which also decide what a
change is and when to retry (see ``runtime.Runtime``).
"""
from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from . import kube, metrics, names
from .runtime import MODEL_INDEX, POD, POD_INDEX, Runtime, child_index_id, projection
from .settings import get_settings

log = logging.getLogger(__name__)
MODEL = kube.KINDS[names.KIND].resource


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf settings, changed from the defaults for the reasons given, and the one Runtime."""
    ours = get_settings()
    # kopf posts a Normal event for every handler success by default; users
    # need ours (Ready, ModelVersionReady, failures), not that noise, and each
    # event is an API write.
    settings.posting.level = logging.WARNING
    # No change handlers: kopf keeps no bookkeeping (annotations) on IrisModels;
    # the Runtime decides what a change is, so no kopf persistence settings.
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
    # kopf copies the operator-wide memo into every object's memo: one Runtime for all handlers.
    memo.runtime = Runtime(ours)
    metrics.serve(ours.metrics_port)


def _runtime(memo: kopf.Memo, handler_kwargs: dict[str, Any]) -> Runtime:
    runtime: Runtime = memo.runtime
    runtime.kube.attach(handler_kwargs)
    return runtime


@kopf.index(*MODEL, id=MODEL_INDEX)
async def irismodels(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): projection(names.KIND, body)}


@kopf.index("", "v1", "pods", id=POD_INDEX, labels=dict(names.MANAGED_SELECTOR))
async def serving_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    """The serving pods, by IrisModel: read while a rollout is unfinished (newpods.py), never listed."""
    return {(namespace, labels.get(names.LABEL_INSTANCE, "")): projection(POD, body)}


def _child_index(kind: str) -> None:
    async def index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
        return {(namespace, name): projection(kind, body)}

    kopf.index(*kube.CHILD_KINDS[kind].resource, id=child_index_id(kind), labels=dict(names.MANAGED_SELECTOR))(index)


@kopf.on.event(*MODEL)
async def on_model_event(event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
    """Every IrisModel event; the Runtime queues a reconcile when it brings a generation not yet reconciled."""
    _runtime(memo, kwargs).model_event(event["type"], event["object"])


def _on_child_event(kind: str) -> None:
    async def handler(event: kopf.RawEvent, namespace: str, labels: kopf.Labels, memo: kopf.Memo,
                      **kwargs: Any) -> None:
        """A child changed something we read (drift, deletion, rollout progress): settle, then resync its IrisModel."""
        runtime = _runtime(memo, kwargs)
        changed = runtime.kube.child_changed(kind, event["object"], deleted=event["type"] == "DELETED")
        parent = labels.get(names.LABEL_INSTANCE)
        metrics.CHILD_EVENTS.labels(kind=kind, action="resync" if changed and parent else "ignored").inc()
        if changed and parent:
            runtime.settle.submit((namespace, parent), (namespace, parent))

    kopf.on.event(*kube.CHILD_KINDS[kind].resource, id=f"on_{kind.lower()}_event",
                  labels=dict(names.MANAGED_SELECTOR))(handler)


for _kind in kube.CHILD_KINDS:
    _child_index(_kind)
    _on_child_event(_kind)
