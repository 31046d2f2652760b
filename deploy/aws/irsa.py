"""IRSA for the operator: what the cluster spec asks of kops, and the role kops made.

The bootstrap does not make the operator's role itself. It names the
ServiceAccount in `spec.iam.serviceAccountExternalPermissions`; kops creates
the role `<sa>.<namespace>.sa.<cluster>`, trusting the cluster's OIDC
provider for exactly that ServiceAccount, and attaches the operator policy.
After `kops update cluster` the role is looked up in IAM, and its ARN (as IAM
reports it) goes into the ServiceAccount annotation and the pod's
AWS_ROLE_ARN. The node role keeps ECR pull only, and kopf's own Kubernetes
API access is the ServiceAccount token as before: only AWS rights move.
"""
from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

import yaml
from botocore.exceptions import ClientError

from .config import ClusterConfig
from .gateway import Aws, error_code

SERVICE_ACCOUNT_FILE = Path(__file__).resolve().parents[1] / "base" / "serviceaccount.yaml"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
# What kops itself mounts into its own IRSA pods (pkg/model/iam/subject.go):
# audience amazonaws.com (the OIDC provider's client id), a day-long token.
TOKEN_AUDIENCE = "amazonaws.com"
TOKEN_DIR = "/var/run/secrets/amazonaws.com/"
TOKEN_FILE = TOKEN_DIR + "token"
TOKEN_VOLUME = "token-amazonaws-com"
MAX_ROLE_NAME = 64  # IAM's limit; kops truncates with a hash beyond it


@lru_cache(maxsize=1)
def operator_service_account() -> tuple[str, str]:
    """(namespace, name) of the operator's ServiceAccount, read from the manifest that creates it."""
    meta = yaml.safe_load(SERVICE_ACCOUNT_FILE.read_text())["metadata"]
    return meta["namespace"], meta["name"]


def _fnv32a(data: bytes) -> bytes:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value.to_bytes(4, "big")


def kops_truncate(text: str, max_length: int) -> str:
    """kops' pkg/truncate.TruncateString (no forced hash): cut, then "-" + 6 characters of
    FNV-32a in lower-case base32hex, so long names stay unique."""
    if len(text) <= max_length:
        return text
    suffix = base64.b32hexencode(_fnv32a(text.encode())).decode().lower()[:6]
    return text[: max_length - len(suffix) - 1] + "-" + suffix


def kops_role_name(name: str, namespace: str, cluster: str) -> str:
    """kops' IAMNameForServiceAccountRole (pkg/model/iam/types.go)."""
    return kops_truncate(f"{name}.{namespace.replace('*', 'wildcard')}.sa.{cluster}", MAX_ROLE_NAME)


def operator_role_name(cfg: ClusterConfig) -> str:
    namespace, name = operator_service_account()
    return kops_role_name(name, namespace, cfg.name)


def external_permissions(operator_policy_arn: str) -> list[dict]:
    """`spec.iam.serviceAccountExternalPermissions`: the operator's policy, for its ServiceAccount only."""
    namespace, name = operator_service_account()
    return [{"name": name, "namespace": namespace, "aws": {"policyARNs": [operator_policy_arn]}}]


def find_role_arn(aws: Aws, cfg: ClusterConfig) -> str | None:
    """The ARN of the role kops created for the operator, as IAM reports it (None: absent, or dry run)."""
    try:
        found = aws.read("iam", "get_role", RoleName=operator_role_name(cfg))
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise
    return found["Role"]["Arn"] if found else None


def deployment_patch(role_arn: str) -> list[dict]:
    """JSON patch giving the operator container web-identity credentials, as kops does for its own pods.

    Explicit rather than left to a pod identity webhook, so the cluster needs
    no cert-manager and the rendered manifest shows where the credentials come from.
    """
    container = "/spec/template/spec/containers/0"
    volume = {"name": TOKEN_VOLUME, "projected": {"defaultMode": 0o644, "sources": [{"serviceAccountToken": {
        "audience": TOKEN_AUDIENCE, "expirationSeconds": 86400, "path": "token"}}]}}
    return [
        {"op": "add", "path": "/spec/template/spec/volumes/-", "value": volume},
        {"op": "add", "path": f"{container}/volumeMounts/-",
         "value": {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}},
        {"op": "add", "path": f"{container}/env/-", "value": {"name": "AWS_ROLE_ARN", "value": role_arn}},
        {"op": "add", "path": f"{container}/env/-", "value": {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
                                                             "value": TOKEN_FILE}},
        # STS in the cluster's region, not the global endpoint in us-east-1.
        {"op": "add", "path": f"{container}/env/-", "value": {"name": "AWS_STS_REGIONAL_ENDPOINTS",
                                                             "value": "regional"}},
    ]


def service_account_patch(role_arn: str) -> list[dict]:
    path = "/metadata/annotations/" + ROLE_ANNOTATION.replace("/", "~1")
    return [{"op": "replace", "path": path, "value": role_arn}]
