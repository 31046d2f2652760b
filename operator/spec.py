"""The IrisModel spec as a typed, validated value.

The CRD schema rejects most bad input at `kubectl apply`; this module re-checks
what a schema cannot express (cross-field rules, quantities) and fills defaults
so builders never see a missing field, even for objects stored before a default
was added to the schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from kubernetes.utils import parse_quantity

from .pipeline import ModelSource

DEFAULT_REQUESTS = {"cpu": "250m", "memory": "256Mi"}
DEFAULT_LIMITS = {"cpu": "1", "memory": "512Mi"}
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


class SpecError(ValueError):
    """The spec cannot be served as written; the message names the field."""


@dataclass(frozen=True)
class Autoscaling:
    enabled: bool = False
    min_replicas: int = 1
    max_replicas: int = 3
    target_cpu: int = 70


@dataclass(frozen=True)
class IrisModelSpec:
    model_uri: str
    model_sha256: str | None = None
    model_format: str = "joblib"
    min_accuracy: float | None = None  # spec.model.minAccuracy: the quality gate in the serving pod
    credentials_secret: str | None = None
    image: str | None = None
    repository: str | None = None
    replicas: int = 1
    autoscaling: Autoscaling = Autoscaling()
    requests: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REQUESTS))
    limits: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    service_type: str = "ClusterIP"
    service_port: int = 80
    workers: int = 1
    max_batch_rows: int = 1000
    progress_deadline_seconds: int = 120
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()

    @property
    def source(self) -> ModelSource:
        return ModelSource(uri=self.model_uri, sha256=self.model_sha256, format=self.model_format)

    @property
    def wants_pdb(self) -> bool:
        """A PDB only helps when a voluntary eviction can leave another pod serving."""
        floor = self.autoscaling.min_replicas if self.autoscaling.enabled else self.replicas
        return floor > 1


def _quantity(value: Any, path: str) -> Decimal:
    try:
        return parse_quantity(value)
    except ValueError as exc:
        raise SpecError(f"{path}: {value!r} is not a valid quantity") from exc


def _resources(raw: Mapping[str, Any] | None, defaults: Mapping[str, str], path: str) -> dict[str, str]:
    merged = dict(defaults)
    for key, value in (raw or {}).items():
        if key not in ("cpu", "memory"):
            raise SpecError(f"{path}.{key}: only cpu and memory are supported")
        _quantity(value, f"{path}.{key}")
        merged[key] = str(value)
    return merged


def parse_spec(spec: Mapping[str, Any]) -> IrisModelSpec:
    """Turn spec into IrisModelSpec or raise SpecError naming the offending field."""
    model = spec.get("model") or {}
    uri = model.get("uri")
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise SpecError("spec.model.uri: must be an s3://bucket/prefix/ URI")
    min_accuracy = model.get("minAccuracy")
    # The schema says the same; objects stored before the field existed were never checked.
    if min_accuracy is not None and (isinstance(min_accuracy, bool) or not isinstance(min_accuracy, (int, float))
                                     or not 0 <= min_accuracy <= 1):
        raise SpecError(f"spec.model.minAccuracy: {min_accuracy!r} must be a number from 0 to 1")

    auto_raw = spec.get("autoscaling") or {}
    autoscaling = Autoscaling(
        enabled=bool(auto_raw.get("enabled", False)),
        min_replicas=int(auto_raw.get("minReplicas", 1)),
        max_replicas=int(auto_raw.get("maxReplicas", 3)),
        target_cpu=int(auto_raw.get("targetCPUUtilizationPercentage", 70)),
    )
    if autoscaling.enabled and autoscaling.min_replicas > autoscaling.max_replicas:
        raise SpecError("spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas")

    resources = spec.get("resources") or {}
    requests = _resources(resources.get("requests"), DEFAULT_REQUESTS, "spec.resources.requests")
    limits = _resources(resources.get("limits"), DEFAULT_LIMITS, "spec.resources.limits")
    for key in ("cpu", "memory"):
        if _quantity(requests[key], key) > _quantity(limits[key], key):
            raise SpecError(
                f"spec.resources.requests.{key} ({requests[key]}) exceeds spec.resources.limits.{key} ({limits[key]})"
            )

    service = spec.get("service") or {}
    service_type = service.get("type", "ClusterIP")
    if service_type not in SERVICE_TYPES:
        raise SpecError(f"spec.service.type: must be one of {', '.join(SERVICE_TYPES)}")
    serving = spec.get("serving") or {}

    return IrisModelSpec(
        model_uri=uri,
        model_sha256=model.get("sha256") or None,
        model_format=model.get("format", "joblib"),
        min_accuracy=float(min_accuracy) if min_accuracy is not None else None,
        credentials_secret=model.get("credentialsSecret") or None,
        image=spec.get("image") or None,
        repository=spec.get("repository") or None,
        replicas=int(spec.get("replicas", 1)),
        autoscaling=autoscaling,
        requests=requests,
        limits=limits,
        service_type=service_type,
        service_port=int(service.get("port", 80)),
        workers=int(serving.get("workers", 1)),
        max_batch_rows=int(serving.get("maxBatchRows", 1000)),
        progress_deadline_seconds=int(serving.get("progressDeadlineSeconds", 120)),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(spec.get("tolerations") or ()),
    )
