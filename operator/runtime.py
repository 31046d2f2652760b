"""What the operator process shares, built once at start-up and kept in kopf's memo.

``Runtime`` holds the settings, the Kubernetes seam (``WatchedKube``), the
``Reconciler`` and the settle queue. kopf hands the same memo to every
handler, so there are no module globals and no lazy construction to race on.

``WatchedKube`` is ``kube.ApiServer`` whose reads come from kopf's indexes:
the watch cache keeps, for every IrisModel and child, only the fields the
reconcile steps read (``projection``), so a no-op resync reads nothing from
the API server and 2,000 IrisModels stay small in memory.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any, Mapping

import kopf

from . import kube, metrics, names
from .debounce import Debouncer
from .pipeline import PipelineError
from .reconcile import Pipeline, Reconciler
from .settings import Settings
from .spec import SpecError

log = logging.getLogger(__name__)

# Seconds a resumed, already finished IrisModel waits behind new changes after a start.
RESUME_DELAY = 5.0
# Retry delays: transient failures back off from 5 s to 5 min.
TRANSIENT_DELAYS = (5, 10, 20, 40, 80, 160, 300)
# Index ids: kopf passes each index to handlers as a keyword argument of this name.
MODEL_INDEX = "irismodels"
POD_INDEX = "serving_pods"
POD = "Pod"


def child_index_id(kind: str) -> str:
    return f"children_{kind.lower()}"


def backoff(retry: int) -> int:
    return TRANSIENT_DELAYS[min(retry, len(TRANSIENT_DELAYS) - 1)]


# ---- what the watch cache keeps ---------------------------------------------

# Metadata the steps read: identity, ownership, our labels and annotations
# (drift compares what we set), and whether it is going away.
_META_KEYS = ("name", "namespace", "uid", "generation", "deletionTimestamp", "ownerReferences")
# Deployment status fields conditions.observe_rollout reads; no other child's status is read.
_DEPLOYMENT_STATUS_KEYS = ("observedGeneration", "replicas", "readyReplicas", "updatedReplicas",
                           "availableReplicas", "terminatingReplicas", "conditions")
# Pod status fields podfacts reads to explain an unfinished rollout.
_POD_STATUS_KEYS = ("phase", "conditions", "containerStatuses", "initContainerStatuses")


def _ours(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Labels/annotations under our keys (kubectl's last-applied copy of the object is not one)."""
    return {k: v for k, v in (mapping or {}).items()
            if k.startswith(names.GROUP) or k.startswith("app.kubernetes.io/")}


def projection(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an object the reconcile steps read; nothing else is cached."""
    meta = body.get("metadata", {})
    kept: dict[str, Any] = {k: meta[k] for k in _META_KEYS if k in meta}
    if kind != names.KIND:  # the IrisModel's labels/annotations are kopf's and the user's, never read
        kept["labels"] = _ours(meta.get("labels"))
        kept["annotations"] = _ours(meta.get("annotations"))
    if kind == POD:  # read, never applied: no spec
        status = body.get("status") or {}
        return {"metadata": kept, "status": {k: status[k] for k in _POD_STATUS_KEYS if k in status}}
    view: dict[str, Any] = {"metadata": kept, "spec": dict(body.get("spec") or {})}
    if kind == names.KIND:
        view["status"] = dict(body.get("status") or {})
    elif kind == "Deployment":
        status = body.get("status") or {}
        view["status"] = {k: status[k] for k in _DEPLOYMENT_STATUS_KEYS if k in status}
    return view


def fingerprint(view: Mapping[str, Any]) -> bytes:
    return hashlib.blake2b(json.dumps(view, sort_keys=True, default=str).encode(), digest_size=12).digest()


class WatchedKube(kube.ApiServer):
    """The API server, with reads answered from kopf's indexes once kopf has handed them over."""

    def __init__(self) -> None:
        super().__init__()
        self._indexes: dict[str, Any] = {}  # kind -> kopf.Index of projections
        # Children we applied whose watch event has not arrived yet: right after
        # a create the watch may lag, and the next resync would apply again.
        self._applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        # Fingerprint of each child's projection as last seen in an event, so
        # an event that changes nothing we read costs no resync.
        self._seen: dict[tuple[str, str, str], bytes] = {}

    def attach(self, handler_kwargs: Mapping[str, Any]) -> None:
        """Keep the indexes kopf passes to handlers (the same live objects every time)."""
        if not self._indexes and MODEL_INDEX in handler_kwargs:
            self._indexes = {names.KIND: handler_kwargs[MODEL_INDEX], POD: handler_kwargs[POD_INDEX],
                             **{kind: handler_kwargs[child_index_id(kind)] for kind in kube.CHILD_KINDS}}

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The serving pods from the watch cache (indexed by IrisModel), no API request.

        A rollout that cannot finish (no node, no quota) would otherwise cost a
        pod list per look for every IrisModel.
        """
        store = self._indexes.get(POD)
        labels = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        pod_selector_keys = set(names.selector_labels("any-name"))  # the same keys for every IrisModel
        if store is None or set(labels) != pod_selector_keys:
            return super().list_pods(namespace, selector)  # no cache yet, or not a serving-pod selector
        return [pod for pod in store.get((namespace, labels[names.LABEL_INSTANCE]), [])
                if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]

    def live(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        store = self._indexes.get(kind)
        if store is None:
            return super().live(kind, namespace, name)  # indexes not handed to us yet: ask the API
        for value in store.get((namespace, name), []):
            return value
        return self._applied.get((kind, namespace, name))

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        live = super().apply(manifest)
        meta = manifest["metadata"]
        self._applied[(manifest["kind"], meta["namespace"], meta["name"])] = projection(manifest["kind"], live)
        return live

    def model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest cached IrisModel, or None once it is gone."""
        store = self._indexes.get(names.KIND)
        return next(iter(store.get((namespace, name), [])), None) if store is not None else None

    @property
    def attached(self) -> bool:
        return bool(self._indexes)

    def models(self) -> list[dict[str, Any]]:
        store = self._indexes.get(names.KIND)
        return [value for values in (store.values() if store is not None else ()) for value in values]

    def child_changed(self, kind: str, body: Mapping[str, Any], deleted: bool) -> bool:
        """Record a child's watch event; False when it changed nothing the steps read."""
        meta = body.get("metadata", {})
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        self._applied.pop(key, None)  # the index is authoritative from now on
        if deleted:
            self._seen.pop(key, None)
            return True
        new = fingerprint(projection(kind, body))
        old = self._seen.get(key)
        self._seen[key] = new
        return old != new

    def forget(self, namespace: str, name: str) -> None:
        for store in (self._applied, self._seen):
            for key in [k for k in list(store) if k[1:] == (namespace, names.child_name(name))]:
                store.pop(key, None)


class Runtime:
    """The process's one Reconciler, its queues and its view of the cluster.

    IrisModel changes are found here, not by kopf's change handlers: kopf
    would keep a diff-base annotation on every IrisModel (one more write per
    change, a bigger object in every watch event) and deep-copy each body to
    diff it. A watch event asks for a reconcile when its generation is not
    the one this process last reconciled (a new spec, or a start-up: the
    resume pass); status writes, labels and annotations never do. The
    reconcile queue runs one reconcile per IrisModel at a time, the newest
    body first, and schedules retries with backoff.
    """

    def __init__(self, settings: Settings, kube_io: WatchedKube | None = None, pipeline: Pipeline | None = None,
                 workers: int = 32):
        self.settings = settings
        self.kube = kube_io or WatchedKube()
        self.settle = Debouncer(settings.settle_seconds, self.resync_latest, name="irisop-settle")
        # Artifact downloads and registry pushes block a worker for seconds;
        # many IrisModels created at once should not queue behind each other.
        self.work = Debouncer(0.0, self.reconcile_latest, name="irisop-reconcile", workers=workers)
        self.reconciler = Reconciler(settings, self.kube, pipeline, defer=self.schedule, requeue=self.schedule)
        # (namespace, name, uid) -> the generation reconciled since this process
        # started (done, or refused for good), and the retry count of a failing one.
        self._handled: dict[tuple[str, str, str], int] = {}
        self._retries: dict[tuple[str, str, str], int] = {}
        self._handled_lock = threading.Lock()
        metrics.MODELS_UNSEEN.set_function(self.models_unseen)
        metrics.SETTLE_PENDING.set_function(self.settle.pending)
        metrics.RECONCILE_PENDING.set_function(self.work.pending)

    def schedule(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        self.settle.submit(key, key)

    def model_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event of an IrisModel: queue a reconcile if it brings a generation not yet reconciled."""
        meta = body.get("metadata", {})
        if event_type == "DELETED":
            # Children go with the IrisModel through owner references; only caches need clearing.
            self.forget(meta["namespace"], meta["name"])
            return
        if meta.get("deletionTimestamp") or self._handled_generation(meta) == meta.get("generation"):
            return  # going away, or our own status write / a label: nothing to reconcile
        # A generation a previous process already finished (the resume pass
        # after a start) goes behind real changes: with 2,000 IrisModels that
        # pass takes a minute, and a new change must not wait for all of it.
        finished = (body.get("status") or {}).get("observedGeneration") == meta.get("generation")
        self.work.submit((meta["namespace"], meta["name"]), projection(names.KIND, body),
                         delay=RESUME_DELAY if finished else None)

    def reconcile_latest(self, body: Mapping[str, Any]) -> None:
        """Reconcile the newest queued body; on a transient failure, queue it again after a backoff."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], meta["uid"])
        if self._handled_generation(meta) == meta.get("generation"):
            return
        with self._handled_lock:
            retry = self._retries.get(key, 0)
        try:
            self.run("model", self.reconciler.reconcile, body, retry)
        except kopf.TemporaryError as exc:
            delay = exc.delay if exc.delay is not None else backoff(retry)
            log.warning("[%s/%s] %s; retrying in %.0f s", meta["namespace"], meta["name"], exc, delay)
            with self._handled_lock:
                self._retries[key] = retry + 1
            self.work.submit(key[:2], body, delay=delay)
            return
        except kopf.PermanentError as exc:
            # Reported in status and an Event; retried only when the spec changes.
            log.error("[%s/%s] not retried until the spec changes: %s", meta["namespace"], meta["name"], exc)
        with self._handled_lock:
            self._handled[key] = meta.get("generation")
            self._retries.pop(key, None)

    def _handled_generation(self, meta: Mapping[str, Any]) -> int | None:
        with self._handled_lock:
            return self._handled.get((meta.get("namespace"), meta.get("name"), meta.get("uid")))

    def resync_latest(self, key: tuple[str, str]) -> None:
        """Run the deferred resync on the newest body of the IrisModel, if it still exists."""
        parent = self.kube.model(*key)
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return
        try:
            self.run("settle", self.reconciler.resync_children, parent, 0)
        except (kopf.TemporaryError, kopf.PermanentError) as exc:
            # Not retried here: the next watch event or the parent's own handler tries again.
            log.warning("[%s/%s] resync failed: %s", *key, exc)

    def forget(self, namespace: str, name: str) -> None:
        self.reconciler.forget(namespace, name)
        self.kube.forget(namespace, name)
        with self._handled_lock:
            for store in (self._handled, self._retries):
                for key in [k for k in store if k[:2] == (namespace, name)]:
                    del store[key]

    def models_unseen(self) -> int:
        """IrisModels in the watch cache that this process has not reconciled since it started.

        -1 until a handler has run: kopf runs none before every watch cache is
        filled, so before that the count is unknown, not 0.
        """
        if not self.kube.attached:
            return -1
        with self._handled_lock:
            return sum(1 for m in self.kube.models()
                       if (m["metadata"]["namespace"], m["metadata"]["name"], m["metadata"]["uid"]) not in self._handled)

    @staticmethod
    def run(trigger: str, fn: Any, body: Mapping[str, Any], retry: int) -> None:
        """Call one entry point; map domain errors to kopf's retry semantics; count and time it."""
        with metrics.reconcile_timer(trigger) as outcome:
            try:
                fn(body)
            except SpecError as exc:
                outcome.result = "invalid"
                raise kopf.PermanentError(str(exc)) from exc
            except PipelineError as exc:
                outcome.result = "pipeline_error"
                metrics.PIPELINE_ERRORS.labels(reason=exc.reason).inc()
                if not exc.transient:
                    # A rejected artifact is a spec pointing at something unservable.
                    # Permanent, not a long TemporaryError: kopf keeps a pending retry
                    # delay even when the spec changes, so the user's fix would wait.
                    raise kopf.PermanentError(f"{exc.reason}: {exc.message}") from exc
                raise kopf.TemporaryError(f"{exc.reason}: {exc.message}", delay=backoff(retry)) from exc
            except kube.KubeError as exc:
                outcome.result = "api_error"
                if not exc.transient:
                    raise kopf.PermanentError(str(exc)) from exc
                raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
