"""`create` publishes the operator's two images: real registry, moto's ECR tokens, real skopeo pushes.

The registry is the test docker-registry mapped to moto's ECR
(IRISOP_ECR_REGISTRY_MAP), so the token path is ECR's: GetAuthorizationToken
for every push, Basic auth at the registry. The recipes build a tiny image
with `podman import` instead of the real Dockerfile and BentoML builds
(minutes each; those builders have their own tests); everything after the
build — key lookup, push, digest, install — is the code `create` runs.
"""
from __future__ import annotations

import io
import json
import uuid

import boto3
import pytest

from irisop_deploy.aws import validate
from irisop_deploy.aws.bootstrap import execute
from irisop_deploy.aws.config import ClusterConfig
from irisop_deploy.aws.images import Recipe, RegistryPublisher
from tests.fixtures.aws import require_tool
from tests.fixtures.registry import ECR_ACCOUNT
from tests.fixtures.tools import run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class TinyBuilds:
    """Recipes whose build is `podman import` of a one-file tarball; counts builds."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.keys = {"operator": uuid.uuid4().hex[:20], "runtime": uuid.uuid4().hex[:20]}
        self.built: list[str] = []

    def _build(self, kind: str) -> str:
        from irisop_deploy.images.baseimage import container_env

        ref = f"localhost/irisop-test/{kind}:{self.keys[kind]}"
        (self.tmp_path / kind).write_text(f"{kind} {self.keys[kind]}\n")
        tarball = self.tmp_path / f"{kind}.tar"
        run(["tar", "-C", str(self.tmp_path), "-cf", str(tarball), kind])
        run(["podman", "import", str(tarball), ref], env=container_env())
        self.built.append(kind)
        return ref

    def recipes(self) -> list[Recipe]:
        return [Recipe(kind, prefix, key=lambda k=kind: self.keys[k], build=lambda k=kind: self._build(k),
                       builder="podman import (test)")
                for kind, prefix in (("operator", "o-"), ("runtime", "r-"))]


@pytest.fixture
def ecr_registry(moto, registry, monkeypatch):
    for tool in ("podman", "skopeo"):
        require_tool(tool)
    monkeypatch.setenv("IRISOP_ECR_REGISTRY_MAP", f"{registry.host}={ECR_ACCOUNT}/us-east-1")
    monkeypatch.setenv("IRISOP_INSECURE_REGISTRIES", registry.host)
    return registry


@pytest.fixture
def token_count(monkeypatch):
    """How many ECR authorization tokens were asked for (the real call still goes to moto)."""
    from irisop_operator.images import ecr

    calls = []
    real = ecr.fresh_credentials

    def counting(client, reg):
        calls.append(reg)
        return real(client, reg)

    monkeypatch.setattr(ecr, "fresh_credentials", counting)
    return calls


def _create(cfg, recorder, builds, registry):
    out = io.StringIO()
    ctx = execute(cfg, "create", recorder, out=out, publisher=RegistryPublisher(keep_images=cfg.keep_images),
                  recipes=builds.recipes(), registry_host=registry.host)
    return ctx, out.getvalue()


def test_create_publishes_both_images_and_installs_them_by_digest(ecr_registry, kops_recorder, tmp_path,
                                                                 token_count):
    cfg = validate.check(ClusterConfig(name="iris.k8s.local", region="us-east-1", keep_images=7))
    builds = TinyBuilds(tmp_path)

    ctx, out = _create(cfg, kops_recorder, builds, ecr_registry)

    assert builds.built == ["operator", "runtime"]
    operator_tag, runtime_tag = f"o-{builds.keys['operator']}", f"r-{builds.keys['runtime']}"
    assert operator_tag in ecr_registry.tags("irisop/operator")
    assert runtime_tag in ecr_registry.tags("irisop/models")  # beside the model images the operator builds
    client = ecr_registry.client()
    operator_digest = client.manifest_digest("irisop/operator", operator_tag)
    runtime_digest = client.manifest_digest("irisop/models", runtime_tag)
    assert ctx.images["operator"].ref == f"{ecr_registry.host}/irisop/operator@{operator_digest}"
    # One token for the "is it there?" look-up and a fresh one for the push, per image.
    assert len(token_count) == 4
    (install,) = kops_recorder.applied
    assert install["images"][0]["digest"] == operator_digest
    literals = install["configMapGenerator"][0]["literals"]
    assert f"IRISOP_RUNTIME_IMAGE={ecr_registry.host}/irisop/models@{runtime_digest}" in literals
    assert f"operator {operator_tag}: built and pushed" in out
    # The pushes re-assert the repositories' lifecycle policy: with the cluster's count, not the default.
    ecr = boto3.client("ecr")
    for repo in ("irisop/operator", "irisop/models"):
        policy = json.loads(ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"])
        assert policy["rules"][0]["selection"]["countNumber"] == 7
    assert "IRISOP_ECR_KEEP_IMAGES=7" in literals

    # Second create: both found by content key, nothing built, pushed or changed.
    tags_before = (ecr_registry.tags("irisop/operator"), ecr_registry.tags("irisop/models"))
    ctx, out = _create(cfg, kops_recorder, builds, ecr_registry)

    assert builds.built == ["operator", "runtime"]
    assert (ecr_registry.tags("irisop/operator"), ecr_registry.tags("irisop/models")) == tags_before
    assert ctx.aws.writes() == []
    assert f"operator {operator_tag}: already in the registry, reused" in out
    assert f"runtime {runtime_tag}: already in the registry, reused" in out
    assert kops_recorder.applied[-1]["images"][0]["digest"] == operator_digest

    # A serving change (new runtime key) builds and pushes the runtime only.
    builds.keys["runtime"] = uuid.uuid4().hex[:20]
    ctx, out = _create(cfg, kops_recorder, builds, ecr_registry)
    assert builds.built == ["operator", "runtime", "runtime"]
    assert f"r-{builds.keys['runtime']}" in ecr_registry.tags("irisop/models")


def test_a_failing_build_stops_create_before_kops(ecr_registry, kops_recorder, tmp_path):
    from irisop_deploy.images.runtime import RuntimeBuildError

    cfg = validate.check(ClusterConfig(name="iris.k8s.local", region="us-east-1"))
    builds = TinyBuilds(tmp_path)
    recipes = builds.recipes()

    def broken() -> str:
        raise RuntimeBuildError("buildah bud exited with 1\nSTEP 3: pip install failed")

    recipes[1] = Recipe("runtime", "r-", key=recipes[1].key, build=broken, builder="buildah (test)")
    from irisop_deploy.aws.plan import StepError

    with pytest.raises(StepError, match=r"operator and runtime images: runtime image \(buildah \(test\)\): "
                                        r"buildah bud exited with 1$"):
        execute(cfg, "create", kops_recorder, out=io.StringIO(), publisher=RegistryPublisher(), recipes=recipes,
                registry_host=ecr_registry.host)
    assert not any(a[:3] == ["kops", "create", "cluster"] for a in kops_recorder.commands)
