"""The install manifests: they render, the API server accepts them, checkov finds nothing.

Rendering uses the kubectl this project builds (a kustomize new enough for
`labels:` and targeted patches); the server-side dry run runs against the
local control plane from tests/fixtures/cluster.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from irisop_deploy import versions
from irisop_deploy.local import network
from irisop_deploy.aws import plan, steps
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.gateway import Aws
from irisop_deploy.aws.runner import DryRunRunner
from irisop_deploy.local.process import cache_dir
from tests.fixtures.cluster import missing_tool
from tests.fixtures.tools import describe, run, tool_venv_executable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = {"base": DEPLOY / "base", "local": DEPLOY / "overlays" / "local", "aws": DEPLOY / "overlays" / "aws"}
NAMESPACED = {"ServiceAccount", "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"}


@pytest.fixture(scope="module")
def kubectl() -> str:
    built = cache_dir() / "kube" / versions.kubernetes() / "bin" / "kubectl"
    exe = str(built) if built.exists() else shutil.which("kubectl")
    if exe is None:
        missing_tool("kubectl not found: run deploy/local/build-kube.sh kubectl")
    version = run([exe, "version", "--client", "-o", "json"], check=False)
    minor = json.loads(version.stdout or "{}").get("clientVersion", {}).get("minor", "0")
    if int(re.sub(r"\D", "", minor) or 0) < 27:
        missing_tool(f"{exe} is too old for these kustomizations (needs >= 1.27): run deploy/local/build-kube.sh kubectl")
    return exe


def render(kubectl: str, directory: Path) -> list[dict]:
    result = run([kubectl, "kustomize", str(directory)], timeout=60)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def _container(docs: list[dict]) -> dict:
    (deployment,) = by_kind(docs)["Deployment"]
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_a_complete_hardened_install(kubectl, overlay):
    docs = render(kubectl, OVERLAYS[overlay])
    kinds = by_kind(docs)
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "Role", "RoleBinding", "ClusterKopfPeering", "ConfigMap", "Deployment", "PodDisruptionBudget",
            "NetworkPolicy"} <= set(kinds)
    assert {c["metadata"]["name"] for c in kinds["CustomResourceDefinition"]} == {
        "irismodels.ml.irisop.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for doc in docs:
        if doc["kind"] in NAMESPACED:
            assert doc["metadata"]["namespace"] == "irisop-system", doc["metadata"]
    container = _container(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and security["runAsUser"] == 10001
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "IRISOP_PEERING", "value": "irisop"} in container["env"]
    # The ConfigMap reference follows kustomize's hashed name.
    (config_map,) = kinds["ConfigMap"]
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]


def test_rbac_grants_secrets_only_through_an_unbound_role(kubectl):
    kinds = by_kind(render(kubectl, OVERLAYS["base"]))
    roles = {r["metadata"]["name"]: r for r in kinds["ClusterRole"]}
    operator_rules = roles["irisop-operator"]["rules"]
    assert not any("secrets" in rule["resources"] for rule in operator_rules)
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in operator_rules)
    status = next(r for r in operator_rules if r["resources"] == ["irismodels/status"])
    assert status["verbs"] == ["get", "patch", "update"]
    bound = {b["roleRef"]["name"] for b in kinds["ClusterRoleBinding"]}
    assert "irisop-credentials-reader" not in bound


def test_local_and_aws_overlays_differ_where_they_should(kubectl):
    local, aws = render(kubectl, OVERLAYS["local"]), render(kubectl, OVERLAYS["aws"])
    assert by_kind(local)["Deployment"][0]["spec"]["replicas"] == 1
    assert by_kind(aws)["Deployment"][0]["spec"]["replicas"] == 2
    # Locally: the registry and the S3 stand-in on the stack's own address (deploy/local/network.py).
    assert _container(local)["image"] == f"{network.REGISTRY}/irisop/operator:dev"
    assert _container(aws)["image"] == f"{steps.AWS_OVERLAY_IMAGE}:0.1.0"
    assert by_kind(local)["ConfigMap"][0]["data"]["AWS_ENDPOINT_URL"] == network.S3_ENDPOINT
    (account,) = by_kind(aws)["ServiceAccount"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/irisop-operator")


def test_bootstrap_install_layer_renders_on_the_aws_overlay(kubectl, tmp_path):
    """What `irisop cluster create` applies: the aws overlay plus this account's registry and IRSA role."""
    role_arn = "arn:aws:iam::111122223333:role/irisop-operator.irisop-system.sa.irisop.k8s.local"
    cfg = ClusterConfig(region="eu-west-1")
    ctx = plan.Context(cfg=cfg, aws=Aws(cfg.region, dry_run=True), runner=DryRunRunner(),
                       manifests=OVERLAYS["aws"], account="111122223333", operator_role_arn=role_arn)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(steps.install_kustomization(ctx, tmp_path)))
    docs = render(kubectl, tmp_path)
    assert _container(docs)["image"] == "111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/operator:0.1.0"
    assert by_kind(docs)["ConfigMap"][0]["data"]["IRISOP_DEFAULT_REPOSITORY"] == \
        "111122223333.dkr.ecr.eu-west-1.amazonaws.com/irisop/models"
    annotations = by_kind(docs)["ServiceAccount"][0]["metadata"].get("annotations", {})
    assert annotations.get("eks.amazonaws.com/role-arn") == role_arn
    # Web-identity credentials as kops mounts them for its own IRSA pods; no static keys.
    container = _container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_ROLE_ARN"] == role_arn and env["AWS_WEB_IDENTITY_TOKEN_FILE"].startswith(
        "/var/run/secrets/amazonaws.com/")
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    (token,) = [v for v in by_kind(docs)["Deployment"][0]["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "amazonaws.com"


def _kubectl_cluster(kubectl: str, cluster, *args: str):
    return run([kubectl, "--kubeconfig", str(cluster.kubeconfig), *args], check=False, timeout=120)


def install_prerequisites(kubectl: str, cluster, extra_crds: tuple[Path, ...] = ()) -> None:
    """Phase 1, for real (as `irisop cluster create` and Flux do): CRDs and the
    namespace, since a dry run cannot create the types and namespace that the
    other objects need. Both are idempotent to re-apply."""
    for path in (*steps.CRD_FILES, *extra_crds):
        applied = _kubectl_cluster(kubectl, cluster, "apply", "--server-side", "--force-conflicts",
                                   "--field-manager", "irisop-tests", "-f", str(path))
        assert applied.returncode == 0, describe(applied)
    crds = [*steps.CRD_NAMES, *(yaml.safe_load(p.read_text())["metadata"]["name"] for p in extra_crds)]
    waited = _kubectl_cluster(kubectl, cluster, "wait", "--for=condition=Established", "--timeout=60s",
                              *[f"customresourcedefinition/{name}" for name in crds])
    assert waited.returncode == 0, describe(waited)
    created = _kubectl_cluster(kubectl, cluster, "apply", "--server-side", "--field-manager", "irisop-tests",
                               "-f", str(DEPLOY / "base" / "namespace.yaml"))
    assert created.returncode == 0, describe(created)


def assert_server_dry_run_accepts(kubectl: str, cluster, directory: Path) -> None:
    """The API server validates and admits every object of the kustomization."""
    # --force-conflicts: the question is whether the API server admits each
    # object, not who owns its fields (an earlier test may have installed the
    # operator for real, as kubectl, with other values). A dry run changes nothing.
    dry = _kubectl_cluster(kubectl, cluster, "apply", "--server-side", "--dry-run=server", "--force-conflicts",
                           "--field-manager", "irisop-tests", "-k", str(directory))
    assert dry.returncode == 0, describe(dry)
    lines = [line for line in dry.stdout.splitlines() if line.strip()]
    assert len(lines) == len(render(kubectl, directory)), dry.stdout
    assert all(line.endswith("(server dry run)") for line in lines), dry.stdout


@pytest.mark.parametrize("overlay", ["local", "aws"])
def test_server_side_dry_run_accepts_every_object(kubectl, kube_cluster, overlay):
    install_prerequisites(kubectl, kube_cluster)
    assert_server_dry_run_accepts(kubectl, kube_cluster, OVERLAYS[overlay])


def _checkov(*args: str, cwd: Path = REPO) -> list[dict]:
    exe = tool_venv_executable("checkov")
    if not exe.exists():
        missing_tool(f"checkov not installed at {exe}: run deploy/local/bootstrap.sh --with-test-tools")
    # BC_SKIP_MAPPING and --skip-download keep checkov offline (loopback-only tests).
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = run([exe, *args, "--skip-download", "-o", "json"], check=False, cwd=cwd, env=env, timeout=600)
    assert result.returncode in (0, 1), describe(result)
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def _assert_clean(reports: list[dict], expected_type: str) -> None:
    by_type = {r["check_type"]: r for r in reports}
    assert expected_type in by_type, by_type.keys()
    for report in reports:
        failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
        assert failed == [], failed
        assert report["summary"]["parsing_errors"] == 0
    assert by_type[expected_type]["summary"]["passed"] > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_checkov_finds_no_failed_check(kubectl, tmp_path):
    # 1. the sources under deploy/ (config: .checkov.yaml)
    _assert_clean(_checkov("--config-file", str(REPO / ".checkov.yaml")), "kubernetes")
    # 2. the Dockerfile (from another directory: checkov would merge in ./.checkov.yaml)
    _assert_clean(_checkov("--file", str(REPO / "Dockerfile"), "--framework", "dockerfile", cwd=tmp_path),
                  "dockerfile")
    # 3. what is really applied: each overlay rendered
    for name in ("local", "aws"):
        (tmp_path / f"{name}.yaml").write_text(
            run([kubectl, "kustomize", str(OVERLAYS[name])]).stdout)
    _assert_clean(_checkov("--directory", str(tmp_path), "--framework", "kubernetes", cwd=tmp_path), "kubernetes")
