"""Fixtures for the AWS bootstrap tests: a real moto_server on loopback and a fake kops.

A whole cluster cannot come up on moto (no instances boot, no control plane),
so most tests send kops and kubectl to `KopsRecorder`: it records each
command line and keeps just enough state (does the cluster exist, what spec
did `kops replace` store) for create/delete to be re-runnable. On `kops
update cluster --yes` it does in moto's IAM the one thing later steps read:
the role kops makes for each serviceAccountExternalPermissions entry, named
by kops' rule; `kops delete cluster` removes it again. Every AWS call goes
over HTTP to moto_server. test_kops_real.py runs the real kops.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pytest
import requests
import yaml

from irisop_deploy.aws.runner import Result
from irisop_deploy.local.moto import aws_env, endpoint_url, moto_server
from irisop_deploy.local.process import free_port


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Extra environment for moto_server itself (a module overrides it, e.g. MOTO_AMIS_PATH)."""
    return {}


@pytest.fixture(scope="module")
def moto_port(tmp_path_factory: pytest.TempPathFactory, moto_env: dict[str, str]) -> Iterator[int]:
    if shutil.which("moto_server") is None:
        _missing("moto_server not installed: pip install 'moto[server]' (in the test extra)")
    port = free_port()
    server = dataclasses.replace(moto_server(port=port, home=tmp_path_factory.mktemp("moto")), env=moto_env)
    server.start()
    try:
        yield port
    finally:
        server.stop()


@pytest.fixture
def moto(moto_port: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """A clean moto per test, and the environment boto3 needs to reach it."""
    requests.post(f"{endpoint_url(moto_port)}/moto-api/reset", timeout=10).raise_for_status()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(moto_port).items():
        monkeypatch.setenv(name, value)
    return moto_port


@dataclass
class KopsRecorder:
    """Stands in for kops and kubectl; remembers what it was asked."""

    commands: list[list[str]] = field(default_factory=list)
    spec: dict | None = None  # the stored cluster, None when no cluster exists
    applied: list[dict] = field(default_factory=list)  # kustomizations given to kubectl

    def which(self, tool: str) -> str | None:
        return f"/recorded/{tool}"

    def run(self, argv: Sequence[str], *, capture: bool = False) -> Result:
        argv = list(argv)
        self.commands.append(argv)
        verb = argv[1:3]
        if argv[:3] == ["kops", "version", "--short"]:
            return Result(0, "1.36.2\n")
        if argv[0] == "kubectl" and "--filename" in argv:
            missing = [p for p in argv[argv.index("--filename") + 1::2] if not Path(p).is_file()]
            return Result(1, "", f"missing {missing}") if missing else Result(0)
        if argv[0] == "kubectl" and "--kustomize" in argv:
            directory = Path(argv[argv.index("--kustomize") + 1])
            self.applied.append(yaml.safe_load((directory / "kustomization.yaml").read_text()))
            return Result(0)
        if verb == ["get", "cluster"]:
            if self.spec is None:
                return Result(1, "", "cluster not found")
            return Result(0, yaml.safe_dump(self.spec) if "--output" in argv else argv[argv.index("--name") + 1])
        if verb == ["create", "cluster"] and "--dry-run" in argv:
            return Result(0, f"kind: Cluster\nmetadata:\n  name: {argv[argv.index('--name') + 1]}\n")
        if verb == ["create", "cluster"]:
            name = argv[argv.index("--name") + 1]
            self.spec = {"apiVersion": "kops.k8s.io/v1alpha2", "kind": "Cluster", "metadata": {"name": name},
                         "spec": {"kubernetesVersion": argv[argv.index("--kubernetes-version") + 1]}}
        elif argv[1] == "replace":
            self.spec = yaml.safe_load(Path(argv[argv.index("--filename") + 1]).read_text())
        elif verb == ["update", "cluster"] and "--yes" in argv:
            self._service_account_roles(create=True)
        elif verb == ["delete", "cluster"]:
            self._service_account_roles(create=False)
            self.spec = None
        return Result(0)

    def _service_account_roles(self, *, create: bool) -> None:
        import boto3

        from irisop_deploy.aws.irsa import kops_role_name

        iam = boto3.client("iam")
        cluster = (self.spec or {}).get("metadata", {}).get("name", "")
        for entry in (self.spec or {}).get("spec", {}).get("iam", {}).get("serviceAccountExternalPermissions", []):
            role = kops_role_name(entry["name"], entry["namespace"], cluster)
            exists = any(r["RoleName"] == role for r in iam.list_roles()["Roles"])
            if create and not exists:
                iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
                for arn in entry["aws"]["policyARNs"]:
                    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
            elif not create and exists:
                for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
                    iam.detach_role_policy(RoleName=role, PolicyArn=attached["PolicyArn"])
                iam.delete_role(RoleName=role)

    def verbs(self) -> list[str]:
        return [" ".join(a[:3]) if a[0] == "kops" else f"kubectl {a[3]}" for a in self.commands]


@pytest.fixture
def kops_recorder() -> KopsRecorder:
    return KopsRecorder()
