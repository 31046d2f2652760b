"""ECR repositories: the operator image and the model-serving images it builds.

Scan on push surfaces CVEs in every image; the lifecycle policy keeps a
model-per-generation registry from growing without bound.
"""
from __future__ import annotations

import json

from botocore.exceptions import ClientError

from . import templates
from .config import ClusterConfig
from .gateway import Aws, error_code


def repositories(cfg: ClusterConfig) -> list[str]:
    return [cfg.operator_repository, cfg.model_repository]


def _describe(aws: Aws, name: str) -> dict | None:
    try:
        found = aws.read("ecr", "describe_repositories", repositoryNames=[name])
    except ClientError as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return None
        raise
    return found["repositories"][0] if found else None


def _lifecycle(aws: Aws, name: str) -> dict | None:
    try:
        found = aws.read("ecr", "get_lifecycle_policy", repositoryName=name)
    except ClientError as exc:
        if error_code(exc) == "LifecyclePolicyNotFoundException":
            return None
        raise
    return json.loads(found["lifecyclePolicyText"]) if found else None


def ensure_one(aws: Aws, cfg: ClusterConfig, name: str) -> str:
    repo = _describe(aws, name)
    fixed = []
    if repo is None:
        aws.write(
            "ecr", "create_repository", repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[{"Key": k, "Value": v} for k, v in sorted(cfg.aws_tags().items())],
        )
    elif not repo.get("imageScanningConfiguration", {}).get("scanOnPush"):
        aws.write("ecr", "put_image_scanning_configuration", repositoryName=name,
                  imageScanningConfiguration={"scanOnPush": True})
        fixed.append("scan on push")
    wanted = templates.ecr_lifecycle(cfg)
    if repo is None or _lifecycle(aws, name) != wanted:
        aws.write("ecr", "put_lifecycle_policy", repositoryName=name, lifecyclePolicyText=json.dumps(wanted))
        if repo is not None:
            fixed.append("lifecycle policy")
    if repo is None:
        return f"{name}: created"
    return f"{name}: already exists" + (f"; set {', '.join(fixed)}" if fixed else "")


def ensure(aws: Aws, cfg: ClusterConfig) -> str:
    return "; ".join(ensure_one(aws, cfg, name) for name in repositories(cfg))


def delete(aws: Aws, cfg: ClusterConfig, purge: bool) -> str:
    if not purge:
        return f"kept {', '.join(repositories(cfg))} (images; --purge deletes them)"
    done = []
    for name in repositories(cfg):
        if aws.dry_run or _describe(aws, name) is not None:
            aws.write("ecr", "delete_repository", repositoryName=name, force=True)
            done.append(f"{name}: deleted")
        else:
            done.append(f"{name}: not found")
    return "; ".join(done)
