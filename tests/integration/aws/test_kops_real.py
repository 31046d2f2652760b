"""The real kops (deploy/kops/build-kops.sh, the release in deploy/versions.env) against moto_server.

How far kops gets against moto, and what each test proves:

1. `kops create cluster --dry-run -o yaml` with our exact command line (IRSA's
   --discovery-store included), our spec patch applied, then `kops create -f`
   of the result: kops validates the IRSA fields we write, and refuses a
   broken entry.
2. The real `kops create cluster` (it stores the cluster and prints its own
   preview), our create step with the real `kops get`/`kops replace`, and
   `kops update cluster` without --yes: kops plans every resource against
   moto, and the plan holds the IAM OIDC provider, the operator's role
   trusting exactly irisop-system/irisop-operator with the operator policy,
   the node role with the ECR-pull policy only, and the OIDC documents in the
   discovery bucket. Then `kops update cluster --yes` applies that plan to
   moto (137 tasks, a few seconds; moto's instances never boot), and our
   next step finds the role kops made, by kops' naming rule.
3. `irisop cluster create --dry-run` offline: kops cannot read its channel from
   GitHub, so the spec is written from the bundled channel file, and says so.

What kops needs besides moto is in kops_fakes.py (channel AMIs, asset hashes,
one moto answer corrected). Not run: `kops validate cluster` (no control plane
can answer) and `kops delete cluster` (against moto it deletes instances,
groups, roles, the OIDC provider, load balancer and subnets, then retries
for minutes on a route table moto still calls in use, with the etcd volumes
left "in-use" after their instances terminated).
"""
from __future__ import annotations

import io
import json
import os
import re
from typing import Iterator

import boto3
import pytest
import yaml

from irisop_deploy import versions
from irisop_deploy.aws import discovery_bucket, kops, plan, spec_preview, steps, validate
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.gateway import Aws
from irisop_deploy.aws.plan import Context
from irisop_deploy.aws.runner import DryRunRunner, SubprocessRunner, require
from irisop_deploy.local.moto import endpoint_url
from irisop_deploy.local.process import cache_dir

from tests.integration.aws.kops_fakes import channel_amis, placeholder_hashes, warm_pool_fix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KOPS_HOME = cache_dir() / "kops" / versions.kops()  # resolved before any test moves $HOME
CHANNEL = KOPS_HOME / "channels" / "stable"


def _require_kops() -> None:
    if not (KOPS_HOME / "bin" / "kops").exists() or not CHANNEL.exists():
        message = "kops not built: run deploy/kops/build-kops.sh (about 11 minutes cold)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """moto_server also knows the Ubuntu images kops' channel asks for (overrides conftest's)."""
    _require_kops()
    amis = channel_amis(CHANNEL, tmp_path_factory.mktemp("moto-amis") / "amis.json")
    return {"MOTO_AMIS_PATH": str(amis)}


@pytest.fixture
def asked_hashes() -> list[str]:
    return []


@pytest.fixture
def warm_pool_answers() -> list[str]:
    return []


@pytest.fixture
def real_kops(moto, monkeypatch, tmp_path_factory, warm_pool_answers) -> Iterator[SubprocessRunner]:
    # kops' S3 client takes its endpoint from S3_* (it rejects AWS_ENDPOINT_URL
    # for S3 with its dual-stack default); every other AWS SDK v2 client
    # honours AWS_ENDPOINT_URL, and AWS_ENDPOINT_URL_AUTO_SCALING per service.
    monkeypatch.setenv("S3_ENDPOINT", endpoint_url(moto))
    monkeypatch.setenv("S3_REGION", "us-east-1")
    monkeypatch.setenv("S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "testing")
    # Image digests would be looked up on registry.k8s.io: tests reach only loopback.
    monkeypatch.setenv("KOPS_FEATURE_FLAGS", "-ImageDigest")
    monkeypatch.setenv("IRISOP_CACHE", str(cache_dir()))  # keep finding the built tools ...
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("kops-home")))  # ... while kops writes no real $HOME
    with warm_pool_fix(endpoint_url(moto), warm_pool_answers) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", proxy)
        yield SubprocessRunner([str(KOPS_HOME / "bin")])


def _cfg(**overrides) -> ClusterConfig:
    return validate.check(ClusterConfig(**{
        "name": "iris.k8s.local", "region": "us-east-1", "zones": ["us-east-1a", "us-east-1b"], "node_count": 3,
        "kops_channel": f"file://{CHANNEL}", **overrides}))


def _aws_side(cfg: ClusterConfig) -> Context:
    """Every create step before kops, for real against moto (no kops, no fake role)."""
    everything = steps.create_steps(cfg)
    first_kops = next(i for i, s in enumerate(everything) if s.title.startswith("kops cluster"))
    ctx = Context(cfg=cfg, aws=Aws(cfg.region), runner=_NoKops(), manifests=steps.REPO, out=io.StringIO(),
                  account=boto3.client("sts").get_caller_identity()["Account"])
    plan.run(everything[1:first_kops], ctx)  # [0] checks the tools and asks STS: done just above
    return ctx


class _NoKops:
    def which(self, tool):
        return None

    def run(self, argv, *, capture=False):
        raise AssertionError(f"no command before the kops step: {argv}")


def _docs(text: str) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in yaml.safe_load_all(text):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_kops_validates_the_spec_we_write(moto, real_kops, tmp_path):
    cfg = _cfg()
    ctx = _aws_side(cfg)

    # 1. Our exact `kops create cluster` line, rendered by kops itself, our patch on top.
    rendered = require(real_kops, kops.create_cluster(cfg, ctx.vpc_id, dry_run_yaml=True), capture=True).stdout
    ctx.spec_out = tmp_path / "spec.yaml"
    ctx.spec_out.write_text(spec_preview.patched_spec_text(ctx, rendered))
    (cluster,) = _docs(ctx.spec_out.read_text())["Cluster"]
    body = cluster["spec"]
    assert body["kubernetesVersion"] == versions.kubernetes().lstrip("v")
    assert body["networkID"] == ctx.vpc_id and body["configBase"] == f"s3://{cfg.effective_state_bucket}/{cfg.name}"
    assert body["serviceAccountIssuerDiscovery"] == {
        "discoveryStore": f"s3://{cfg.effective_discovery_bucket}/{cfg.name}", "enableAWSOIDCProvider": True}
    operator_arn = ctx.policy_arns[cfg.operator_policy_name]
    assert body["iam"]["serviceAccountExternalPermissions"] == [
        {"name": "irisop-operator", "namespace": "irisop-system", "aws": {"policyARNs": [operator_arn]}}]
    assert body["externalPolicies"]["node"] == [ctx.policy_arns[cfg.nodes_policy_name]]

    # 2. kops stores it only after validating it ...
    require(real_kops, ["kops", "create", "--state", cfg.state_store, "--filename", str(ctx.spec_out)])
    stored = yaml.safe_load(require(real_kops, kops.get_cluster(cfg, as_yaml=True), capture=True).stdout)
    assert stored["spec"]["iam"]["serviceAccountExternalPermissions"] == body["iam"]["serviceAccountExternalPermissions"]
    # ... and refuses an IRSA entry that grants nothing: the validation is real.
    broken = json.loads(json.dumps(stored))
    broken["spec"]["iam"]["serviceAccountExternalPermissions"][0]["aws"] = {}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    refused = real_kops.run(kops.replace_cluster(cfg, str(tmp_path / "broken.yaml")), capture=True)
    assert not refused.ok and "serviceAccountExternalPermissions" in refused.stderr, refused.stderr

    # 3. Our create step with the real kops: the stored spec already has the patch, so no replace.
    ctx.runner = real_kops
    assert steps._kops_create(ctx) == "already exists"


def _plan(text: str) -> dict[str, dict[str, str]]:
    """`kops update cluster` preview -> {"create"|"modify": {"Kind/name": block}}."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    resource = None
    for line in text.splitlines():
        heading = re.match(r"^Will (\w+) resources:$", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            resource = None
        elif re.match(r"^  \S+/\S+$", line):
            resource = line.strip()
            current[resource] = ""
        elif resource and line.startswith("  \t"):
            current[resource] += line.strip() + "\n"
    return sections


def test_kops_create_and_update_plan_irsa_against_moto(moto, real_kops, asked_hashes, warm_pool_answers, tmp_path):
    # Not iris.k8s.local: kops names a target group "kops-controller-iris-k8s--<hash>" for it, and
    # moto (not AWS's documented rule) refuses two hyphens in a row; `update --yes` below would stop there.
    cfg = _cfg(name="irisop.k8s.local")
    ctx = _aws_side(cfg)
    with placeholder_hashes(asked_hashes) as files:
        # The real `kops create cluster`, our line plus one test-only --set (where to read asset hashes).
        created = require(real_kops, kops.create_cluster(cfg, ctx.vpc_id) + [
            "--set", f"spec.assets.fileRepository={files}"], capture=True)
        assert f"kops update cluster --name {cfg.name} --yes" in created.stdout  # kops' own preview ran
        ctx.runner = real_kops
        assert steps._kops_create(ctx) == "already exists; spec patched (IRSA for the operator, ECR pull for nodes)"
        preview = require(real_kops, kops.update_cluster(cfg)[:-2], capture=True)  # no --yes, no --admin
        # The same plan rendered as Terraform files: the preview does not print policy documents.
        rendered = tmp_path / "terraform"
        require(real_kops, kops.update_cluster(cfg)[:-2] + ["--target", "terraform", "--out", str(rendered)])
        # Further than the issue asks: `kops update cluster --yes` against moto applies the whole plan
        # (moto "runs" the instances; nothing boots). Checked at the end.
        require(real_kops, kops.update_cluster(cfg), capture=True)

    assert "Must specify --yes to apply changes" in preview.stdout
    planned = _plan(preview.stdout)
    create = planned["create"]
    issuer = f"{cfg.effective_discovery_bucket}.s3.us-east-1.amazonaws.com/{cfg.name}"
    account = boto3.client("sts").get_caller_identity()["Account"]

    oidc = create[f"IAMOIDCProvider/{cfg.name}"]
    assert f"URL https://{issuer}" in " ".join(oidc.split()) and "ClientIDs [amazonaws.com]" in " ".join(oidc.split())

    role = f"irisop-operator.irisop-system.sa.{cfg.name}"
    assert f"IAMRole/{role}" in create
    (statement,) = json.loads((rendered / "data" / f"aws_iam_role_{role}_policy").read_text())["Statement"]
    assert statement == {
        "Action": "sts:AssumeRoleWithWebIdentity", "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{issuer}"},
        "Condition": {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:irisop-system:irisop-operator"}}}
    operator_arn = ctx.policy_arns[cfg.operator_policy_name]
    attached = " ".join(create[f"IAMRolePolicy/external-{role}"].split())
    assert f"Role name:{role}" in attached and f"ExternalPolicies [{operator_arn}]" in attached
    discovery_doc = json.loads((rendered / "data" / "aws_s3_object_discovery.json_content").read_text())
    assert discovery_doc["issuer"] == f"https://{issuer}" and discovery_doc["jwks_uri"] == f"https://{issuer}/openid/v1/jwks"

    nodes = create["IAMRolePolicy/node-policyoverride"]
    assert f"ExternalPolicies [{ctx.policy_arns[cfg.nodes_policy_name]}]" in " ".join(nodes.split())
    assert operator_arn not in "".join(b for n, b in create.items() if "nodes" in n or "node-" in n)

    for document, location in (("discovery.json", ".well-known/openid-configuration"), ("keys.json", "openid/v1/jwks")):
        block = " ".join(create[f"ManagedFile/{document}"].split())
        assert f"Base s3://{cfg.effective_discovery_bucket}/{cfg.name}" in block and f"Location {location}" in block
        assert f"{cfg.name}/{location}" in discovery_bucket.public_keys(cfg)  # exactly what the bucket exposes
    assert "modify" not in planned, planned.get("modify")
    # What the offline stand-ins were used for (a real run reads these from dl.k8s.io / artifacts.k8s.io).
    assert any(p.endswith("/kubelet.sha256") for p in asked_hashes) and warm_pool_answers

    # What `kops update cluster --yes` made in moto, and our next step finds the role kops made.
    iam = boto3.client("iam")
    made = iam.get_role(RoleName=role)["Role"]
    assert steps._operator_role(ctx) == f"{role} ({made['Arn']})" and ctx.operator_role_arn == made["Arn"]
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]] == [
        operator_arn]
    (provider,) = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert provider["Arn"] == f"arn:aws:iam::{account}:oidc-provider/{issuer}"
    published = boto3.client("s3").list_objects_v2(Bucket=cfg.effective_discovery_bucket)["Contents"]
    assert sorted(o["Key"] for o in published) == sorted(discovery_bucket.public_keys(cfg))


def test_offline_dry_run_writes_the_spec_from_the_bundled_channel(moto, real_kops, tmp_path, monkeypatch):
    # kops' default channel is on GitHub: a proxy that refuses everything makes "offline" certain
    # (Go never proxies loopback, so moto is still reached).
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    cfg = _cfg(kops_channel="")
    out = io.StringIO()
    spec_file = tmp_path / "cluster.kops.yaml"

    from irisop_deploy.aws.bootstrap import execute

    execute(cfg, "create", DryRunRunner(out=out), dry_run=True, spec_out=spec_file, spec_runner=real_kops, out=out)

    text = out.getvalue()
    assert f"cluster spec written to {spec_file} (kops' channel could not be read from the network: rendered " \
           f"with the bundled {CHANNEL})" in text
    (cluster,) = _docs(spec_file.read_text())["Cluster"]
    assert cluster["spec"]["configBase"] == f"s3://{cfg.effective_state_bucket}/{cfg.name}"
    assert cluster["spec"]["serviceAccountIssuerDiscovery"]["enableAWSOIDCProvider"] is True
    assert boto3.client("s3").list_buckets()["Buckets"] == []  # the dry run created nothing
    # The file is a spec kops accepts as it stands (throwaway local state store).
    accepted = real_kops.run(["kops", "create", "--state", f"file://{tmp_path / 'state'}", "--filename",
                              str(spec_file)], capture=True)
    assert accepted.ok, accepted.stderr


def test_cli_dry_run_end_to_end(moto, real_kops, tmp_path, capsys):
    from irisop_operator.cli import main as irisop

    spec_file = tmp_path / "preview.yaml"
    code = irisop(["cluster", "create", "--dry-run", "--name", "iris.k8s.local", "--kops-channel", f"file://{CHANNEL}",
                   "--spec-out", str(spec_file)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "Dry run: would create cluster iris.k8s.local in us-east-1 (region from AWS_REGION)" in out
    assert "warning: install kops" not in out  # found in the cache, as the real run would
    assert f"cluster spec written to {spec_file}" in out
    (cluster,) = _docs(spec_file.read_text())["Cluster"]
    assert cluster["spec"]["iam"]["serviceAccountExternalPermissions"][0]["name"] == "irisop-operator"
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert out.rstrip().endswith("Dry run: nothing was created, changed or deleted.")
