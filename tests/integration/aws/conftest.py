"""Fixtures for the AWS bootstrap tests: a real moto_server on loopback and a fake kops.

kops and kubectl cannot talk to moto (kops needs real EC2 AMIs, DNS and a
control plane), so those two tools go through `KopsRecorder`: it records
each command line and keeps just enough state (does the cluster exist, what
spec did `kops replace` store) for create/delete to be re-runnable. Every
AWS call still goes over HTTP to moto_server.
"""
from __future__ import annotations

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
def moto_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("moto_server") is None:
        _missing("moto_server not installed: pip install 'moto[server]' (in the test extra)")
    port = free_port()
    server = moto_server(port=port, home=tmp_path_factory.mktemp("moto"))
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
        elif verb == ["delete", "cluster"]:
            self.spec = None
        return Result(0)

    def verbs(self) -> list[str]:
        return [" ".join(a[:3]) if a[0] == "kops" else f"kubectl {a[3]}" for a in self.commands]


@pytest.fixture
def kops_recorder() -> KopsRecorder:
    return KopsRecorder()
