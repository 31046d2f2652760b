"""Every name, label and annotation the operator derives, in one place."""
from __future__ import annotations

from typing import Mapping

GROUP = "ml.irisop.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "IrisModel"
PLURAL = "irismodels"

FIELD_MANAGER = "irismodel-operator"
OPERATOR_NAME = "irismodel-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "irismodel"
COMPONENT = "predictor"

ANNOTATION_MODEL_SHA = f"{GROUP}/model-sha256"
ANNOTATION_MODEL_URI = f"{GROUP}/model-uri"

CONTAINER_NAME = "predictor"
# The serving container's port, model directory and probe paths are the
# operator <-> pod contract: irisop_serving.contract.

# Labels that select every object the operator manages (used to filter watches).
MANAGED_SELECTOR: Mapping[str, str] = {LABEL_MANAGED_BY: OPERATOR_NAME}


def child_name(model_name: str) -> str:
    """Deployment, Service, HPA and PDB all share the IrisModel's name."""
    return model_name


def selector_labels(model_name: str) -> dict[str, str]:
    """The labels a Service and the Deployment select pods by; immutable once created."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: model_name}


def child_labels(model_name: str) -> dict[str, str]:
    return {**selector_labels(model_name), LABEL_COMPONENT: COMPONENT, LABEL_MANAGED_BY: OPERATOR_NAME}


def selector_string(model_name: str) -> str:
    """Selector in the string form the scale subresource and `kubectl get -l` use."""
    return labels_string(selector_labels(model_name))


def labels_string(labels: Mapping[str, str]) -> str:
    """A label selector in its string form (``labelSelector=``, ``kubectl get -l``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


MANAGED_SELECTOR_STRING = labels_string(MANAGED_SELECTOR)  # everything this operator created


def service_url(model_name: str, namespace: str, port: int, cluster_domain: str) -> str:
    host = f"{child_name(model_name)}.{namespace}.svc.{cluster_domain}"
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def owner_reference(body: Mapping) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
