"""What the operator process shares, built once at start-up and kept in kopf's memo.

``Runtime`` holds the settings, the Kubernetes seam (``WatchedKube``), the
``Reconciler`` and the settle queue. kopf hands the same memo to every
handler, so there are no module globals and no lazy construction to race on.

``WatchedKube`` is ``kube.ApiServer`` whose reads come from the watch
caches: kopf's index of IrisModels and the operator's own cache of children
and serving pods (watchcache.py). Both keep only the fields the reconcile
steps read (``projection``), so a no-op resync reads nothing from the API
server and 2,000 IrisModels stay small in memory.

``Leadership`` gates the one path kopf does not: a child's change, heard by
the operator's own cache, schedules a resync only on the active replica.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Mapping

import kopf

from . import kube, metrics, names
from .debounce import Debouncer
from .events import EventQueue
from .leadership import Leadership
from .pipeline import PipelineError
from .reconcile import Pipeline, Reconciler
from .settings import Settings
from .spec import SpecError
from .watchcache import POD, WATCHED, OnChange, Store, WatchCache, key_of, projection

log = logging.getLogger(__name__)

# Seconds a resumed, already finished IrisModel waits behind new changes after a start.
RESUME_DELAY = 5.0
# Retry delays: transient failures back off from 5 s to 5 min.
TRANSIENT_DELAYS = (5, 10, 20, 40, 80, 160, 300)
# Index ids: kopf passes each index to handlers as a keyword argument of this name.
MODEL_INDEX = "irismodels"


def backoff(retry: int) -> int:
    return TRANSIENT_DELAYS[min(retry, len(TRANSIENT_DELAYS) - 1)]


class WatchedKube(kube.ApiServer):
    """The API server, with reads answered from the watch caches once they are filled.

    The IrisModels come from kopf's index (kopf delivers their events to the
    handlers anyway); the children and serving pods from the operator's own
    cache (watchcache.py). Until a cache has its first list, reads go to the API.
    """

    def __init__(self) -> None:
        super().__init__()
        self._models: Any = None  # kopf's Index of IrisModel projections, once a handler has run
        self.cache: WatchCache | None = None
        # Children we applied whose watch event has not arrived yet: right after
        # a create the watch may lag, and the next resync would apply again.
        self._applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events = EventQueue(self.create_event)

    def attach(self, handler_kwargs: Mapping[str, Any]) -> None:
        """Keep the index kopf passes to handlers (the same live object every time)."""
        if self._models is None and MODEL_INDEX in handler_kwargs:
            self._models = handler_kwargs[MODEL_INDEX]

    def watch(self, on_change: OnChange, namespaces: tuple[str, ...] = ()) -> None:
        """Start the cache of children and serving pods; ``on_change`` hears every change after its first list."""
        def changed(kind: str, view: dict[str, Any], deleted: bool, differs: bool) -> None:
            self._applied.pop((kind, *key_of(view)), None)  # the cache is authoritative from now on
            on_change(kind, view, deleted, differs)

        # Its own client: six long-lived watches must not hold the workers' pool connections.
        self.cache = WatchCache(kube.ApiServer(), changed, namespaces)
        self.cache.start()

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Stamped now, posted by the event queue: the reconcile does not wait for it (events.py)."""
        self.events.submit(kube.event_manifest(body, type_, reason, message))

    def _store(self, kind: str) -> Store | None:
        cache = self.cache
        return cache.stores[kind] if cache is not None and kind in WATCHED and cache.synced(kind) else None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The serving pods from the watch cache (grouped by IrisModel), no API request.

        A rollout that cannot finish (no node, no quota) would otherwise cost a
        pod list per look for every IrisModel.
        """
        store = self._store(POD)
        labels = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        pod_selector_keys = set(names.selector_labels("any-name"))  # the same keys for every IrisModel
        if store is None or set(labels) != pod_selector_keys:
            return super().list_pods(namespace, selector)  # no cache yet, or not a serving-pod selector
        return [pod for pod in store.group((namespace, labels[names.LABEL_INSTANCE]))
                if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]

    def live(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        store = self._store(kind)
        if store is None:
            return super().live(kind, namespace, name)  # not cached, or not listed yet: ask the API
        view = store.get((namespace, name))
        return view if view is not None else self._applied.get((kind, namespace, name))

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        live = super().apply(manifest)
        meta = manifest["metadata"]
        self._applied[(manifest["kind"], meta["namespace"], meta["name"])] = projection(manifest["kind"], live)
        return live

    def model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest cached IrisModel, or None once it is gone."""
        store = self._models
        return next(iter(store.get((namespace, name), [])), None) if store is not None else None

    @property
    def attached(self) -> bool:
        return self._models is not None

    def models(self) -> list[dict[str, Any]]:
        store = self._models
        return [value for values in (store.values() if store is not None else ()) for value in values]

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in list(self._applied) if k[1:] == (namespace, names.child_name(name))]:
            self._applied.pop(key, None)


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
                 workers: int = 32, leadership: Leadership | None = None):
        self.settings = settings
        self.kube = kube_io or WatchedKube()
        self.leadership = leadership or Leadership(settings.peering, identity="", priority=0)
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
        metrics.EVENTS_PENDING.set_function(self.kube.events.pending)

    def start(self, namespaces: tuple[str, ...] = ()) -> None:
        """Start the event posters, the watch cache of children and pods, and (with peering) the leadership poll."""
        self.kube.events.start()
        self.kube.watch(self.child_change, namespaces)
        self.leadership.start(self.resync_all)

    def stop(self) -> None:
        self.leadership.stop()
        if self.kube.cache is not None:
            self.kube.cache.stop()
        self.kube.events.close()

    def schedule(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        self.settle.submit(key, key)

    def child_change(self, kind: str, view: Mapping[str, Any], deleted: bool, changed: bool) -> None:
        """A child changed something we read (drift, deletion, rollout progress): settle, then resync its IrisModel.

        Called by the watch cache, outside kopf, so on a standby replica too:
        only the active one acts. Pods never come here: they are read on demand.
        """
        meta = view.get("metadata", {})
        parent = (meta.get("labels") or {}).get(names.LABEL_INSTANCE)
        # The cached answer: a watch stream must not wait on a peering read,
        # and the work scheduled here asks active() again before it writes.
        act = bool(changed and parent and self.leadership.cached())
        metrics.CHILD_EVENTS.labels(kind=kind, action="resync" if act else "ignored").inc()
        if act:
            key = (meta.get("namespace", ""), parent)
            self.settle.submit(key, key)

    def resync_all(self) -> None:
        """This replica became the leader: catch up on what it left to the leader while it stood by.

        An IrisModel this process has not reconciled is reconciled (its work
        was dropped, see reconcile_latest; kopf need not hand it over again,
        since kopf may never have paused); the others are resynced, since
        their children may have drifted meanwhile.
        """
        for model in self.kube.models():
            meta = model["metadata"]
            key = (meta["namespace"], meta["name"])
            if self._handled_generation(meta) != meta.get("generation"):
                self.work.submit(key, model)
            else:
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
        # after a start) goes behind real changes, in the queue's background
        # lane: with 2,000 IrisModels that pass takes half a minute, and a new
        # change must not wait for all of it.
        finished = (body.get("status") or {}).get("observedGeneration") == meta.get("generation")
        self.work.submit((meta["namespace"], meta["name"]), projection(names.KIND, body),
                         delay=RESUME_DELAY if finished else None, background=finished)

    def reconcile_latest(self, body: Mapping[str, Any]) -> None:
        """Reconcile the newest queued body; on a transient failure, queue it again after a backoff."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], meta["uid"])
        if self._handled_generation(meta) == meta.get("generation"):
            return
        if not self.leadership.active():
            # Not ours to write (queued while this replica led, and kopf has
            # paused it since): the leader reconciles it, and resync_all does
            # if this replica leads later.
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
        if parent is None or parent["metadata"].get("deletionTimestamp") or not self.leadership.active():
            return  # gone, going, or no longer ours to write (a replica that leads again resyncs all)
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

        -1 until a handler has run: kopf runs none before its index of
        IrisModels is filled, so before that the count is unknown, not 0.
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
