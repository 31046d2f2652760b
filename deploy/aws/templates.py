"""Package-data templates (policy documents, ECR lifecycle, EC2 user-data) filled in.

The templates are plain files next to this module so reviewers read the exact
documents AWS receives; `string.Template.substitute` fails on any placeholder
left unfilled instead of shipping a policy with a literal `$account` in it.
"""
from __future__ import annotations

import json
from importlib import resources
from string import Template
from typing import Any

from .config import ClusterConfig


def _render(filename: str, **values: Any) -> str:
    text = resources.files(__package__).joinpath(filename).read_text()
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def operator_policy(cfg: ClusterConfig, account: str) -> dict:
    """S3 read of the model bucket, ECR push/pull of the model repository, registry login."""
    return json.loads(_render("policy-operator.json", model_bucket=cfg.effective_model_bucket, region=cfg.region,
                              account=account, model_repository=cfg.model_repository))


def nodes_policy(cfg: ClusterConfig, account: str) -> dict:
    """ECR pull of the operator and model repositories (what the kubelet needs)."""
    return json.loads(_render("policy-nodes.json", region=cfg.region, account=account,
                              operator_repository=cfg.operator_repository, model_repository=cfg.model_repository))


def ecr_lifecycle(cfg: ClusterConfig) -> dict:
    """The operator's own policy document: the operator re-asserts it on every
    push, so any other document here would be overwritten back and forth."""
    from irisop_operator.images.ecr import lifecycle_policy

    return json.loads(lifecycle_policy(cfg.keep_images))


def admin_user_data(cfg: ClusterConfig) -> str:
    return _render("admin-user-data.sh.tmpl", cluster_name=cfg.name, kops_version=cfg.kops_version.lstrip("v"),
                   kubernetes_version=cfg.kubernetes_version.lstrip("v"), state_store=cfg.state_store,
                   region=cfg.region)
