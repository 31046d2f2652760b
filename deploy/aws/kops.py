"""Pure builders for the kops and kubectl command lines, and the cluster-spec patch.

Nothing here runs a process: every function maps the configuration to argv
lists (or a spec dict), so the exact commands are unit-tested and printed by
--dry-run verbatim.
"""
from __future__ import annotations

import copy
from typing import Any

from . import irsa
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
    # IRSA: kops publishes the issuer's OIDC documents there and sets
    # serviceAccountIssuerDiscovery.enableAWSOIDCProvider (new_cluster.go).
    argv += ["--discovery-store", cfg.discovery_store]
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


def patch_cluster_spec(spec: dict[str, Any], cfg: ClusterConfig, node_policy_arn: str,
                       operator_policy_arn: str) -> dict[str, Any]:
    """What the bootstrap asks of the cluster spec; a new dict (input untouched), idempotent.

    - `serviceAccountIssuerDiscovery`: the issuer's OIDC documents in the
      discovery bucket, and an IAM OIDC provider trusting them (IRSA);
    - `iam.serviceAccountExternalPermissions`: the operator policy for the
      operator's ServiceAccount only (kops makes and trusts the role), and
      `iam.useServiceAccountExternalPermissions` so kops' own addons use IRSA too;
    - `externalPolicies.node`: the nodes policy (ECR pull of our two
      repositories) and nothing else; an operator policy attached there by an
      earlier bootstrap is taken off.
    Equal input and output mean nothing to `kops replace`.
    """
    patched = copy.deepcopy(spec)
    body = patched.setdefault("spec", {})
    discovery = body.setdefault("serviceAccountIssuerDiscovery", {})
    discovery["discoveryStore"] = f"{cfg.discovery_store}/{cfg.name}"
    discovery["enableAWSOIDCProvider"] = True
    iam = body.setdefault("iam", {})
    iam["useServiceAccountExternalPermissions"] = True
    wanted = irsa.external_permissions(operator_policy_arn)
    keyed = {(p["namespace"], p["name"]) for p in wanted}
    others = [p for p in iam.get("serviceAccountExternalPermissions", [])
              if (p.get("namespace"), p.get("name")) not in keyed]
    iam["serviceAccountExternalPermissions"] = others + wanted
    external = body.setdefault("externalPolicies", {})
    nodes = [arn for arn in external.get("node", []) if arn != operator_policy_arn]
    if node_policy_arn not in nodes:
        nodes.append(node_policy_arn)
    external["node"] = nodes
    return patched
