"""The operator's own watch cache of its children and serving pods: list, then watch.

Why not kopf's indexes: kopf runs no handler until every index is filled,
and it takes each listed object through its whole per-event machinery. At
2,000 IrisModels that is ~12,000 objects, and a new IrisModel created right
after a restart waited 77 s (docs/operator.md). Here a list page of raw JSON
becomes projections at once, in threads of their own, and kopf watches only
the IrisModels.

One ``Reflector`` per kind and watched namespace lists in pages, then
watches from the list's resourceVersion with bookmarks. A 410 Gone relists;
a broken stream watches on from the last resourceVersion after a backoff.
Every change of a child after the first list goes to ``on_change`` (pods
are only read); the first list does not, since a start-up resumes every
IrisModel anyway. A relist hands on what changed meanwhile, deletions
included.

The cache keeps, for each object, only the fields the reconcile steps read
(``projection``): a no-op resync reads nothing from the API server, and
2,000 IrisModels stay small in memory.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol

from . import kube, metrics, names

log = logging.getLogger(__name__)

POD = "Pod"
# The kinds cached here: the children, and the serving pods (read to explain an unfinished rollout).
WATCHED: dict[str, kube.Kind] = {**kube.CHILD_KINDS, POD: kube.Kind("", "v1", "pods")}
# The API server ends a watch after this; the reflector then watches on from where it was.
WATCH_SECONDS = 290
# Silence longer than this on a watch (no event, no bookmark) is a dead connection.
READ_TIMEOUT = WATCH_SECONDS + 30
PAGE_SIZE = 500
RETRY_DELAYS = (1, 2, 5, 10, 30)

Key = tuple[str, str]
# (kind, the object's projection, deleted, changed): changed is False for an
# event that touched nothing the steps read (a resourceVersion, a foreign label).
OnChange = Callable[[str, dict[str, Any], bool, bool], None]


# ---- what the cache keeps ---------------------------------------------------

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


def key_of(view: Mapping[str, Any]) -> Key:
    meta = view.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def instance_of(view: Mapping[str, Any]) -> Key:
    """The IrisModel a serving pod belongs to."""
    meta = view.get("metadata", {})
    return meta.get("namespace", ""), (meta.get("labels") or {}).get(names.LABEL_INSTANCE, "")


# ---- the store --------------------------------------------------------------

class Store:
    """Projections of one kind by (namespace, name), and grouped by IrisModel; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Key, dict[str, Any]] = {}
        self._groups: dict[Key, dict[Key, dict[str, Any]]] = {}

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def group(self, instance: Key) -> list[dict[str, Any]]:
        """Every object labelled as belonging to one IrisModel (its serving pods)."""
        with self._lock:
            return list(self._groups.get(instance, {}).values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, view: dict[str, Any]) -> bool:
        """Store one object; whether it differs from what was stored."""
        key = key_of(view)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._ungroup(key, old)
            self._items[key] = view
            self._groups.setdefault(instance_of(view), {})[key] = view
        return old != view

    def pop(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._ungroup(key, old)
            return old

    def replace(self, views: list[dict[str, Any]], namespace: str | None) -> list[tuple[dict[str, Any], bool]]:
        """Make the store hold exactly ``views`` within ``namespace`` (None: all); what changed, as (view, deleted)."""
        listed = {key_of(view): view for view in views}
        with self._lock:
            gone = [key for key in self._items if (namespace is None or key[0] == namespace) and key not in listed]
        changes = [(old, True) for old in (self.pop(key) for key in gone) if old is not None]
        changes += [(view, False) for view in views if self.put(view)]
        return changes

    def _ungroup(self, key: Key, old: Mapping[str, Any]) -> None:
        group = self._groups.get(instance_of(old))
        if group is not None:
            group.pop(key, None)
            if not group:
                del self._groups[instance_of(old)]


# ---- list, then watch -------------------------------------------------------

class Lister(Protocol):
    """The two API calls a reflector makes (``kube.ApiServer`` implements them)."""

    def get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]: ...

    def watch(self, path: str, query: list[tuple[str, str]], read_timeout: float) -> Iterator[dict[str, Any]]: ...


class Expired(Exception):
    """The resourceVersion to watch from is too old (410 Gone): list again."""


@dataclass(frozen=True)
class Source:
    kind: str
    path: str  # the collection: cluster-wide, or one namespace's
    namespace: str | None
    selector: str


def sources(namespaces: tuple[str, ...], selector: str) -> list[Source]:
    """One source per watched kind and namespace (one per kind when cluster-wide)."""
    found = []
    for kind, k in WATCHED.items():
        for namespace in namespaces or (None,):
            path = f"{k.prefix}/namespaces/{namespace}/{k.plural}" if namespace else f"{k.prefix}/{k.plural}"
            found.append(Source(kind, path, namespace, selector))
    return found


class Reflector:
    """Keeps one store true to one collection, in a thread of its own."""

    def __init__(self, source: Source, store: Store, lister: Lister, on_change: OnChange,
                 stop: threading.Event, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.source, self.store, self.lister, self.on_change = source, store, lister, on_change
        self.synced = threading.Event()  # set once the first list is in the store
        self._stop, self._delays = stop, delays
        self.relists = 0

    def run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self.relist()
                resource_version = self.watch(resource_version)
                failures = 0
            except Expired:
                resource_version = None
            except kube.KubeError as exc:  # the API server is away, or refused: watch on later
                self._stop.wait(self._backoff(failures, exc))
                failures += 1
            except Exception as exc:  # a bug here must not end the cache's only thread for this kind
                log.exception("watching %s", self.source.path)
                resource_version = None
                self._stop.wait(self._backoff(failures, exc))
                failures += 1

    def _backoff(self, failures: int, exc: Exception) -> float:
        metrics.WATCH_RESTARTS.labels(kind=self.source.kind, reason="error").inc()
        delay = self._delays[min(failures, len(self._delays) - 1)]
        log.warning("watching %s: %s; again in %s s", self.source.path, exc, delay)
        return delay

    def relist(self) -> str:
        """List every page; the resourceVersion to watch from."""
        views: list[dict[str, Any]] = []
        query = [("labelSelector", self.source.selector), ("limit", str(PAGE_SIZE))]
        token = ""
        while True:
            try:
                page = self.lister.get(self.source.path, query + ([("continue", token)] if token else []))
            except kube.KubeError as exc:
                if exc.status == 410:  # the continue token expired: start over
                    raise Expired() from exc
                raise
            views += [projection(self.source.kind, item) for item in page.get("items") or ()]
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        changes = self.store.replace(views, self.source.namespace)
        if self.synced.is_set():  # a relist after a gap: hand on what happened meanwhile
            for view, deleted in changes:
                self.on_change(self.source.kind, view, deleted, True)
        self.synced.set()
        self.relists += 1
        metrics.WATCH_RESTARTS.labels(kind=self.source.kind, reason="list").inc()
        return (page.get("metadata") or {}).get("resourceVersion", "")

    def watch(self, resource_version: str) -> str:
        """Apply one watch request's events; the last resourceVersion seen."""
        query = [("labelSelector", self.source.selector), ("resourceVersion", resource_version),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(WATCH_SECONDS))]
        try:
            for event in self.lister.watch(self.source.path, query, READ_TIMEOUT):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired()
                    raise kube.KubeError(f"watch {self.source.path}: {obj.get('message', obj)}", obj.get("code"))
                resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                if event.get("type") != "BOOKMARK":
                    self._event(event.get("type") == "DELETED", obj)
        except kube.KubeError as exc:
            if exc.status == 410:
                raise Expired() from exc
            raise
        return resource_version

    def _event(self, deleted: bool, obj: Mapping[str, Any]) -> None:
        view = projection(self.source.kind, obj)
        if deleted:
            self.store.pop(key_of(view))
            self.on_change(self.source.kind, view, True, True)
        else:
            self.on_change(self.source.kind, view, False, self.store.put(view))


def _read_only(kind: str, view: Mapping[str, Any], deleted: bool, changed: bool) -> None:
    """Where pod changes go: pods are read on demand (rollout facts), never a trigger."""


class WatchCache:
    """The stores of every watched kind and the reflectors that fill them; children's changes go to ``on_change``."""

    def __init__(self, lister: Lister, on_change: OnChange, namespaces: tuple[str, ...] = ()) -> None:
        self.stores = {kind: Store() for kind in WATCHED}
        self._stop = threading.Event()
        self.reflectors = [Reflector(source, self.stores[source.kind], lister,
                                     _read_only if source.kind == POD else on_change, self._stop)
                           for source in sources(namespaces, names.MANAGED_SELECTOR_STRING)]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for reflector in self.reflectors:
            thread = threading.Thread(target=reflector.run, daemon=True,
                                      name=f"irisop-watch-{reflector.source.kind.lower()}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop after the current request (a watch ends within WATCH_SECONDS; the threads are daemons)."""
        self._stop.set()

    def synced(self, kind: str) -> bool:
        """Whether the store of a kind holds a first list from every namespace."""
        return all(r.synced.is_set() for r in self.reflectors if r.source.kind == kind)
