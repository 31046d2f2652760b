"""Pure logic of the image pipeline: references, challenges, tags, ECR detection, config, build argv."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from irisop_operator.images import ecr
from irisop_operator.images.model import _model_config, _Runtime, content_tag
from irisop_operator.images.registry import OCI_MANIFEST, Reference, parse_challenge
from irisop_deploy.images.runtime import EXTRA_CA_MOUNT, buildah_argv, source_key
from irisop_operator.pipeline import ImageError, VerifiedArtifact
from irisop_operator.settings import Settings
from irisop_serving.contract import CLASSES, FEATURES, parse_metadata

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, registry, repo, tag, digest",
    [
        ("127.0.0.1:5000/iris/models", "127.0.0.1:5000", "iris/models", None, None),
        ("127.0.0.1:5000/iris/models:m-1", "127.0.0.1:5000", "iris/models", "m-1", None),
        (f"localhost/runtime@{D}", "localhost", "runtime", None, D),
        (f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/a/b:t@{D}",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "a/b", "t", D),
    ],
)
def test_reference_parse_roundtrip(text, registry, repo, tag, digest):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize("text", ["iris/models", "models", "127.0.0.1:5000/", "host.io/Upper",
                                  "host.io/x@sha256:short"])
def test_reference_parse_rejects(text):
    with pytest.raises(ImageError):
        Reference.parse(text)


def test_parse_challenge():
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "registry", "scope": "repository:a:pull"}
    assert parse_challenge('Basic realm="irisop-local"') == ("basic", {"realm": "irisop-local"})


def test_content_tag_is_a_function_of_both_inputs():
    tag = content_tag(D, "b" * 64)
    assert tag.startswith("m-") and len(tag) == 22
    assert tag == content_tag(D, "b" * 64)
    assert tag != content_tag(D, "c" * 64)
    assert tag != content_tag("sha256:" + "f" * 64, "b" * 64)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", ecr.EcrRegistry("123456789012", "us-east-1")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ecr.EcrRegistry("123456789012", "cn-north-1")),
        ("127.0.0.1:5000", None),
        ("evil.com/123456789012.dkr.ecr.us-east-1.amazonaws.com", None),
    ],
)
def test_ecr_detection(host, expected):
    assert ecr.ecr_registry(host, Settings()) == expected


def test_ecr_map_setting():
    settings = Settings.from_env({"IRISOP_ECR_REGISTRY_MAP": "127.0.0.1:5000=111122223333/eu-west-1, other:1=1/x"})
    assert ecr.ecr_registry("127.0.0.1:5000", settings) == ecr.EcrRegistry("111122223333", "eu-west-1")
    assert ecr.ecr_registry("127.0.0.1:5001", settings) is None


@pytest.mark.parametrize("entry", ["127.0.0.1:5000", "127.0.0.1:5000=111", "h=/r", "h=1/"])
def test_ecr_map_malformed(entry):
    with pytest.raises(ImageError):
        ecr.ecr_registry("h", Settings(ecr_registry_map=(entry,)))


def test_lifecycle_policy_keeps_n_model_images():
    policy = json.loads(ecr.lifecycle_policy(5))
    keep = policy["rules"][0]["selection"]
    assert keep["countNumber"] == 5 and keep["tagPrefixList"] == ["m-"] and keep["countType"] == "imageCountMoreThan"
    assert ecr.lifecycle_policy(5) == ecr.lifecycle_policy(5)  # stable text: compared before re-putting


def _artifact(tmp_path: Path) -> VerifiedArtifact:
    meta = parse_metadata({"sha256": "b" * 64, "format": "joblib", "model_file": "model.joblib",
                           "feature_names": list(FEATURES), "class_names": list(CLASSES),
                           "versions": {"scikit-learn": "1.9.1"}})
    return VerifiedArtifact(uri="s3://b/p/", sha256="b" * 64, metadata=meta, local_dir=tmp_path)


def test_model_config_sets_env_labels_and_layer(tmp_path):
    runtime_config = {
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin", "IRISOP_MODEL_DIR=/elsewhere"], "Labels": {"keep": "me"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:1"]},
        "history": [{"created_by": "base"}],
    }
    runtime = _Runtime(Reference.parse(f"h.io/rt@{D}"), D, {}, OCI_MANIFEST, runtime_config)
    config = _model_config(runtime, _artifact(tmp_path), "sha256:2")
    assert config["config"]["Env"] == ["PATH=/bin", "IRISOP_MODEL_DIR=/models/current"]
    assert config["config"]["Labels"] == {"keep": "me", "dev.irisop.model.sha256": "b" * 64,
                                          "dev.irisop.model.format": "joblib", "dev.irisop.runtime.digest": D}
    assert config["rootfs"]["diff_ids"] == ["sha256:1", "sha256:2"]
    assert config["history"][-1]["created"] == "2026-01-01T00:00:00Z"
    assert runtime_config["rootfs"]["diff_ids"] == ["sha256:1"]  # the runtime's config is not mutated


def test_buildah_argv_without_ca():
    argv = buildah_argv(Path("/ctx"), Path("/f"), "t:1", "base:1")
    assert argv[:2] == ["buildah", "bud"] and argv[-1] == "/ctx"
    assert "--isolation" in argv and argv[argv.index("--isolation") + 1] == "chroot"
    assert argv[argv.index("--runtime") + 1] == "runc"
    assert not any("EXTRA_CA" in a for a in argv) and "-v" not in argv


def test_buildah_argv_mounts_ca_for_build_only(tmp_path):
    ca = tmp_path / "corp.pem"
    ca.write_text("cert")
    argv = buildah_argv(Path("/ctx"), Path("/f"), "t:1", "base:1", ca, layers=False)
    assert argv[argv.index("-v") + 1] == f"{ca}:{EXTRA_CA_MOUNT}:ro"
    assert f"EXTRA_CA={EXTRA_CA_MOUNT}" in argv
    assert "--layers=false" in argv


def test_source_key_follows_serving_sources(tmp_path):
    (tmp_path / "serving").mkdir()
    (tmp_path / "deploy" / "images").mkdir(parents=True)
    (tmp_path / "deploy" / "images" / "runtime.Containerfile").write_text("FROM x")
    (tmp_path / "serving" / "service.py").write_text("a = 1")
    key = source_key(tmp_path, "base1", "1.4.40")
    assert key == source_key(tmp_path, "base1", "1.4.40")
    (tmp_path / "serving" / "__pycache__").mkdir()
    (tmp_path / "serving" / "__pycache__" / "service.cpython-311.pyc").write_bytes(b"x")
    assert source_key(tmp_path, "base1", "1.4.40") == key  # bytecode is not a source
    assert source_key(tmp_path, "base2", "1.4.40") != key
    assert source_key(tmp_path, "base1", "1.4.41") != key
    (tmp_path / "serving" / "service.py").write_text("a = 2")
    assert source_key(tmp_path, "base1", "1.4.40") != key


@pytest.mark.parametrize(
    "status, reason, transient",
    [(401, "RegistryUnauthorized", False), (403, "RegistryUnauthorized", False),
     (429, "RegistryUnavailable", True), (503, "RegistryUnavailable", True),
     (400, "RegistryError", False), (404, "RegistryError", False)],
)
def test_registry_status_mapping(status, reason, transient):
    import requests

    from irisop_operator.images.registry import RegistryClient

    resp = requests.Response()
    resp.status_code = status
    resp._content = b'{"errors": [{"code": "X"}]}'
    err = RegistryClient("h.io")._error("PUT", "https://h.io/v2/x", resp)
    assert (err.reason, err.transient) == (reason, transient)
