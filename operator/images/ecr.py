"""ECR specifics: recognise an ECR registry, prepare the repository, fetch a token.

Tokens are fetched for every push and never stored: they expire after 12 hours
and the operator runs for months. A repository is created with scan-on-push
and a lifecycle policy that keeps the last N model images (tags ``m-*``).
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ..conditions import ECR_ERROR, REGISTRY_UNAUTHORIZED, REGISTRY_UNAVAILABLE
from ..pipeline import ImageError
from ..settings import Settings

_ECR_HOST = re.compile(r"^(?P<id>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
MODEL_TAG_PREFIX = "m-"


@dataclass(frozen=True)
class EcrRegistry:
    registry_id: str
    region: str


def ecr_registry(host: str, settings: Settings) -> EcrRegistry | None:
    """The ECR registry behind ``host``, from its name or settings.ecr_registry_map."""
    for entry in settings.ecr_registry_map:
        mapped_host, sep, target = entry.partition("=")
        registry_id, slash, region = target.partition("/")
        if not (sep and slash and registry_id and region):
            raise ImageError(ECR_ERROR, f"IRISOP_ECR_REGISTRY_MAP entry {entry!r} is not host=registryId/region")
        if mapped_host == host:
            return EcrRegistry(registry_id, region)
    match = _ECR_HOST.match(host)
    return EcrRegistry(match["id"], match["region"]) if match else None


def lifecycle_policy(keep: int) -> str:
    """Keep the newest ``keep`` model images; drop untagged leftovers after a day."""
    rules = [
        {
            "rulePriority": 1,
            "description": f"keep the last {keep} model images",
            "selection": {"tagStatus": "tagged", "tagPrefixList": [MODEL_TAG_PREFIX],
                          "countType": "imageCountMoreThan", "countNumber": keep},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "drop untagged images",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": 1},
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules}, sort_keys=True)


def ecr_client(reg: EcrRegistry) -> Any:
    import boto3

    # AWS_ENDPOINT_URL (moto) is honoured by boto3 itself.
    return boto3.session.Session().client("ecr", region_name=reg.region)


def _fail(exc: Exception, what: str) -> ImageError:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}:
            return ImageError(REGISTRY_UNAUTHORIZED, f"ECR {what}: {code}")
        if code in {"ThrottlingException", "ServerException", "ServiceUnavailableException"}:
            return ImageError(REGISTRY_UNAVAILABLE, f"ECR {what}: {code}", transient=True)
        return ImageError(ECR_ERROR, f"ECR {what}: {code} {exc}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ImageError(REGISTRY_UNAUTHORIZED, f"ECR {what}: no AWS credentials")
    return ImageError(REGISTRY_UNAVAILABLE, f"ECR {what}: {exc}", transient=True)


_BOTO = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def ensure_repository(client: Any, reg: EcrRegistry, name: str, keep: int) -> None:
    """Create the repository (scan on push) and keep its lifecycle policy current; idempotent."""
    try:
        try:
            repo = client.describe_repositories(registryId=reg.registry_id, repositoryNames=[name])["repositories"][0]
        except client.exceptions.RepositoryNotFoundException:
            repo = client.create_repository(
                registryId=reg.registry_id,
                repositoryName=name,
                imageTagMutability="MUTABLE",  # content tags never change meaning; MUTABLE keeps re-push idempotent
                imageScanningConfiguration={"scanOnPush": True},
            )["repository"]
        if not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
            client.put_image_scanning_configuration(registryId=reg.registry_id, repositoryName=name,
                                                    imageScanningConfiguration={"scanOnPush": True})
        wanted = lifecycle_policy(keep)
        try:
            current = client.get_lifecycle_policy(registryId=reg.registry_id, repositoryName=name)["lifecyclePolicyText"]
        except client.exceptions.LifecyclePolicyNotFoundException:
            current = None
        if current is None or json.loads(current) != json.loads(wanted):
            client.put_lifecycle_policy(registryId=reg.registry_id, repositoryName=name, lifecyclePolicyText=wanted)
    except _BOTO as exc:
        raise _fail(exc, f"repository {name}") from exc


def fresh_credentials(client: Any, reg: EcrRegistry) -> tuple[str, str]:
    """(username, password) from a brand-new authorization token. Never cache the result."""
    try:
        data = client.get_authorization_token(registryIds=[reg.registry_id])["authorizationData"][0]
    except _BOTO as exc:
        raise _fail(exc, "authorization token") from exc
    try:
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    except (ValueError, KeyError) as exc:
        raise ImageError(ECR_ERROR, "ECR returned a malformed authorization token") from exc
    if not password:
        raise ImageError(ECR_ERROR, "ECR returned a malformed authorization token")
    return user, password
