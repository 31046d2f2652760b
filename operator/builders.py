"""Pure builders: (IrisModel identity, spec, image) -> desired child manifests.

No I/O here. Each function returns the complete set of fields the operator
owns for one child; server-side apply makes that the whole truth for those
fields, so a builder that stops setting a field also stops owning it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from irisop_serving.contract import (
    ENV_EXPECTED_SHA256,
    ENV_MAX_BATCH_ROWS,
    ENV_MIN_ACCURACY,
    ENV_MODEL_DIR,
    ENV_WORKERS,
    LIVE_PATH,
    MODEL_DIR,
    READY_PATH,
    SERVING_PORT,
)

from . import names
from .spec import IrisModelSpec

@dataclass(frozen=True)
class Owner:
    """The IrisModel a child belongs to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "Owner":
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def reference(self) -> dict[str, Any]:
        return names.owner_reference({"metadata": {"name": self.name, "uid": self.uid}})


def _metadata(owner: Owner, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": names.child_name(owner.name),
        "namespace": owner.namespace,
        "labels": names.child_labels(owner.name),
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}


def _container(spec: IrisModelSpec, image: str, model_sha256: str) -> dict[str, Any]:
    return {
        "name": names.CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        "env": [
            {"name": ENV_MODEL_DIR, "value": MODEL_DIR},
            # The server refuses readiness unless the model it loaded is this one.
            {"name": ENV_EXPECTED_SHA256, "value": model_sha256},
            {"name": ENV_MAX_BATCH_ROWS, "value": str(spec.max_batch_rows)},
            {"name": ENV_WORKERS, "value": str(spec.workers)},
            {"name": "BENTOML_HOME", "value": "/tmp/bentoml"},
            # The quality gate (spec.model.minAccuracy); absent when unset, so
            # Deployments of IrisModels without it do not change.
            *([{"name": ENV_MIN_ACCURACY, "value": repr(spec.min_accuracy)}] if spec.min_accuracy is not None else []),
        ],
        "resources": {"requests": dict(spec.requests), "limits": dict(spec.limits)},
        # Readiness gates traffic: a model that fails its checks never gets any.
        "readinessProbe": _probe(READY_PATH, period=2, failures=2),
        "livenessProbe": _probe(LIVE_PATH, period=10, failures=3),
        # Up to 60 s to start (imports + model load) before liveness may kill it.
        "startupProbe": _probe(LIVE_PATH, period=1, failures=60),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Keep serving for a moment after termination starts: kube-proxy and
        # load balancers drop the pod's endpoint asynchronously, and a request
        # routed in that window must still be answered (zero-downtime rollouts).
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def build_deployment(owner: Owner, spec: IrisModelSpec, image: str, model_sha256: str,
                     model_uri: str | None = None) -> dict[str, Any]:
    """``model_uri`` is where the served model came from: while a newer spec.model.uri is
    rejected, the Deployment keeps naming (and running) the version it serves."""
    model_annotations = {names.ANNOTATION_MODEL_SHA: model_sha256, names.ANNOTATION_MODEL_URI: model_uri or spec.model_uri}
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, image, model_sha256)],
        "securityContext": {"runAsNonRoot": True, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,  # the model server never talks to the API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector_labels(owner.name)},
        "revisionHistoryLimit": 3,
        # After this long without progress the Deployment reports
        # ProgressDeadlineExceeded and we report Degraded. The Kubernetes default
        # of 600 s would hide a model that never gets ready for ten minutes.
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        # Never drop below the current capacity: a new pod must be ready first.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": names.child_labels(owner.name), "annotations": model_annotations},
            "spec": pod_spec,
        },
    }
    if not spec.autoscaling.enabled:
        # With an HPA, the HPA owns replicas; setting it here would fight it.
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, model_annotations),
        "spec": deployment_spec,
    }


def build_service(owner: Owner, spec: IrisModelSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {
            "type": spec.service_type,
            "selector": names.selector_labels(owner.name),
            "ports": [{"name": "http", "port": spec.service_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_hpa(owner: Owner, spec: IrisModelSpec) -> dict[str, Any] | None:
    if not spec.autoscaling.enabled:
        return None
    auto = spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.child_name(owner.name)},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": auto.target_cpu}},
                }
            ],
        },
    }


def build_pdb(owner: Owner, spec: IrisModelSpec) -> dict[str, Any] | None:
    if not spec.wants_pdb:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector_labels(owner.name)}},
    }


def build_children(
    owner: Owner, spec: IrisModelSpec, image: str, model_sha256: str, model_uri: str | None = None
) -> dict[str, dict[str, Any] | None]:
    """Every child kind, mapped to its manifest or None when it must not exist."""
    return {
        "Deployment": build_deployment(owner, spec, image, model_sha256, model_uri),
        "Service": build_service(owner, spec),
        "HorizontalPodAutoscaler": build_hpa(owner, spec),
        "PodDisruptionBudget": build_pdb(owner, spec),
    }
