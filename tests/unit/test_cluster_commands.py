"""Pure builders of the bootstrap: kops/kubectl command lines, spec patch, AWS request shapes."""
from __future__ import annotations

import dataclasses
import io
import json

import pytest

from irisop_deploy.aws import kops, plan, steps, templates
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.gateway import Aws
from irisop_deploy.aws.runner import DryRunRunner, Result
from irisop_deploy.aws.state_bucket import create_bucket_params
from tests.fixtures.tools import run

PRIVATE = ClusterConfig(name="iris.example.internal", dns="private", zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
                        region="eu-west-1", node_count=3, control_plane_count=3)


def test_create_cluster_command_for_a_private_dns_cluster():
    assert kops.create_cluster(PRIVATE, "vpc-123") == [
        "kops", "create", "cluster", "--name", "iris.example.internal",
        "--state", "s3://irisop-state-iris-example-internal", "--cloud", "aws",
        "--zones", "eu-west-1a,eu-west-1b,eu-west-1c", "--control-plane-zones", "eu-west-1a,eu-west-1b,eu-west-1c",
        "--control-plane-count", "3", "--control-plane-size", "t3.medium",
        "--node-count", "3", "--node-size", "t3.medium", "--kubernetes-version", "1.36.3",
        "--networking", "cilium", "--topology", "public",
        "--dns", "private", "--dns-zone", "example.internal",
        "--network-id", "vpc-123", "--network-cidr", "172.20.0.0/16",
        "--discovery-store", "s3://irisop-oidc-iris-example-internal",
        "--cloud-labels", "app.kubernetes.io/part-of=irisop,irisop.dev/cluster=iris.example.internal",
    ]


def test_default_dns_is_none_as_kops_136_recommends_and_dry_run_asks_for_yaml():
    cfg = ClusterConfig(region="us-east-1", kubernetes_version="v1.31.4", kops_channel="file:///opt/kops/stable")
    argv = kops.create_cluster(cfg, None, dry_run_yaml=True, state="file:///tmp/s")
    assert argv[argv.index("--dns") + 1] == "none"
    assert "--dns-zone" not in argv and "--network-id" not in argv
    assert argv[argv.index("--state") + 1] == "file:///tmp/s"
    assert argv[argv.index("--channel") + 1] == "file:///opt/kops/stable"
    assert argv[argv.index("--kubernetes-version") + 1] == "1.31.4"
    assert argv[-3:] == ["--dry-run", "--output", "yaml"]


def test_lifecycle_commands():
    cfg = ClusterConfig()
    target = ["--name", "irisop.k8s.local", "--state", "s3://irisop-state-irisop-k8s-local"]
    assert kops.update_cluster(cfg) == ["kops", "update", "cluster", *target, "--yes", "--admin"]
    assert kops.validate_cluster(cfg) == ["kops", "validate", "cluster", *target, "--wait", "15m"]
    assert kops.delete_cluster(cfg) == ["kops", "delete", "cluster", *target, "--yes"]
    assert kops.get_cluster(cfg, as_yaml=True)[-2:] == ["--output", "yaml"]
    assert kops.kubectl_apply(cfg, "/tmp/k") == ["kubectl", "--context", "irisop.k8s.local", "apply",
                                                 "--server-side", "--kustomize", "/tmp/k"]


def test_spec_patch_sets_irsa_and_leaves_nodes_only_ecr_pull():
    nodes, operator = "arn:aws:iam::1:policy/irisop/nodes", "arn:aws:iam::1:policy/irisop/operator"
    other = {"name": "app", "namespace": "team", "aws": {"policyARNs": ["arn:x"]}}
    # As an earlier bootstrap left it: the operator policy on the node role.
    spec = {"kind": "Cluster", "spec": {"externalPolicies": {"node": [operator, "arn:admin"]},
                                        "iam": {"serviceAccountExternalPermissions": [other]}}}
    once = kops.patch_cluster_spec(spec, PRIVATE, nodes, operator)
    body = once["spec"]
    assert body["serviceAccountIssuerDiscovery"] == {
        "discoveryStore": "s3://irisop-oidc-iris-example-internal/iris.example.internal",
        "enableAWSOIDCProvider": True}
    assert body["iam"]["useServiceAccountExternalPermissions"] is True
    assert body["iam"]["serviceAccountExternalPermissions"] == [
        other, {"name": "irisop-operator", "namespace": "irisop-system", "aws": {"policyARNs": [operator]}}]
    assert body["externalPolicies"]["node"] == ["arn:admin", nodes]  # the admin's own policy stays
    assert "allowContainerRegistry" not in body["iam"]  # ECR read on every repository: not asked for
    assert spec["spec"]["externalPolicies"]["node"] == [operator, "arn:admin"]  # input untouched
    assert kops.patch_cluster_spec(once, PRIVATE, nodes, operator) == once


def test_kops_role_name_for_the_operator_matches_kops_naming():
    from irisop_deploy.aws import irsa

    assert irsa.operator_service_account() == ("irisop-system", "irisop-operator")
    assert irsa.operator_role_name(PRIVATE) == "irisop-operator.irisop-system.sa.iris.example.internal"
    long = irsa.kops_role_name("irisop-operator", "irisop-system", "a-very-long-cluster-name.example.internal")
    assert len(long) == 64 and long.startswith("irisop-operator.irisop-system.sa.a-very-long-cluster-name-")


@pytest.mark.parametrize("text, max_length, expected", [
    # kops' own vectors (k8s.io/kops pkg/truncate/truncate_test.go, v1.36.2)
    ("foo", 64, "foo"),
    ("this_string_is_33_characters_long", 64, "this_string_is_33_characters_long"),
    ("this_string_is_longer_it_is_46_characters_long", 32, "this_string_is_longer_it_-ha2gug"),
    ("this_string_is_even_longer_due_to_extreme_verbosity_it_is_in_fact_84_characters_long", 64,
     "this_string_is_even_longer_due_to_extreme_verbosity_it_is-7mc0g6"),
])
def test_truncation_is_kops_own(text, max_length, expected):
    from irisop_deploy.aws import irsa

    assert irsa.kops_truncate(text, max_length) == expected


def test_discovery_bucket_exposes_only_the_two_oidc_documents():
    from irisop_deploy.aws import discovery_bucket

    policy = discovery_bucket.policy(PRIVATE)
    (statement,) = policy["Statement"]
    assert statement["Principal"] == "*" and statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == [
        "arn:aws:s3:::irisop-oidc-iris-example-internal/iris.example.internal/.well-known/openid-configuration",
        "arn:aws:s3:::irisop-oidc-iris-example-internal/iris.example.internal/openid/v1/jwks"]
    assert discovery_bucket.PUBLIC_ACCESS_BLOCK["BlockPublicAcls"] is True


def test_bucket_creation_is_region_correct():
    assert create_bucket_params("b", "us-east-1") == {"Bucket": "b"}
    assert create_bucket_params("b", "eu-west-1") == {
        "Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}


def test_policies_grant_only_what_is_needed():
    cfg = ClusterConfig(model_bucket="models-bucket", region="us-east-1")
    operator = templates.operator_policy(cfg, "111122223333")
    actions = {a: s["Resource"] for s in operator["Statement"] for a in s["Action"]}
    assert set(actions) == {
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
        "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"}
    # "*" only where AWS offers no resource-level permission.
    assert [a for a, r in actions.items() if r == "*"] == ["ecr:GetAuthorizationToken"]
    assert actions["s3:GetObject"] == "arn:aws:s3:::models-bucket/*"
    assert actions["ecr:PutImage"] == "arn:aws:ecr:us-east-1:111122223333:repository/irisop/models"
    nodes = templates.nodes_policy(cfg, "111122223333")
    node_actions = {a for s in nodes["Statement"] for a in s["Action"]}
    assert not any(a.startswith("s3:") or a == "ecr:PutImage" for a in node_actions)


def test_lifecycle_policy_is_the_operators_own_document_with_the_configured_count():
    import json

    from irisop_operator.images.ecr import MODEL_TAG_PREFIX, lifecycle_policy

    policy = templates.ecr_lifecycle(ClusterConfig(keep_images=7))
    assert policy == json.loads(lifecycle_policy(7))  # one writer's document: no flip-flopping
    counted = [r for r in policy["rules"] if r["selection"]["countType"] == "imageCountMoreThan"]
    # Only model images age out by count: runtime (r-*) and operator images are never expired by it.
    assert counted and all(r["selection"]["tagPrefixList"] == [MODEL_TAG_PREFIX] for r in counted)
    assert counted[0]["selection"]["countNumber"] == 7


def test_dry_run_touches_no_aws_and_prints_every_write(tmp_path):
    out = io.StringIO()
    ctx = plan.Context(cfg=PRIVATE, aws=Aws(PRIVATE.region, dry_run=True, out=out), runner=DryRunRunner(out=out),
                       manifests=tmp_path, dry_run=True, out=out)
    plan.run(steps.create_steps(PRIVATE), ctx)
    text = out.getvalue()
    assert ctx.aws._clients == {}
    assert "would call s3.create_bucket(" in text and '"LocationConstraint": "eu-west-1"' in text
    assert "would call route53.create_hosted_zone(" in text
    assert "would run: kops create cluster --name iris.example.internal" in text
    assert "would run: kubectl --context iris.example.internal apply --server-side --kustomize" in text
    # Every step is worded as a plan, never as an outcome it did not observe.
    results = [line for line in text.splitlines() if line.startswith("      -> ")]
    assert len(results) == len(steps.create_steps(PRIVATE))
    assert all(line.startswith("      -> would ") for line in results), results
    assert "-> would wait up to 15m for `kops validate cluster` to report the cluster healthy" in text
    assert "created" not in "".join(results).replace("would create", "")
    assert "healthy (dry run" not in text and "nothing changed)" not in text


class _Failing:
    def which(self, tool):
        return None if tool == "kops" else f"/bin/{tool}"

    def run(self, argv, *, capture=False):
        return Result(1, "", "boom")


def test_missing_tool_fails_the_first_step_with_an_install_hint(tmp_path):
    out = io.StringIO()
    ctx = plan.Context(cfg=PRIVATE, aws=Aws(PRIVATE.region, out=out), runner=_Failing(), manifests=tmp_path, out=out)
    with pytest.raises(plan.StepError, match=r"checking kops.*install kops: curl -fsSLo /usr/local/bin/kops"):
        plan.run(steps.create_steps(PRIVATE), ctx)
    assert out.getvalue().startswith(f"[ 1/{len(steps.create_steps(PRIVATE))}] checking kops, kubectl and AWS "
                                     "credentials ... failed")
    assert ctx.aws.calls == []  # the tools check stops before STS


def test_install_kustomization_points_at_this_accounts_registry(tmp_path):
    from irisop_deploy.aws.images import Published

    operator = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/operator@sha256:" + "a" * 64
    runtime = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/models@sha256:" + "b" * 64
    ctx = plan.Context(cfg=PRIVATE, aws=Aws(PRIVATE.region, dry_run=True), runner=DryRunRunner(),
                       manifests=tmp_path, account="111122223333",
                       images={"operator": Published(operator, "o-1", reused=False),
                               "runtime": Published(runtime, "r-1", reused=True)})
    kustomization = steps.install_kustomization(ctx, tmp_path / "install")
    assert kustomization["resources"] == [".."]
    assert kustomization["images"] == [{"name": steps.AWS_OVERLAY_IMAGE,
                                        "newName": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/operator",
                                        "digest": "sha256:" + "a" * 64}]
    literals = kustomization["configMapGenerator"][0]["literals"]
    assert "IRISOP_DEFAULT_REPOSITORY=111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/models" in literals
    assert f"IRISOP_ECR_KEEP_IMAGES={PRIVATE.keep_images}" in literals  # the operator's lifecycle count = ours
    assert f"IRISOP_RUNTIME_IMAGE={runtime}" in literals  # by digest: the first IrisModel needs nothing else
    json.dumps(kustomization)  # plain data, renders as YAML


def test_cli_config_print_defaults_and_check(capsys, tmp_path):
    from irisop_operator.cli import main

    assert main(["cluster", "config", "--print-defaults"]) == 0
    assert "vpc_cidr: 172.20.0.0/16" in capsys.readouterr().out
    bad = tmp_path / "c.yaml"
    bad.write_text("node_count: 0\nregion: nowhere\n")
    assert main(["cluster", "config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "node_count 0: must be at least 1" in err and "region 'nowhere'" in err


class _ToolsPresent:
    """kops and kubectl on PATH; kops is 1.36.2; nothing else may run."""

    def __init__(self, kops_version="1.36.2"):
        self.kops_version = kops_version
        self.ran = []

    def which(self, tool):
        return f"/bin/{tool}"

    def run(self, argv, *, capture=False):
        self.ran.append(list(argv))
        if list(argv) == ["kops", "version", "--short"]:
            return Result(0, self.kops_version + "\n")
        raise AssertionError("no command but `kops version` may run when credentials are missing")


def test_missing_credentials_stop_with_the_exact_hint(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    # No credential source at all, and no instance-metadata lookup (that would leave loopback).
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached: signing fails first
    out = io.StringIO()
    ctx = plan.Context(cfg=PRIVATE, aws=Aws(PRIVATE.region, out=out), runner=_ToolsPresent(), manifests=tmp_path,
                       out=out)
    with pytest.raises(plan.StepError, match=r"no usable AWS credentials: run `aws configure`"):
        plan.run(steps.create_steps(PRIVATE), ctx)
    assert ctx.aws.writes() == []


def test_an_installed_kops_too_old_for_the_kubernetes_version_stops_before_any_aws_call(tmp_path):
    out = io.StringIO()
    runner = _ToolsPresent(kops_version="1.35.0")
    ctx = plan.Context(cfg=PRIVATE, aws=Aws(PRIVATE.region, out=out), runner=runner, manifests=tmp_path, out=out)
    with pytest.raises(plan.StepError, match=r"installed kops '1.35.0': not a kops release whose Kubernetes range"):
        plan.run(steps.create_steps(PRIVATE), ctx)
    assert ctx.aws.calls == [] and runner.ran == [["kops", "version", "--short"]]


def test_installed_kops_naming_both_versions(tmp_path):
    ctx = plan.Context(cfg=dataclasses.replace(PRIVATE, kubernetes_version="1.37.0"), aws=Aws("eu-west-1"),
                       runner=_ToolsPresent(), manifests=tmp_path)
    (problem,) = steps.installed_kops_problems(ctx, ctx.runner)
    assert problem.startswith("kubernetes_version '1.37.0': kops 1.36.2 does not support it yet")


def test_image_recipes_key_content_as_the_builders_do(monkeypatch):
    """The key looked up in the registry is the one the builder tags its local image with."""
    from importlib.metadata import version

    from irisop_deploy.aws import images
    from irisop_deploy.images import operatorimage, runtime

    monkeypatch.setattr(images, "_base_image_id", lambda: "sha256:" + "0" * 64)
    operator, runtime_recipe = images.default_recipes()
    assert (operator.kind, operator.tag_prefix, runtime_recipe.kind, runtime_recipe.tag_prefix) == (
        "operator", "o-", "runtime", "r-")
    assert operator.key() == operatorimage.context_key(images.REPO_ROOT, "sha256:" + "0" * 64)
    assert runtime_recipe.key() == runtime.source_key(images.REPO_ROOT, "sha256:" + "0" * 64, version("bentoml"))
    assert steps.image_repositories(PRIVATE) == {"operator": "irisop/operator", "runtime": "irisop/models"}


@pytest.mark.parametrize("region, kops_version, kubernetes_version", [
    ("eu-west-1", "1.36.2", "1.36.3"),
    ("ap-south-1", "v1.36.0", "v1.35.5"),
])
def test_admin_user_data_renders_every_value(tmp_path, region, kops_version, kubernetes_version):
    cfg = ClusterConfig(name="ops.k8s.local", region=region, kops_version=kops_version,
                        kubernetes_version=kubernetes_version)
    script = templates.admin_user_data(cfg)
    kops_v, kube_v = kops_version.lstrip("v"), kubernetes_version.lstrip("v")
    assert script.startswith("#!/bin/bash\n")
    # Shell variables survive the template (escaped as $$), our placeholders do not.
    assert "arch=$(dpkg --print-architecture)" in script and "${arch}" in script
    assert "$kops_version" not in script and "$kubernetes_version" not in script and "$state_store" not in script
    assert f"https://github.com/kubernetes/kops/releases/download/v{kops_v}/kops-linux-${{arch}}" in script
    assert f"https://dl.k8s.io/release/v{kube_v}/bin/linux/${{arch}}/kubectl" in script
    assert "export KOPS_STATE_STORE=s3://irisop-state-ops-k8s-local\n" in script
    assert f"export AWS_REGION={region}\n" in script
    assert "set -euxo pipefail" in script  # a failed download stops the boot script
    # `irisop cluster create` builds the operator's images there.
    assert "--no-install-recommends git podman buildah skopeo debootstrap " in script
    # bash itself parses it.
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    run(["bash", "-n", str(path)])
    # EC2's limit for user data is 16 KiB before base64.
    assert len(script.encode()) < 16 * 1024


def test_admin_user_data_defaults_follow_the_version_file():
    from irisop_deploy import versions

    script = templates.admin_user_data(ClusterConfig(region="us-east-1"))
    assert f"/releases/download/{versions.kops()}/" in script and f"/release/{versions.kubernetes()}/bin/" in script
