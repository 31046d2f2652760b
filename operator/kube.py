"""Kubernetes I/O: server-side apply, delete and status writes for our kinds.

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
from typing import Any, Mapping

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import metrics, names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str


KINDS: dict[str, Kind] = {
    "Deployment": Kind("/apis/apps/v1", "deployments"),
    "Service": Kind("/api/v1", "services"),
    "HorizontalPodAutoscaler": Kind("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Kind("/apis/policy/v1", "poddisruptionbudgets"),
    names.KIND: Kind(f"/apis/{names.API_VERSION}", names.PLURAL),
}


class KubeError(RuntimeError):
    """An API call failed; ``transient`` says whether a retry can help."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status
        # 409 conflicts, throttling and server errors heal by themselves;
        # 4xx validation errors do not.
        self.transient = status is None or status in (409, 429) or status >= 500


_api: client.ApiClient | None = None


def load_config() -> None:
    """In a pod use the ServiceAccount; elsewhere the current kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def api_client() -> client.ApiClient:
    global _api
    if _api is None:
        load_config()
        configuration = client.Configuration.get_default_copy()
        # One connection per kopf worker thread (the default pool of 10 makes
        # the rest open and discard a connection per request under load).
        configuration.connection_pool_maxsize = 32
        _api = client.ApiClient(configuration)
    return _api


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    k = KINDS[kind]
    path = f"{k.prefix}/namespaces/{namespace}/{k.plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def _call(method: str, path: str, *, body: Any = None, content_type: str = "application/json",
          query: list[tuple[str, str]] | None = None, text: bool = False) -> Any:
    """One API request; the decoded JSON (or, with ``text``, the body as a string)."""
    api = api_client()
    try:
        method, url, headers, body, _ = api.param_serialize(
            method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
            # Not "text/plain" for text: an error Status is negotiated against
            # Accept too, and the API server answers 406 to text/plain.
            header_params={"Content-Type": content_type, "Accept": "*/*" if text else "application/json"},
        )
        response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
        data = response.read()
    except ApiException as exc:
        raise KubeError(f"{method} {path}: {exc.status} {exc.reason}: {_api_message(exc.body)}", exc.status) from exc
    except OSError as exc:  # connection refused/reset: the API server is restarting
        raise KubeError(f"{method} {path}: {exc}", None) from exc
    if not 200 <= response.status < 300:
        raise KubeError(f"{method} {path}: {response.status} {response.reason}: {_api_message(data)}", response.status)
    if text:
        return data.decode("utf-8", "replace")
    return json.loads(data) if data else None


def _api_message(body: Any) -> str:
    try:
        return json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return str(body)[:200]


def apply(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply with our field manager; returns the live object."""
    meta = manifest["metadata"]
    metrics.API_WRITES.labels(verb="apply", kind=manifest["kind"]).inc()
    return _call(
        "PATCH",
        _path(manifest["kind"], meta["namespace"], meta["name"]),
        body=dict(manifest),
        content_type="application/apply-patch+yaml",
        # force: we are the controller of these fields; a hand edit is drift to undo.
        query=[("fieldManager", names.FIELD_MANAGER), ("force", "true")],
    )


def delete(kind: str, namespace: str, name: str) -> bool:
    """Delete if present; return whether something was deleted."""
    metrics.API_WRITES.labels(verb="delete", kind=kind).inc()
    try:
        _call("DELETE", _path(kind, namespace, name), body={"propagationPolicy": "Background"})
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _call("GET", _path(kind, namespace, name))
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching a label selector (read only when a rollout has stalled)."""
    return (_call("GET", f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", selector)]) or {}).get(
        "items", [])


def pod_log_tail(namespace: str, pod: str, container: str, lines: int = 200) -> str:
    """The last lines of a container's log ('' when there is none yet)."""
    try:
        return _call("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                     query=[("container", container), ("tailLines", str(lines))], text=True)
    except KubeError as exc:
        if exc.status in (400, 404):  # container not started yet, or the pod just went away
            return ""
        raise


def patch_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch IrisModel status; lists (conditions) are replaced whole."""
    metrics.API_WRITES.labels(verb="status", kind=names.KIND).inc()
    _call("PATCH", _path(names.KIND, namespace, name, "status"), body={"status": dict(status)},
          content_type="application/merge-patch+json")


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event about the IrisModel, shown by `kubectl describe irismodel`.

    Posted directly rather than through kopf.event(), which only works inside
    kopf's handler context; status is also published from the settle thread.
    """
    meta = body["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
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
    metrics.API_WRITES.labels(verb="create", kind="Event").inc()
    try:
        _call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
    except KubeError as exc:
        # An Event is best effort: failing to tell must not fail the reconcile
        # (e.g. the namespace is being deleted).
        log.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], exc)


def read_secret(namespace: str, name: str) -> dict[str, str]:
    try:
        secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise KubeError(f"Secret {namespace}/{name}: {exc.status} {exc.reason}", exc.status) from exc
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
