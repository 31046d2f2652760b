"""The one configuration object of `irisop cluster`: defaults, descriptions, loading.

Every value has a default and a one-line description in the field metadata, so
`irisop cluster config --print-defaults`, the command-line flags and the docs
all come from this single table. Values are read from one YAML file and then
overridden by flags; checking them is `validate.py`'s job.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from irisop_operator.settings import DEFAULT_ECR_KEEP_IMAGES

from .. import versions

# kops' reserved suffix: a .k8s.local name once meant gossip DNS. kops 1.36
# creates such clusters with `--dns none` and refuses new gossip clusters from
# 1.37 on, so the name no longer chooses the DNS mode: `dns` does.
LOCAL_SUFFIX = ".k8s.local"
# kops 1.36's `--dns` values that this bootstrap offers. "public" (a public
# Route53 zone the admin owns) is left out: the bootstrap only creates zones it
# can scope to the cluster's VPC. Gossip is not a value at all any more.
DNS_MODES = ("none", "private")


def _opt(default: Any, description: str, **extra: Any) -> Any:
    """A field with its default and description kept side by side."""
    meta = {"description": description, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ClusterConfig:
    name: str = _opt("irisop.k8s.local", "cluster name (with dns: private it must lie inside dns_zone)")
    region: str = _opt("", "AWS region of every resource (empty: as the AWS SDK and kops resolve it: AWS_REGION, "
                           "AWS_DEFAULT_REGION, then the profile's region)")
    zones: list[str] = _opt([], "availability zones for nodes (empty: the region's 'a' zone)")
    state_bucket: str = _opt("", "S3 bucket for the kops state store (empty: irisop-state-<cluster name with dashes>)")
    discovery_bucket: str = _opt("", "S3 bucket for the service-account issuer's OIDC documents (IRSA); public-read on "
                                     "those two documents only, never the state bucket (empty: irisop-oidc-<cluster "
                                     "name with dashes>)")
    dns: str = _opt("none", "how clients and nodes find the API: none (kops 1.36's default: the API behind an AWS "
                            "Network Load Balancer, no DNS zone) or private (a Route53 private zone attached to the VPC)")
    dns_zone: str = _opt("", "with dns: private, the Route53 private zone (empty: the cluster name minus its first label)")
    vpc_cidr: str = _opt("172.20.0.0/16", "CIDR of the VPC created for the cluster (kops' own default range)")
    node_count: int = _opt(2, "number of worker nodes (>= 1)")
    node_size: str = _opt("t3.medium", "EC2 instance type of worker nodes")
    control_plane_count: int = _opt(1, "number of control-plane nodes (1, 3 or 5)")
    control_plane_size: str = _opt("t3.medium", "EC2 instance type of control-plane nodes")
    kubernetes_version: str = _opt(versions.kubernetes().lstrip("v"),
                                   "Kubernetes version kops installs (default: deploy/versions.env, the local cluster's "
                                   "release; kops 1.36 supports 1.31 up to 1.36)")
    networking: str = _opt("cilium", "CNI kops installs (cilium, calico, amazonvpc, flannel, kindnet)")
    topology: str = _opt("public", "kops topology: public (nodes in public subnets) or private (NAT + bastion-less)")
    model_bucket: str = _opt("", "S3 bucket the operator reads model artifacts from (empty: irisop-models-<cluster name with dashes>)")
    model_repository: str = _opt("irisop/models", "ECR repository the operator pushes serving images to")
    operator_repository: str = _opt("irisop/operator", "ECR repository of the operator image")
    keep_images: int = _opt(DEFAULT_ECR_KEEP_IMAGES, "ECR lifecycle policy: images kept per repository (the operator's IRISOP_ECR_KEEP_IMAGES default too)")
    admin_instance: bool = _opt(False, "also launch an admin EC2 instance with git, kops, kubectl and the image builders (podman, buildah, skopeo)")
    admin_instance_type: str = _opt("t3.small", "EC2 instance type of the admin instance")
    admin_ami: str = _opt("", "AMI of the admin instance (empty: latest Debian 12 from the public SSM parameter)")
    admin_key_name: str = _opt("", "EC2 key pair for SSH to the admin instance (empty: none, use SSM Session Manager)")
    kops_channel: str = _opt("", "kops channel (URL or file:// path; empty: kops' own stable channel, fetched from GitHub)")
    kops_version: str = _opt(versions.kops().lstrip("v"),
                             "kops release the bootstrap expects on PATH and the admin instance installs "
                             "(default: deploy/versions.env)")
    validate_timeout: str = _opt("15m", "how long `kops validate cluster --wait` waits for a healthy cluster")
    tags: dict[str, str] = _opt({"app.kubernetes.io/part-of": "irisop"}, "tags put on every AWS resource created")
    # Not a setting: where `region` came from, printed by create/delete/config.
    region_source: str = field(default="configuration", compare=False, metadata={"internal": True})

    # -- derived values: one place for every name, so create and delete agree --

    @property
    def slug(self) -> str:
        """The cluster name as an S3/IAM-safe token (dots and underscores to dashes)."""
        return re.sub(r"[^a-z0-9-]", "-", self.name.lower())

    @property
    def private_dns(self) -> bool:
        return self.dns == "private"

    @property
    def effective_zones(self) -> list[str]:
        return list(self.zones) or [f"{self.region}a"]

    @property
    def effective_state_bucket(self) -> str:
        return self.state_bucket or f"irisop-state-{self.slug}"[:63].rstrip("-")

    @property
    def effective_discovery_bucket(self) -> str:
        return self.discovery_bucket or f"irisop-oidc-{self.slug}"[:63].rstrip("-")

    @property
    def discovery_store(self) -> str:
        """kops' `--discovery-store`; kops publishes under <store>/<cluster name>/."""
        return f"s3://{self.effective_discovery_bucket}"

    @property
    def effective_model_bucket(self) -> str:
        return self.model_bucket or f"irisop-models-{self.slug}"[:63].rstrip("-")

    @property
    def effective_dns_zone(self) -> str:
        if not self.private_dns:
            return ""
        return self.dns_zone or self.name.partition(".")[2]

    @property
    def state_store(self) -> str:
        return f"s3://{self.effective_state_bucket}"

    @property
    def operator_policy_name(self) -> str:
        return f"irisop-{self.slug}-operator"[:128]

    @property
    def nodes_policy_name(self) -> str:
        return f"irisop-{self.slug}-nodes-ecr-pull"[:128]

    @property
    def admin_instance_name(self) -> str:
        return f"irisop-admin.{self.name}"

    @property
    def ownership_tag(self) -> tuple[str, str]:
        """Tag that marks resources this tool created for this cluster (delete only touches those)."""
        return ("irisop.dev/cluster", self.name)

    def aws_tags(self) -> dict[str, str]:
        key, value = self.ownership_tag
        return {**self.tags, key: value}


class ConfigError(ValueError):
    """One or more bad configuration values; str() lists them all, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def fields() -> list[dataclasses.Field]:
    """The settings (file keys and flags); internal bookkeeping fields are left out."""
    return [f for f in dataclasses.fields(ClusterConfig) if not f.metadata.get("internal")]


def settings(cfg: ClusterConfig) -> dict[str, Any]:
    """The settings of cfg as plain data (what `irisop cluster config` prints)."""
    return {f.name: getattr(cfg, f.name) for f in fields()}


def sdk_region(environ: Mapping[str, str]) -> tuple[str, str]:
    """(region, where it came from), in the order the AWS SDKs and kops use; ("", "") if none.

    AWS_REGION first (the Go SDK kops is built on reads it; boto3 and the CLI
    only read AWS_DEFAULT_REGION), then AWS_DEFAULT_REGION, then the region
    of the selected profile in the shared config file. No network call.
    """
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name], name
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    profile = environ.get("AWS_PROFILE") or "default"
    try:
        region = botocore.session.Session(profile=environ.get("AWS_PROFILE") or None).get_scoped_config().get("region")
    except ProfileNotFound:
        return "", ""
    return (region, f"profile {profile!r}") if region else ("", "")


def _coerce(f: dataclasses.Field, value: Any, origin: str) -> Any:
    """Convert a YAML or flag value to the field's type, or raise ConfigError."""
    kind = f.type
    where = f"{origin}: {f.name}"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError([f"{where}: expected true/false, got {value!r}"])
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError([f"{where}: expected an integer, got {value!r}"])
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError([f"{where}: expected an integer, got {value!r}"]) from exc
    if kind == "list[str]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError([f"{where}: expected a list of strings, got {value!r}"])
        return value
    if kind == "dict[str, str]":
        if isinstance(value, str):
            pairs = [p for p in value.split(",") if p.strip()]
            if not all("=" in p for p in pairs):
                raise ConfigError([f"{where}: expected key=value[,key=value], got {value!r}"])
            value = dict(p.split("=", 1) for p in pairs)
        if not isinstance(value, dict):
            raise ConfigError([f"{where}: expected a mapping, got {value!r}"])
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError([f"{where}: expected a string, got {value!r}"])
    return str(value)


def load(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> ClusterConfig:
    """Read the YAML file (if any), then apply flag overrides; types are checked here."""
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields()}
    problems: list[str] = []
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
        if not isinstance(data, dict):
            raise ConfigError([f"{path}: expected a mapping of settings at the top level"])
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                problems.append(f"{path}: unknown setting {key!r}")
                continue
            try:
                values[name] = _coerce(known[name], value, str(path))
            except ConfigError as exc:
                problems.extend(exc.problems)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        try:
            values[name] = _coerce(known[name], value, "flag")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    source = f"{path}" if path is not None and "region" in values else "configuration"
    if overrides and overrides.get("region") is not None:
        source = "--region"
    if not values.get("region"):
        import os

        values["region"], source = sdk_region(os.environ)
        if not values["region"]:
            raise ConfigError(["region: not set; set region (or --region), AWS_REGION, AWS_DEFAULT_REGION or a "
                               "profile region (aws configure set region REGION)"])
    return ClusterConfig(**values, region_source=source)


def defaults_yaml() -> str:
    """Every setting with its default, each preceded by its description."""
    default = ClusterConfig()
    lines = ["# irisop cluster configuration: every setting, its default and what it means."]
    for f in fields():
        lines.append(f"# {f.metadata['description']}")
        lines.append(yaml.safe_dump({f.name: getattr(default, f.name)}, default_flow_style=False, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"
