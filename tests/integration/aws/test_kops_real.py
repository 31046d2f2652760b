"""The real kops binary (deploy/kops/build-kops.sh) against moto_server.

What works offline: `kops create cluster --dry-run -o yaml` (kops reads zones,
instance types and our VPC from moto's EC2) and every state-store operation
(`kops create -f`, `get`, `replace`, against moto's S3). What does not:
`kops create cluster` without --dry-run and `kops update cluster`, which
fetch nodeup/protokube hashes from artifacts.k8s.io; those stay on the
recording runner in test_cluster_bootstrap.py.
"""
from __future__ import annotations

import io
import os

import boto3
import pytest
import yaml

from irisop_deploy import versions
from irisop_deploy.aws import kops, steps, validate
from irisop_deploy.aws.bootstrap import execute
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.plan import Context
from irisop_deploy.aws.gateway import Aws
from irisop_deploy.aws.runner import DryRunRunner, SubprocessRunner, require
from irisop_deploy.local.moto import endpoint_url
from irisop_deploy.local.process import cache_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KOPS_VERSION = versions.kops()
KOPS_HOME = cache_dir() / "kops" / KOPS_VERSION  # resolved before any test moves $HOME


@pytest.fixture
def real_kops(moto, monkeypatch, tmp_path_factory) -> SubprocessRunner:
    home = KOPS_HOME
    if not (home / "bin" / "kops").exists() or not (home / "channels" / "stable").exists():
        message = "kops not built: run deploy/kops/build-kops.sh (about 17 minutes cold)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # kops' S3 client takes its endpoint from S3_* (it rejects AWS_ENDPOINT_URL
    # for S3 with its dual-stack default); EC2 honours AWS_ENDPOINT_URL.
    monkeypatch.setenv("S3_ENDPOINT", endpoint_url(moto))
    monkeypatch.setenv("S3_REGION", "us-east-1")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "testing")
    # Image digests would be looked up on registry.k8s.io: tests reach only loopback.
    monkeypatch.setenv("KOPS_FEATURE_FLAGS", "-ImageDigest")
    monkeypatch.setenv("IRISOP_CACHE", str(cache_dir()))  # keep finding the built tools ...
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("kops-home")))  # ... while kops writes no real $HOME
    return SubprocessRunner([str(home / "bin")])


def _cfg(**overrides) -> ClusterConfig:
    channel = KOPS_HOME / "channels" / "stable"
    return validate.check(ClusterConfig(
        name="iris.example.internal", region="us-east-1", dns="private", zones=["us-east-1a", "us-east-1b"], node_count=3,
        kops_channel=f"file://{channel}", **overrides))


def _docs(text: str) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_kops_accepts_our_command_line_and_spec_patch(moto, kops_recorder, real_kops, tmp_path):
    cfg = _cfg()
    ctx = execute(cfg, "create", kops_recorder, out=io.StringIO())  # AWS side for real, kops recorded
    (vpc,) = boto3.client("ec2").describe_vpcs(
        Filters=[{"Name": "tag:irisop.dev/cluster", "Values": [cfg.name]}])["Vpcs"]

    # 1. Our exact `kops create cluster` line, rendered by kops itself.
    spec = require(real_kops, kops.create_cluster(cfg, vpc["VpcId"], dry_run_yaml=True), capture=True).stdout
    kinds = _docs(spec)
    (cluster,) = kinds["Cluster"]
    body = cluster["spec"]
    assert cluster["metadata"]["name"] == cfg.name
    assert body["kubernetesVersion"] == versions.kubernetes().lstrip("v")
    assert body["networkID"] == vpc["VpcId"] and body["networkCIDR"] == "172.20.0.0/16"
    assert body["dnsZone"] == "example.internal"
    assert "cilium" in body["networking"]
    assert body["configBase"] == f"s3://{cfg.effective_state_bucket}/{cfg.name}"
    assert body["cloudLabels"]["irisop.dev/cluster"] == cfg.name
    assert sorted(s["zone"] for s in body["subnets"]) == ["us-east-1a", "us-east-1b"]
    groups = {g["metadata"]["name"]: g["spec"] for g in kinds["InstanceGroup"]}
    (control_plane,) = [g for name, g in groups.items() if name.startswith("control-plane")]
    assert control_plane["machineType"] == "t3.medium" and control_plane["maxSize"] == 1
    assert sum(g["minSize"] for name, g in groups.items() if name.startswith("nodes")) == 3

    # 2. Store it in the moto-backed state bucket, then run our create step with the
    #    real kops: it must see the cluster, patch the spec and `kops replace` it.
    (tmp_path / "spec.yaml").write_text(spec)
    require(real_kops, ["kops", "create", "--state", cfg.state_store, "--filename", str(tmp_path / "spec.yaml")])
    assert not real_kops.run(kops.get_cluster(validate.check(ClusterConfig(name="absent.k8s.local",
                                                                           state_bucket=cfg.effective_state_bucket))),
                             capture=True).ok
    step_ctx = Context(cfg=cfg, aws=Aws(cfg.region), runner=real_kops, manifests=steps.REPO, out=io.StringIO(),
                       vpc_id=vpc["VpcId"], policy_arns=ctx.policy_arns)
    assert steps._kops_create(step_ctx) == "already exists; node IAM policies attached"
    stored = yaml.safe_load(require(real_kops, kops.get_cluster(cfg, as_yaml=True), capture=True).stdout)
    assert sorted(stored["spec"]["externalPolicies"]["node"]) == sorted(ctx.policy_arns)
    assert stored["spec"]["iam"]["allowContainerRegistry"] is True
    # Second pass: nothing to patch, no replace.
    assert steps._kops_create(step_ctx) == "already exists"


def test_dry_run_writes_the_spec_kops_renders(moto, real_kops, tmp_path):
    cfg = _cfg()
    out = io.StringIO()
    spec_file = tmp_path / "cluster.kops.yaml"

    execute(cfg, "create", DryRunRunner(out=out), dry_run=True, spec_out=spec_file, spec_runner=real_kops, out=out)

    assert f"cluster spec written to {spec_file}" in out.getvalue()
    (cluster,) = _docs(spec_file.read_text())["Cluster"]
    # The preview used a throwaway state store; the file names the real one.
    assert cluster["spec"]["configBase"] == f"s3://{cfg.effective_state_bucket}/{cfg.name}"
    assert "networkID" not in cluster["spec"]  # our VPC does not exist yet in a dry run
    assert boto3.client("s3").list_buckets()["Buckets"] == []  # and the dry run created nothing


def test_cli_dry_run_end_to_end(moto, real_kops, tmp_path, capsys):
    from irisop_operator.cli import main as irisop

    spec_file = tmp_path / "preview.yaml"
    code = irisop(["cluster", "create", "--dry-run", "--name", "iris.k8s.local",
                   "--kops-channel", _cfg().kops_channel, "--spec-out", str(spec_file)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "Dry run: would create cluster iris.k8s.local in us-east-1" in out
    assert "would run: kops update cluster --name iris.k8s.local" in out
    assert _docs(spec_file.read_text())["Cluster"][0]["metadata"]["name"] == "iris.k8s.local"
    assert boto3.client("s3").list_buckets()["Buckets"] == []
