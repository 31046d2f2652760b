"""Kubernetes I/O: server-side apply, delete, status writes and Events for our kinds.

``KubeIO`` is the one typed seam between the reconcile steps and the cluster:
``ApiServer`` implements it over HTTP, the running operator's ``WatchedKube``
(runtime.py) answers reads from the watch caches, and the unit tests' fake
implements the same Protocol in memory. ``ApiServer`` also lists and
watches, for the operator's own watch cache (watchcache.py).

A small table of the four child kinds replaces API discovery: the operator
only ever manages these, and skipping discovery keeps start-up instant.
Every write goes through here so the write counter in ``metrics`` sees all.
"""
from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, Protocol

import orjson
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import metrics, names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    plural: str

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def resource(self) -> tuple[str, str, str]:
        """(group, version, plural): what kopf's decorators take."""
        return self.group, self.version, self.plural


# The child kinds the operator manages, then the IrisModel itself.
CHILD_KINDS: dict[str, Kind] = {
    "Deployment": Kind("apps", "v1", "deployments"),
    "Service": Kind("", "v1", "services"),
    "HorizontalPodAutoscaler": Kind("autoscaling", "v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Kind("policy", "v1", "poddisruptionbudgets"),
}
KINDS: dict[str, Kind] = {**CHILD_KINDS, names.KIND: Kind(names.GROUP, names.VERSION, names.PLURAL)}


class KubeError(RuntimeError):
    """An API call failed; ``transient`` says whether a retry can help."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status
        # 409 conflicts, throttling and server errors heal by themselves;
        # 4xx validation errors do not.
        self.transient = status is None or status in (409, 429) or status >= 500


class KubeIO(Protocol):
    """Every Kubernetes call the reconcile steps make."""

    def live(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The current object (from a cache where there is one), None if absent."""

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply; the live object."""

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete if present; whether something was deleted."""

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the IrisModel's status."""

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A best-effort core/v1 Event about the IrisModel."""

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector."""

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 200) -> str:
        """The last lines of a container's log."""

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded."""


def load_config() -> None:
    """In a pod use the ServiceAccount; elsewhere the current kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def new_api_client() -> client.ApiClient:
    load_config()
    configuration = client.Configuration.get_default_copy()
    # One connection per thread that calls the API: 32 reconcile and 8 settle
    # workers (runtime.Runtime). A smaller pool makes the rest open and discard
    # a connection per request under load, with a WARNING line each time.
    configuration.connection_pool_maxsize = 40
    return client.ApiClient(configuration)


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    k = KINDS[kind]
    path = f"{k.prefix}/namespaces/{namespace}/{k.plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def stream_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty newline-terminated lines of a streamed body, as bytes.

    Why not the client's iter_resp_lines: it decodes each line to str and
    copies the unread rest of its buffer per line; a watch stream is the
    operator's busiest input (py-spy: decoding it was ~10% of the operator's
    CPU in a 500-model burst, with the stdlib json). orjson reads the bytes
    directly. A last line without its newline is a cut-off event, not one.
    """
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                yield line


def _api_message(body: Any) -> str:
    try:
        return json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(body)[:200]


class ApiServer:
    """KubeIO over the API server's HTTP API; every read is a request."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self._api = api

    @property
    def api(self) -> client.ApiClient:
        # Built on first use: importing the operator must not need a kubeconfig.
        if self._api is None:
            self._api = new_api_client()
        return self._api

    def _send(self, method: str, path: str, what: str, *, query: list[tuple[str, str]], headers: dict[str, str],
              timeout: float | tuple[float, float], body: Any = None) -> Any:
        """One request, its response not yet read; a refused or reset connection is a KubeError."""
        api = self.api
        try:
            method, url, headers, body, _ = api.param_serialize(
                method, path, query_params=query, body=body, auth_settings=["BearerToken"], header_params=headers)
            return api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        except ApiException as exc:
            raise KubeError(f"{what}: {exc.status} {exc.reason}: {_api_message(exc.body)}", exc.status) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused/reset: the API server is restarting
            raise KubeError(f"{what}: {exc}", None) from exc

    def _call(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
              query: list[tuple[str, str]] | None = None, text: bool = False) -> Any:
        """One API request; the decoded JSON (or, with ``text``, the body as a string)."""
        what = f"{method} {path}"
        # Not "text/plain" for text: an error Status is negotiated against
        # Accept too, and the API server answers 406 to text/plain.
        headers = {"Content-Type": content_type, "Accept": "*/*" if text else "application/json"}
        response = self._send(method, path, what, query=query or [], headers=headers, timeout=30, body=body)
        try:
            data = response.read()
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise KubeError(f"{what}: {exc}", None) from exc
        if not 200 <= response.status < 300:
            raise KubeError(f"{what}: {response.status} {response.reason}: {_api_message(data)}", response.status)
        if text:
            return data.decode("utf-8", "replace")
        return orjson.loads(data) if data else None

    def get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        """One GET of a collection (a list page), decoded."""
        return self._call("GET", path, query=query) or {}

    def watch(self, path: str, query: list[tuple[str, str]], read_timeout: float) -> Iterator[dict[str, Any]]:
        """The events of one watch request, decoded, until the server ends it.

        ``read_timeout`` bounds the silence between two lines: a watch with
        bookmarks is never silent for long, so a stream quiet past its own
        timeoutSeconds is a dead connection (a partition), not a quiet cluster.
        """
        what = f"watch {path}"
        response = self._send("GET", path, what, query=[*query, ("watch", "true")],
                              headers={"Accept": "application/json"}, timeout=(10, read_timeout))
        raw = response.response
        try:
            if not 200 <= response.status < 300:
                raise KubeError(f"{what}: {response.status} {response.reason}: {_api_message(raw.data)}",
                                response.status)
            for line in stream_lines(raw.stream(amt=None, decode_content=False)):
                yield orjson.loads(line)
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # reset, or silent past read_timeout
            raise KubeError(f"{what}: {exc}", None) from exc
        finally:
            # Closed, not returned to the pool: a watch left part-read would
            # hand its unread bytes to the next request on that connection.
            raw.close()
            raw.release_conn()

    def live(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with our field manager; returns the live object."""
        meta = manifest["metadata"]
        metrics.API_WRITES.labels(verb="apply", kind=manifest["kind"]).inc()
        return self._call(
            "PATCH",
            _path(manifest["kind"], meta["namespace"], meta["name"]),
            body=dict(manifest),
            content_type="application/apply-patch+yaml",
            # force: we are the controller of these fields; a hand edit is drift to undo.
            query=[("fieldManager", names.FIELD_MANAGER), ("force", "true")],
        )

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        metrics.API_WRITES.labels(verb="delete", kind=kind).inc()
        try:
            self._call("DELETE", _path(kind, namespace, name), body={"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Read while a rollout is unfinished (newpods.py).

        resourceVersion=0: served from the API server's watch cache. Without
        it every list is a quorum read of *all* pods of the namespace from
        etcd (2 MB at 500 IrisModels), filtered by label afterwards; a pod
        status a moment old is as good for explaining a rollout.
        """
        return (self._call("GET", f"/api/v1/namespaces/{namespace}/pods",
                           query=[("labelSelector", selector), ("resourceVersion", "0")]) or {}).get("items", [])

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 200) -> str:
        """'' when there is no log yet."""
        try:
            return self._call("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                              query=[("container", container), ("tailLines", str(lines))], text=True)
        except KubeError as exc:
            if exc.status in (400, 404):  # container not started yet, or the pod just went away
                return ""
            raise

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Lists (conditions) are replaced whole by a merge patch."""
        metrics.API_WRITES.labels(verb="status", kind=names.KIND).inc()
        self._call("PATCH", _path(names.KIND, namespace, name, "status"), body={"status": dict(status)},
                   content_type="application/merge-patch+json")

    def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Shown by `kubectl describe irismodel`.

        Posted directly rather than through kopf.event(), which only works inside
        kopf's handler context; status is also published from the settle thread.
        """
        self.create_event(event_manifest(body, type_, reason, message))

    def create_event(self, event: Mapping[str, Any]) -> None:
        """POST one built Event; a failure is logged, never raised."""
        metrics.API_WRITES.labels(verb="create", kind="Event").inc()
        involved = event["involvedObject"]
        try:
            self._call("POST", f"/api/v1/namespaces/{involved['namespace']}/events", body=event)
        except KubeError as exc:
            # An Event is best effort: failing to tell must not fail the reconcile
            # (e.g. the namespace is being deleted).
            log.warning("[%s/%s] could not post event %s: %s", involved["namespace"], involved["name"],
                        event["reason"], exc)

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = client.CoreV1Api(self.api).read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise KubeError(f"Secret {namespace}/{name}: {exc.status} {exc.reason}", exc.status) from exc
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def event_manifest(body: Mapping[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
    meta = body["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": names.OPERATOR_NAME},
        "reportingComponent": names.OPERATOR_NAME,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
