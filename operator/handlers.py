"""kopf wiring: which events call which reconcile step.

Handlers stay thin: they take the process's ``Runtime`` from kopf's memo
(built once by the startup handler), translate kopf's arguments and call it.

kopf watches the IrisModels only. The children and serving pods are
watched by the operator's own cache (watchcache.py), started here: kopf
would run no handler before it had indexed all of them, a minute at 2,000
IrisModels.

Every handler is ``async``: it runs on kopf's event loop (a sync handler
costs a hop to a worker thread per event) and only records or queues.
Reconciles, which block on S3, the registry and the API server, run on the
Runtime's own queues, which also decide what a change is and when to retry
(see ``runtime.Runtime``).
"""
from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from . import kube, metrics, names
from .leadership import Leadership
from .runtime import MODEL_INDEX, Runtime
from .settings import get_settings
from .watchcache import projection

log = logging.getLogger(__name__)
MODEL = kube.KINDS[names.KIND].resource


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: kopf's change handlers would need one, and the operator registers none.

    kopf builds an object's "essence" on every watch event, whether or not a
    change handler will read it: a deep copy of the whole body (managedFields
    and status included) to compare with the last handled one, ~110 µs for
    an IrisModel with its status, two or three times per new IrisModel (a
    few % of the operator's CPU per model). The Runtime decides what a change
    is from ``metadata.generation`` (runtime.py), so there is nothing to
    build, fetch or store. ``tests/unit/test_runtime.py`` checks that no
    change handler is registered, which this would silently starve.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf settings, changed from the defaults for the reasons given, and the one Runtime."""
    ours = get_settings()
    # kopf posts a Normal event for every handler success by default; users
    # need ours (Ready, ModelVersionReady, failures), not that noise, and each
    # event is an API write.
    settings.posting.level = logging.WARNING
    # No change handlers: kopf keeps no bookkeeping (annotations) on IrisModels,
    # and need not build a diff-base per event either (NoDiffBase says why).
    settings.persistence.diffbase_storage = NoDiffBase()
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
    # What `irisop operator run` passed in the memo: the namespaces kopf
    # watches (the cache watches the same; main.run chose them) and kopf's
    # peering identity. The settings only when kopf was started another way.
    namespaces = tuple(getattr(memo, "namespaces", ours.watch_namespaces))
    leadership = Leadership(ours.peering, getattr(memo, "identity", ""), settings.peering.priority, namespaces,
                            reader=kube.ApiServer())
    # kopf copies the operator-wide memo into every object's memo: one Runtime for all handlers.
    memo.runtime = Runtime(ours, leadership=leadership)
    memo.runtime.start(namespaces)
    metrics.serve(ours.metrics_port)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.stop()


def _runtime(memo: kopf.Memo, handler_kwargs: dict[str, Any]) -> Runtime:
    runtime: Runtime = memo.runtime
    runtime.kube.attach(handler_kwargs)
    return runtime


@kopf.index(*MODEL, id=MODEL_INDEX)
async def irismodels(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): projection(names.KIND, body)}


@kopf.on.event(*MODEL)
async def on_model_event(event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
    """Every IrisModel event; the Runtime queues a reconcile when it brings a generation not yet reconciled."""
    _runtime(memo, kwargs).model_event(event["type"], event["object"])
