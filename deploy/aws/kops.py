"""Pure builders for the kops and kubectl command lines, and the cluster-spec patch.

Nothing here runs a process: every function maps the configuration to argv
lists (or a spec dict), so the exact commands are unit-tested and printed by
--dry-run verbatim.
"""
from __future__ import annotations

import copy
from typing import Any

from .config import ClusterConfig

Argv = list[str]


def _target(cfg: ClusterConfig, state: str | None = None) -> Argv:
    return ["--name", cfg.name, "--state", state or cfg.state_store]


def create_cluster(cfg: ClusterConfig, vpc_id: str | None, *, dry_run_yaml: bool = False,
                   state: str | None = None) -> Argv:
    """`kops create cluster` with every choice spelled out (no reliance on kops defaults).

    vpc_id None lets kops plan a VPC of its own (only used to preview a spec
    before ours exists); `state` overrides the state store for such previews.
    """
    argv = ["kops", "create", "cluster", *_target(cfg, state), "--cloud", "aws"]
    argv += ["--zones", ",".join(cfg.effective_zones)]
    argv += ["--control-plane-zones", ",".join(cfg.effective_zones[: cfg.control_plane_count])]
    argv += ["--control-plane-count", str(cfg.control_plane_count)]
    argv += ["--control-plane-size", cfg.control_plane_size]
    argv += ["--node-count", str(cfg.node_count), "--node-size", cfg.node_size]
    argv += ["--kubernetes-version", cfg.kubernetes_version.lstrip("v")]
    argv += ["--networking", cfg.networking, "--topology", cfg.topology]
    if cfg.private_dns:
        # kops needs the zone to exist already; the bootstrap creates it attached to the VPC.
        argv += ["--dns", "private", "--dns-zone", cfg.effective_dns_zone]
    else:
        # kops 1.36's own default, spelled out: the API (and kops-controller) behind a
        # Network Load Balancer, no DNS records; kops-configured kubeconfigs name the NLB.
        argv += ["--dns", "none"]
    # A shared VPC (ours) so the private zone and admin instance live in the cluster's network.
    if vpc_id:
        argv += ["--network-id", vpc_id]
    argv += ["--network-cidr", cfg.vpc_cidr]
    if cfg.kops_channel:
        argv += ["--channel", cfg.kops_channel]
    tags = cfg.aws_tags()
    argv += ["--cloud-labels", ",".join(f"{k}={v}" for k, v in sorted(tags.items()))]
    if dry_run_yaml:
        argv += ["--dry-run", "--output", "yaml"]
    return argv


def version() -> Argv:
    return ["kops", "version", "--short"]


def get_cluster(cfg: ClusterConfig, *, as_yaml: bool = False) -> Argv:
    argv = ["kops", "get", "cluster", *_target(cfg)]
    return argv + ["--output", "yaml"] if as_yaml else argv


def replace_cluster(cfg: ClusterConfig, spec_file: str) -> Argv:
    return ["kops", "replace", "--state", cfg.state_store, "--filename", spec_file]


def update_cluster(cfg: ClusterConfig) -> Argv:
    # --admin writes a kubeconfig context named after the cluster for the kubectl step.
    return ["kops", "update", "cluster", *_target(cfg), "--yes", "--admin"]


def validate_cluster(cfg: ClusterConfig) -> Argv:
    return ["kops", "validate", "cluster", *_target(cfg), "--wait", cfg.validate_timeout]


def delete_cluster(cfg: ClusterConfig) -> Argv:
    return ["kops", "delete", "cluster", *_target(cfg), "--yes"]


def kubectl_apply_crds(cfg: ClusterConfig, files: list[str]) -> Argv:
    argv = ["kubectl", "--context", cfg.name, "apply", "--server-side"]
    for path in files:
        argv += ["--filename", path]
    return argv


def kubectl_wait_crds(cfg: ClusterConfig, names: list[str]) -> Argv:
    return ["kubectl", "--context", cfg.name, "wait", "--for=condition=Established", "--timeout=60s",
            *[f"customresourcedefinition/{name}" for name in names]]


def kubectl_apply(cfg: ClusterConfig, kustomize_dir: str) -> Argv:
    return ["kubectl", "--context", cfg.name, "apply", "--server-side", "--kustomize", kustomize_dir]


def patch_cluster_spec(spec: dict[str, Any], node_policy_arns: list[str]) -> dict[str, Any]:
    """Attach our node policies and allow ECR pulls; return a new dict (input untouched).

    `externalPolicies.node` attaches customer-managed policies to the nodes'
    instance role (kops docs: "IAM roles"); `allowContainerRegistry` is kops'
    own switch for ECR read access. Both are no-ops when already present, so
    the patch is idempotent and the caller can skip `kops replace` when the
    result equals the input.
    """
    patched = copy.deepcopy(spec)
    body = patched.setdefault("spec", {})
    iam = body.setdefault("iam", {})
    iam["allowContainerRegistry"] = True
    external = body.setdefault("externalPolicies", {})
    nodes = external.setdefault("node", [])
    for arn in node_policy_arns:
        if arn not in nodes:
            nodes.append(arn)
    return patched
