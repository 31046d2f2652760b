"""Customer-managed IAM policies: what the nodes and the operator may do, nothing more.

Policies live under one IAM path so they are found by name without the
account id, and a changed template becomes a new default policy version
instead of a second policy.
"""
from __future__ import annotations

import json
from typing import Any

from . import templates
from .config import ClusterConfig
from .gateway import Aws

PATH = "/irisop/"
MAX_VERSIONS = 5  # IAM's limit per managed policy


def documents(cfg: ClusterConfig, account: str) -> dict[str, dict]:
    """Policy name -> document; one place so create and delete agree on the set."""
    return {
        cfg.nodes_policy_name: templates.nodes_policy(cfg, account),
        cfg.operator_policy_name: templates.operator_policy(cfg, account),
    }


def _find(aws: Aws, name: str) -> dict[str, Any] | None:
    marker: dict[str, str] = {}
    while True:
        page = aws.read("iam", "list_policies", Scope="Local", PathPrefix=PATH, **marker)
        if page is None:
            return None
        for policy in page.get("Policies", []):
            if policy["PolicyName"] == name:
                return policy
        if not page.get("IsTruncated"):
            return None
        marker = {"Marker": page["Marker"]}


def ensure_one(aws: Aws, cfg: ClusterConfig, name: str, document: dict) -> tuple[str, str]:
    """Return (status, policy ARN)."""

    policy = _find(aws, name)
    if policy is None:
        created = aws.write(
            "iam", "create_policy", PolicyName=name, Path=PATH, PolicyDocument=json.dumps(document),
            Description=f"irisop {cfg.name}: least-privilege policy (generated)",
            Tags=[{"Key": k, "Value": v} for k, v in sorted(cfg.aws_tags().items())],
        )
        # A dry run's placeholder answer names no policy: use the ARN IAM would derive.
        return f"{name}: created", placeholder_arn(name) if aws.dry_run else created["Policy"]["Arn"]
    arn = policy["Arn"]
    current = aws.read("iam", "get_policy_version", PolicyArn=arn, VersionId=policy["DefaultVersionId"]) or {}
    if current.get("PolicyVersion", {}).get("Document") == document:
        return f"{name}: already exists", arn
    versions = (aws.read("iam", "list_policy_versions", PolicyArn=arn) or {}).get("Versions", [])
    if len(versions) >= MAX_VERSIONS:
        oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        aws.write("iam", "delete_policy_version", PolicyArn=arn, VersionId=oldest["VersionId"])
    aws.write("iam", "create_policy_version", PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
    return f"{name}: already exists; new default version", arn


def placeholder_arn(name: str, account: str = "000000000000") -> str:
    """The ARN a policy would get (dry run): IAM derives it from account, path and name."""
    return f"arn:aws:iam::{account}:policy{PATH}{name}"


def ensure(aws: Aws, cfg: ClusterConfig, account: str) -> tuple[str, dict[str, str]]:
    """Return (status, {policy name: ARN})."""
    statuses, arns = [], {}
    for name, document in documents(cfg, account).items():
        status, arns[name] = ensure_one(aws, cfg, name, document)
        statuses.append(status)
    return "; ".join(statuses), arns


def delete(aws: Aws, cfg: ClusterConfig) -> str:
    done = []
    for name in (cfg.nodes_policy_name, cfg.operator_policy_name):
        policy = _find(aws, name)
        if policy is None and not aws.dry_run:
            done.append(f"{name}: not found")
            continue
        arn = policy["Arn"] if policy else placeholder_arn(name)
        # IAM refuses to delete a policy that is still attached or has extra versions.
        entities = aws.read("iam", "list_entities_for_policy", PolicyArn=arn) or {}
        for role in entities.get("PolicyRoles", []):
            aws.write("iam", "detach_role_policy", RoleName=role["RoleName"], PolicyArn=arn)
        for user in entities.get("PolicyUsers", []):
            aws.write("iam", "detach_user_policy", UserName=user["UserName"], PolicyArn=arn)
        for group in entities.get("PolicyGroups", []):
            aws.write("iam", "detach_group_policy", GroupName=group["GroupName"], PolicyArn=arn)
        for version in (aws.read("iam", "list_policy_versions", PolicyArn=arn) or {}).get("Versions", []):
            if not version["IsDefaultVersion"]:
                aws.write("iam", "delete_policy_version", PolicyArn=arn, VersionId=version["VersionId"])
        aws.write("iam", "delete_policy", PolicyArn=arn)
        done.append(f"{name}: deleted")
    return "; ".join(done)
