"""Check a ClusterConfig before anything is created: all problems at once, no AWS call.

Each rule is a small pure function returning a list of problem strings, so a
bad file reports everything that is wrong in one run instead of one error per
attempt.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from .config import DNS_MODES, LOCAL_SUFFIX, ClusterConfig, ConfigError

# Commercial-partition regions (GovCloud and China need other partitions and
# credentials; they are deliberately out of scope of this bootstrap). The
# installed botocore's endpoint data is added at check time, so a region AWS
# opens after this list was written is known once botocore knows it.
KNOWN_REGIONS = frozenset(
    {
        "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
        "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
        "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "ca-central-1", "ca-west-1",
        "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1",
        "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
        "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    }
)
REGION_RE = re.compile(r"^[a-z]{2}-[a-z]+-\d$")
# family + generation (+ attributes) "." size, e.g. t3.medium, m7g.2xlarge, c6in.metal-24xl
INSTANCE_TYPE_RE = re.compile(r"^[a-z]+\d[a-z0-9-]*\.(nano|micro|small|medium|large|\d*xlarge|metal(-\d+xl)?)$")
KUBE_VERSION_RE = re.compile(r"^v?1\.\d{1,2}\.\d{1,3}$")
# What each kops minor accepts, from its source (upup/pkg/fi/cloudup/apply_cluster.go):
# OldestSupportedKubernetesVersion (older: "upgrading Kubernetes is required"),
# OldestRecommendedKubernetesVersion (older: deprecated, warned about), and a
# Kubernetes minor above kops' own is refused as "not yet supported".
KOPS_KUBERNETES_SUPPORT = {
    (1, 36): {"oldest": (1, 31, 0), "recommended": (1, 33, 0)},
}
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ECR_NAME_RE = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
DURATION_RE = re.compile(r"^\d+[smh]$")
NETWORKING = ("cilium", "calico", "amazonvpc", "flannel", "kindnet", "kubenet")
TOPOLOGIES = ("public", "private")

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problems(name: str, what: str = "bucket") -> list[str]:
    if not _BUCKET_RE.match(name):
        return [f"{what} {name!r}: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a letter or digit"]
    problems = []
    if ".." in name:
        problems.append(f"{what} {name!r}: must not contain '..'")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        problems.append(f"{what} {name!r}: must not look like an IP address")
    if name.startswith(_BUCKET_PREFIXES) or name.endswith(_BUCKET_SUFFIXES):
        problems.append(f"{what} {name!r}: uses a prefix or suffix AWS reserves")
    return problems


def dns_name_problems(name: str, what: str) -> list[str]:
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(DNS_LABEL_RE.match(label) for label in labels):
        return [f"{what} {name!r}: must be a lowercase DNS name with at least two labels (e.g. iris.example.internal)"]
    return []


@lru_cache(maxsize=1)
def known_regions() -> tuple[str, ...]:
    """Commercial regions: the list above plus the installed botocore's endpoint data (no network call)."""
    import botocore.session

    return tuple(sorted(KNOWN_REGIONS | set(botocore.session.Session().get_available_regions("ec2", "aws"))))


def region_problems(cfg: ClusterConfig) -> list[str]:
    where = "" if cfg.region_source == "configuration" else f" (from {cfg.region_source})"
    if not REGION_RE.match(cfg.region) or cfg.region not in known_regions():
        return [f"region {cfg.region!r}{where}: not an AWS region; allowed: {', '.join(known_regions())}"]
    return []


def _version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in text.lstrip("v").split("."))
    return major, minor, patch


def _show(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def kubernetes_version_problems(kubernetes: str, kops: str, *, what: str = "kops_version") -> list[str]:
    """Is `kubernetes` a release that kops `kops` creates clusters with? Names both versions."""
    support = KOPS_KUBERNETES_SUPPORT.get(_version(kops)[:2])
    if support is None:
        known = ", ".join(f"{major}.{minor}.x" for major, minor in sorted(KOPS_KUBERNETES_SUPPORT))
        return [f"{what} {kops!r}: not a kops release whose Kubernetes range irisop knows; allowed: {known}"]
    wanted = _version(kubernetes)
    major, minor = _version(kops)[:2]
    newest = f"{major}.{minor}.x"
    oldest = _show(support["oldest"])
    if wanted[:2] > (major, minor):
        return [f"kubernetes_version {kubernetes!r}: kops {kops} does not support it yet (it refuses Kubernetes "
                f">= {major}.{minor + 1}); allowed: {oldest} to {newest}, or a newer kops"]
    if wanted < support["oldest"]:
        return [f"kubernetes_version {kubernetes!r}: kops {kops} no longer supports it; allowed: {oldest} to {newest}"]
    return []


def zone_problems(cfg: ClusterConfig) -> list[str]:
    problems = []
    for zone in cfg.zones:
        if not re.fullmatch(re.escape(cfg.region) + r"[a-z]", zone):
            problems.append(f"zone {zone!r}: not an availability zone of region {cfg.region}; allowed: "
                            f"{cfg.region} followed by one letter, e.g. {cfg.region}a")
    if len(set(cfg.zones)) != len(cfg.zones):
        problems.append(f"zones {cfg.zones}: listed more than once")
    return problems


# What kops has taken away, and what to use instead: named in the one-line refusal.
_REMOVED_DNS = {"gossip": "kops deprecated gossip DNS in 1.29 and refuses new gossip clusters from 1.37"}


def dns_problems(cfg: ClusterConfig) -> list[str]:
    allowed = f"allowed: {', '.join(DNS_MODES)}"
    if cfg.dns not in DNS_MODES:
        reason = _REMOVED_DNS.get(cfg.dns, "not a DNS mode this bootstrap creates")
        return [f"dns {cfg.dns!r}: {reason}; {allowed}"]
    return []


def name_problems(cfg: ClusterConfig) -> list[str]:
    problems = dns_name_problems(cfg.name, "cluster name")
    if problems or not cfg.private_dns:
        if cfg.dns_zone and not cfg.private_dns:
            problems.append(f"dns_zone {cfg.dns_zone!r}: only used with dns: private; leave it empty or set dns: private")
        return problems
    if cfg.name.endswith(LOCAL_SUFFIX):
        return [f"cluster name {cfg.name!r}: a {LOCAL_SUFFIX} name cannot live in a Route53 zone; "
                f"use dns: none, or a name inside dns_zone"]
    zone = cfg.effective_dns_zone
    problems += dns_name_problems(zone, "dns_zone")
    if not problems and not cfg.name.endswith("." + zone):
        problems.append(f"cluster name {cfg.name!r}: must be inside dns_zone {zone!r} (or use dns: none)")
    return problems


def size_problems(cfg: ClusterConfig) -> list[str]:
    problems = []
    if cfg.node_count < 1:
        problems.append(f"node_count {cfg.node_count}: must be at least 1")
    if cfg.control_plane_count not in (1, 3, 5):
        problems.append(f"control_plane_count {cfg.control_plane_count}: must be 1, 3 or 5 (etcd quorum)")
    for key in ("node_size", "control_plane_size", "admin_instance_type"):
        value = getattr(cfg, key)
        if not INSTANCE_TYPE_RE.match(value):
            problems.append(f"{key} {value!r}: not an EC2 instance type (e.g. t3.medium, m7g.2xlarge)")
    if cfg.keep_images < 1:
        problems.append(f"keep_images {cfg.keep_images}: must be at least 1")
    return problems


def misc_problems(cfg: ClusterConfig) -> list[str]:
    problems = []
    versions_ok = True
    if not KUBE_VERSION_RE.match(cfg.kubernetes_version):
        problems.append(f"kubernetes_version {cfg.kubernetes_version!r}: expected MAJOR.MINOR.PATCH, e.g. 1.36.3")
        versions_ok = False
    if not KUBE_VERSION_RE.match(cfg.kops_version):
        problems.append(f"kops_version {cfg.kops_version!r}: expected MAJOR.MINOR.PATCH, e.g. 1.36.2")
        versions_ok = False
    if versions_ok:
        problems += kubernetes_version_problems(cfg.kubernetes_version, cfg.kops_version)
    if cfg.networking not in NETWORKING:
        problems.append(f"networking {cfg.networking!r}: one of {', '.join(NETWORKING)}")
    if cfg.topology not in TOPOLOGIES:
        problems.append(f"topology {cfg.topology!r}: one of {', '.join(TOPOLOGIES)}")
    if not DURATION_RE.match(cfg.validate_timeout):
        problems.append(f"validate_timeout {cfg.validate_timeout!r}: a duration like 15m or 900s")
    try:
        net = ipaddress.ip_network(cfg.vpc_cidr)
        if not net.is_private or net.version != 4 or not 16 <= net.prefixlen <= 24:
            problems.append(f"vpc_cidr {cfg.vpc_cidr!r}: must be a private IPv4 range between /16 and /24")
    except ValueError:
        problems.append(f"vpc_cidr {cfg.vpc_cidr!r}: not a CIDR block")
    for key in ("model_repository", "operator_repository"):
        value = getattr(cfg, key)
        if not (2 <= len(value) <= 256 and ECR_NAME_RE.match(value)):
            problems.append(f"{key} {value!r}: not an ECR repository name (lowercase, e.g. irisop/models)")
    if cfg.model_repository == cfg.operator_repository:
        problems.append("model_repository and operator_repository must differ")
    if cfg.kops_channel and not re.match(r"^(https://|file:///)\S+$", cfg.kops_channel):
        problems.append(f"kops_channel {cfg.kops_channel!r}: expected an https:// URL or a file:/// path")
    if cfg.admin_ami and not re.fullmatch(r"ami-[0-9a-f]{8,17}", cfg.admin_ami):
        problems.append(f"admin_ami {cfg.admin_ami!r}: expected ami-<hex>")
    for key, value in cfg.tags.items():
        if not key or len(key) > 128 or len(value) > 256 or key.lower().startswith("aws:"):
            problems.append(f"tag {key!r}: keys 1-128 characters not starting with aws:, values up to 256")
    return problems


def problems(cfg: ClusterConfig) -> list[str]:
    found = region_problems(cfg) + zone_problems(cfg) + dns_problems(cfg) + name_problems(cfg) + size_problems(cfg) + misc_problems(cfg)
    found += bucket_name_problems(cfg.effective_state_bucket, "state_bucket")
    found += bucket_name_problems(cfg.effective_model_bucket, "model_bucket")
    found += bucket_name_problems(cfg.effective_discovery_bucket, "discovery_bucket")
    found += discovery_bucket_problems(cfg)
    return found


def discovery_bucket_problems(cfg: ClusterConfig) -> list[str]:
    """The discovery bucket is public (two documents): it must be no bucket that holds anything else."""
    bucket = cfg.effective_discovery_bucket
    others = {"state_bucket": cfg.effective_state_bucket, "model_bucket": cfg.effective_model_bucket}
    return [f"discovery_bucket {bucket!r}: must differ from {key} (that bucket must never be public); "
            f"allowed: any other bucket name, e.g. irisop-oidc-{cfg.slug}"
            for key, other in others.items() if bucket == other]


def check(cfg: ClusterConfig) -> ClusterConfig:
    """Return cfg unchanged, or raise ConfigError listing every problem."""
    found = problems(cfg)
    if found:
        raise ConfigError(found)
    return cfg
