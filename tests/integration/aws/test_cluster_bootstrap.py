"""`irisop cluster create|delete` against a real moto_server over HTTP.

kops/kubectl go to the recording runner from conftest.py; every AWS resource
is created by the real code path and then inspected through boto3.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json

import boto3
import pytest
import yaml

from irisop_deploy.aws import templates, validate
from irisop_deploy.aws.bootstrap import execute
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.runner import DryRunRunner
from irisop_operator.cli import main as irisop

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAME = "iris.example.internal"


def _cfg(**overrides) -> ClusterConfig:
    return validate.check(ClusterConfig(name=NAME, region="us-east-1", dns="private",
                                        zones=["us-east-1a", "us-east-1b"], **overrides))


def _run(cfg, action, recorder, **kw):
    out = io.StringIO()
    ctx = execute(cfg, action, recorder, out=out, **kw)
    return ctx, out.getvalue()


def _clients(region="us-east-1"):
    return {name: boto3.client(name, region_name=region) for name in ("s3", "ec2", "route53", "ecr", "iam")}


def _our_policies(iam):
    return {p["PolicyName"]: p for p in iam.list_policies(Scope="Local", PathPrefix="/irisop/")["Policies"]}


def _inventory(c, cfg):
    """Everything the bootstrap can create, by id, for before/after comparisons."""
    vpcs = c["ec2"].describe_vpcs(Filters=[{"Name": "tag:irisop.dev/cluster", "Values": [cfg.name]}])["Vpcs"]
    return {
        "buckets": sorted(b["Name"] for b in c["s3"].list_buckets()["Buckets"]),
        "vpcs": sorted(v["VpcId"] for v in vpcs),
        "igws": sorted(g["InternetGatewayId"] for g in c["ec2"].describe_internet_gateways()["InternetGateways"]),
        "zones": sorted(z["Id"] for z in c["route53"].list_hosted_zones()["HostedZones"]),
        "repos": sorted(r["repositoryName"] for r in c["ecr"].describe_repositories()["repositories"]),
        "policies": sorted((p["Arn"], p["DefaultVersionId"]) for p in _our_policies(c["iam"]).values()),
        "instances": sorted(i["InstanceId"] for r in c["ec2"].describe_instances()["Reservations"]
                            for i in r["Instances"] if i["State"]["Name"] != "terminated"),
        "roles": sorted(r["RoleName"] for r in c["iam"].list_roles()["Roles"]),
    }


def test_create_builds_every_aws_resource_as_specified(moto, kops_recorder, tmp_path):
    cfg = _cfg()
    sample = tmp_path / "iris.irismodel.yaml"
    ctx, out = _run(cfg, "create", kops_recorder, sample_out=sample)
    c = _clients()
    bucket = cfg.effective_state_bucket

    # The model bucket (private) with a first model in it, and an IrisModel that names it.
    models = cfg.effective_model_bucket
    assert c["s3"].get_public_access_block(Bucket=models)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    assert c["s3"].get_bucket_versioning(Bucket=models)["Status"] == "Enabled"
    meta = json.loads(c["s3"].get_object(Bucket=models, Key="iris/v1/model.json")["Body"].read())
    model_file = c["s3"].get_object(Bucket=models, Key=f"iris/v1/{meta['model_file']}")["Body"].read()
    assert hashlib.sha256(model_file).hexdigest() == meta["sha256"]
    irismodel = yaml.safe_load(sample.read_text())
    assert irismodel["kind"] == "IrisModel"
    assert irismodel["spec"]["model"] == {"uri": f"s3://{models}/iris/v1/", "sha256": meta["sha256"],
                                          "format": "joblib"}
    assert f"kubectl --context {NAME} apply -f {sample}" in out

    assert c["s3"].get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = c["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = c["s3"].get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}

    (vpc,) = c["ec2"].describe_vpcs(Filters=[{"Name": "tag:irisop.dev/cluster", "Values": [NAME]}])["Vpcs"]
    assert vpc["CidrBlock"] == "172.20.0.0/16"
    assert c["ec2"].describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is True

    zones = [z for z in c["route53"].list_hosted_zones()["HostedZones"] if z["Name"] == "example.internal."]
    assert len(zones) == 1 and zones[0]["Config"]["PrivateZone"] is True
    attached = c["route53"].get_hosted_zone(Id=zones[0]["Id"])["VPCs"]
    assert {"VPCRegion": "us-east-1", "VPCId": vpc["VpcId"]} in attached

    for repo in ("irisop/operator", "irisop/models"):
        (described,) = c["ecr"].describe_repositories(repositoryNames=[repo])["repositories"]
        assert described["imageScanningConfiguration"]["scanOnPush"] is True
        lifecycle = json.loads(c["ecr"].get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"])
        assert lifecycle == templates.ecr_lifecycle(cfg)
        assert lifecycle["rules"][0]["selection"]["countNumber"] == cfg.keep_images  # model images kept

    policies = _our_policies(c["iam"])
    assert set(policies) == {cfg.operator_policy_name, cfg.nodes_policy_name}
    account = boto3.client("sts").get_caller_identity()["Account"]
    operator_doc = c["iam"].get_policy_version(PolicyArn=policies[cfg.operator_policy_name]["Arn"],
                                               VersionId="v1")["PolicyVersion"]["Document"]
    operator_doc = json.loads(operator_doc) if isinstance(operator_doc, str) else operator_doc
    by_sid = {s["Sid"]: s for s in operator_doc["Statement"]}
    assert by_sid["ReadModelArtifacts"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert by_sid["ReadModelArtifacts"]["Resource"] == f"arn:aws:s3:::{cfg.effective_model_bucket}/*"
    assert by_sid["ListModelBucket"]["Action"] == ["s3:ListBucket"]
    assert by_sid["PushPullModelImages"]["Resource"] == f"arn:aws:ecr:us-east-1:{account}:repository/irisop/models"
    assert "ecr:PutImage" in by_sid["PushPullModelImages"]["Action"]
    nodes_doc = c["iam"].get_policy_version(PolicyArn=policies[cfg.nodes_policy_name]["Arn"],
                                            VersionId="v1")["PolicyVersion"]["Document"]
    nodes_doc = json.loads(nodes_doc) if isinstance(nodes_doc, str) else nodes_doc
    pull = {s["Sid"]: s for s in nodes_doc["Statement"]}["PullOperatorAndModelImages"]
    assert "ecr:PutImage" not in pull["Action"] and "ecr:BatchGetImage" in pull["Action"]

    # The discovery bucket: public for the two OIDC documents only, ACLs off.
    discovery = cfg.effective_discovery_bucket
    assert discovery != bucket
    public = json.loads(c["s3"].get_bucket_policy(Bucket=discovery)["Policy"])["Statement"]
    assert [(s["Principal"], s["Action"], sorted(s["Resource"])) for s in public] == [("*", "s3:GetObject", [
        f"arn:aws:s3:::{discovery}/{NAME}/.well-known/openid-configuration",
        f"arn:aws:s3:::{discovery}/{NAME}/openid/v1/jwks"])]
    # (kops asks GetBucketPolicyStatus whether the bucket is public, to skip object ACLs; moto
    # answers without IsPublic, so that part is only checkable on AWS.)
    discovery_block = c["s3"].get_public_access_block(Bucket=discovery)["PublicAccessBlockConfiguration"]
    assert discovery_block["BlockPublicAcls"] and discovery_block["IgnorePublicAcls"]
    assert c["s3"].get_bucket_ownership_controls(Bucket=discovery)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]

    # kops got the VPC we made, the private zone and the discovery store; the spec asks for IRSA.
    create = next(a for a in kops_recorder.commands if a[:3] == ["kops", "create", "cluster"])
    assert create[create.index("--network-id") + 1] == vpc["VpcId"]
    assert create[create.index("--dns-zone") + 1] == "example.internal"
    assert create[create.index("--discovery-store") + 1] == f"s3://{discovery}"
    body = kops_recorder.spec["spec"]
    operator_arn, nodes_arn = policies[cfg.operator_policy_name]["Arn"], policies[cfg.nodes_policy_name]["Arn"]
    assert body["externalPolicies"]["node"] == [nodes_arn]  # nodes: ECR pull only
    assert body["serviceAccountIssuerDiscovery"] == {"discoveryStore": f"s3://{discovery}/{NAME}",
                                                     "enableAWSOIDCProvider": True}
    assert body["iam"]["serviceAccountExternalPermissions"] == [
        {"name": "irisop-operator", "namespace": "irisop-system", "aws": {"policyARNs": [operator_arn]}}]
    # The role kops made (named by kops) carries the operator policy, and the install uses its ARN.
    role = c["iam"].get_role(RoleName=f"irisop-operator.irisop-system.sa.{NAME}")["Role"]
    assert [a["PolicyArn"] for a in c["iam"].list_attached_role_policies(RoleName=role["RoleName"])[
        "AttachedPolicies"]] == [operator_arn]
    assert kops_recorder.verbs() == ["kops version --short", "kops get cluster", "kops create cluster", "kops get cluster", "kops replace --state",
                                     "kops update cluster", "kops validate cluster",
                                     "kubectl apply", "kubectl wait", "kubectl apply"]
    (install,) = kops_recorder.applied
    assert install["images"][0]["newName"] == f"{account}.dkr.ecr.us-east-1.amazonaws.com/irisop/operator"
    sa_patch, deployment_patch = (yaml.safe_load(p["patch"]) for p in install["patches"])
    assert sa_patch == [{"op": "replace", "path": "/metadata/annotations/eks.amazonaws.com~1role-arn",
                         "value": role["Arn"]}]
    env = {op["value"]["name"]: op["value"]["value"] for op in deployment_patch if op["path"].endswith("/env/-")}
    assert env["AWS_ROLE_ARN"] == role["Arn"]
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/var/run/secrets/amazonaws.com/token"

    assert f"/{len(ctx.outcomes)}] state bucket s3://irisop-state-iris-example-internal ... created" in out
    assert "kubectl --context iris.example.internal apply -f" in out


def test_second_create_changes_nothing(moto, kops_recorder):
    cfg = _cfg()
    _run(cfg, "create", kops_recorder)
    before = _inventory(_clients(), cfg)
    spec_before = kops_recorder.spec
    kops_recorder.commands.clear()

    ctx, out = _run(cfg, "create", kops_recorder)

    assert ctx.aws.writes() == []  # not one mutating AWS call
    assert _inventory(_clients(), cfg) == before
    assert "kops create cluster" not in kops_recorder.verbs() and "kops replace --state" not in kops_recorder.verbs()
    assert kops_recorder.spec == spec_before
    for step in ("state bucket", "discovery bucket", "VPC", "private hosted zone", "ECR repositories",
                 "IAM policies", "kops cluster"):
        line = next(line for line in out.splitlines() if step in line and line.startswith("["))
        assert "already exists" in line, line


def test_create_repairs_a_half_configured_bucket(moto, kops_recorder):
    cfg = _cfg()
    c = _clients()
    c["s3"].create_bucket(Bucket=cfg.effective_state_bucket)  # e.g. made by hand, or an interrupted run

    _, out = _run(cfg, "create", kops_recorder)

    assert "already exists; turned on versioning, encryption, public access block" in out
    assert c["s3"].get_bucket_versioning(Bucket=cfg.effective_state_bucket)["Status"] == "Enabled"


def test_changed_policy_template_becomes_a_new_default_version(moto, kops_recorder):
    _run(_cfg(), "create", kops_recorder)
    cfg = _cfg(model_bucket="another-model-bucket")

    _, out = _run(cfg, "create", kops_recorder)

    policy = _our_policies(_clients()["iam"])[cfg.operator_policy_name]
    assert policy["DefaultVersionId"] == "v2"
    assert f"{cfg.operator_policy_name}: already exists; new default version" in out


def test_delete_keeps_state_and_images_and_purge_removes_everything(moto, kops_recorder):
    cfg = _cfg()
    _run(cfg, "create", kops_recorder)
    c = _clients()
    # Two versions of a state object: purge must remove every version, not just the latest.
    for body in (b"v1", b"v2"):
        c["s3"].put_object(Bucket=cfg.effective_state_bucket, Key=f"{NAME}/config", Body=body)

    ctx, out = _run(cfg, "delete", kops_recorder)

    left = _inventory(c, cfg)
    assert left == {"buckets": sorted([cfg.effective_model_bucket, cfg.effective_state_bucket]), "vpcs": [],
                    "igws": [], "zones": [],
                    "repos": ["irisop/models", "irisop/operator"], "policies": [], "instances": [], "roles": []}
    assert kops_recorder.spec is None
    kept = next(line for line in out.splitlines() if line.startswith("Kept: "))
    assert f"kept s3://{cfg.effective_state_bucket} (versioned kops state" in kept
    assert "kept irisop/operator, irisop/models (images" in kept
    assert f"kept s3://{cfg.effective_model_bucket} (the models; --purge deletes it)" in kept

    _, out = _run(cfg, "delete", kops_recorder, purge=True)

    assert _inventory(c, cfg) == {"buckets": [], "vpcs": [], "igws": [], "zones": [], "repos": [],
                                  "policies": [], "instances": [], "roles": []}
    assert "Nothing kept" in out

    # Deleting what is already gone is fine (resumable in both directions).
    _, out = _run(cfg, "delete", kops_recorder, purge=True)
    assert "not found" in out


def test_admin_instance_and_region_specific_bucket(moto, kops_recorder, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    cfg = validate.check(ClusterConfig(name="ops.k8s.local", region="eu-west-1", admin_instance=True, admin_ami=ami))

    _, out = _run(cfg, "create", kops_recorder)

    c = _clients("eu-west-1")
    assert c["s3"].get_bucket_location(Bucket=cfg.effective_state_bucket)["LocationConstraint"] == "eu-west-1"
    assert "DNS: none (no hosted zone" in out and c["route53"].list_hosted_zones()["HostedZones"] == []
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [cfg.admin_instance_name]}])
    (instance,) = [i for r in reservations["Reservations"] for i in r["Instances"]]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    user_data = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert "apt-get install -y --no-install-recommends git podman" in script
    assert "kops/releases/download/v1.36.2/kops-linux-" in script and "/release/v1.36.3/bin/linux/" in script
    create = next(a for a in kops_recorder.commands if a[:3] == ["kops", "create", "cluster"])
    assert create[create.index("--dns") + 1] == "none" and "--dns-zone" not in create

    _, out = _run(cfg, "create", kops_recorder)
    assert "admin instance ... already exists" in out

    _, out = _run(cfg, "delete", kops_recorder, purge=True)
    assert f"terminated ({instance['InstanceId']})" in out
    assert _inventory(c, cfg)["vpcs"] == [] and _inventory(c, cfg)["instances"] == []


def test_dry_run_makes_no_aws_call(moto, kops_recorder, tmp_path):
    cfg = _cfg()
    shown = io.StringIO()
    ctx, out = _run(cfg, "create", DryRunRunner(out=shown), dry_run=True, spec_out=tmp_path / "spec.yaml",
                    spec_runner=kops_recorder)

    assert ctx.aws._clients == {}  # no boto3 client was even built
    # The only commands really run: `kops version` (is it new enough?) and kops' own
    # dry run, whose spec lands in the file.
    version_cmd, spec_cmd = kops_recorder.commands
    assert version_cmd == ["kops", "version", "--short"]
    assert spec_cmd[-3:] == ["--dry-run", "--output", "yaml"]
    assert "name: iris.example.internal" in (tmp_path / "spec.yaml").read_text()
    assert "would run: kops update cluster --name iris.example.internal" in shown.getvalue()
    assert _inventory(_clients(), cfg)["buckets"] == []
    assert "would call s3.create_bucket(" in out and "would call iam.create_policy(" in out


@pytest.mark.parametrize("flags, problem", [
    (["--region", "us-east-9"], "region 'us-east-9' (from --region): not an AWS region; allowed: af-south-1"),
    (["--kubernetes-version", "1.37.2"], "kubernetes_version '1.37.2': kops 1.36.2 does not support it yet"),
    (["--state-bucket", "Bad_Bucket"], "state_bucket 'Bad_Bucket'"),
    (["--zones", "eu-west-1a"], "not an availability zone of region us-east-1"),
    (["--node-count", "0"], "node_count 0: must be at least 1"),
    (["--name", "iris.example.com", "--dns", "private", "--dns-zone", "other.internal"], "must be inside dns_zone"),
    (["--dns", "gossip"], "dns 'gossip': kops deprecated gossip DNS in 1.29"),
])
def test_bad_values_fail_before_any_aws_call(moto, capsys, flags, problem):
    code = irisop(["cluster", "create", *flags])

    assert code == 1
    assert problem in capsys.readouterr().err
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_region_from_the_shell_is_used_and_printed(moto, kops_recorder, monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    code = irisop(["cluster", "create", "--dry-run", "--name", "iris.example.internal", "--dns", "private"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "would create cluster iris.example.internal in eu-west-1 (region from AWS_REGION)" in out
    assert '"LocationConstraint": "eu-west-1"' in out


def test_a_region_that_does_not_exist_changes_nothing(moto, monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "mars-north-9")

    code = irisop(["cluster", "create", "--name", "iris.example.internal"])

    err = capsys.readouterr().err
    assert code == 1
    assert "region 'mars-north-9' (from AWS_REGION): not an AWS region; allowed: " in err
    c = _clients()
    assert c["s3"].list_buckets()["Buckets"] == [] and c["ecr"].describe_repositories()["repositories"] == []
    assert c["ec2"].describe_vpcs(Filters=[{"Name": "tag:irisop.dev/cluster", "Values": [NAME]}])["Vpcs"] == []
    assert _our_policies(c["iam"]) == {}


def test_delete_can_keep_the_discovery_bucket(moto, kops_recorder):
    cfg = _cfg()
    _run(cfg, "create", kops_recorder)
    c = _clients()
    key = f"{NAME}/.well-known/openid-configuration"
    c["s3"].put_object(Bucket=cfg.effective_discovery_bucket, Key=key, Body=b"{}")  # as kops publishes it

    _, out = _run(cfg, "delete", kops_recorder, purge=True, keep_discovery_bucket=True)

    assert _inventory(c, cfg)["buckets"] == [cfg.effective_discovery_bucket]
    assert c["s3"].get_object(Bucket=cfg.effective_discovery_bucket, Key=key)["Body"].read() == b"{}"
    assert f"Kept: kept s3://{cfg.effective_discovery_bucket} (--keep-discovery-bucket)" in out

    _, out = _run(cfg, "delete", kops_recorder, purge=True)
    assert _inventory(c, cfg)["buckets"] == []


def test_a_discovery_bucket_irisop_did_not_create_is_kept(moto, kops_recorder):
    cfg = _cfg(discovery_bucket="someone-elses-oidc")
    c = _clients()
    c["s3"].create_bucket(Bucket="someone-elses-oidc")
    _run(cfg, "create", kops_recorder)  # adopts it for the cluster, but it carries no irisop tag

    _, out = _run(cfg, "delete", kops_recorder, purge=True)

    assert "kept s3://someone-elses-oidc (not created by irisop)" in out
    assert _inventory(c, cfg)["buckets"] == ["someone-elses-oidc"]
