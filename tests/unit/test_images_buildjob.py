"""The in-cluster runtime build Job manifests (pure)."""
from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from irisop_deploy.images import buildjob
from tests.fixtures.tools import run
from irisop_deploy.images.runtime import EXTRA_CA_MOUNT, RuntimeBuildError

KEY = "0123456789abcdef0123"
BASE = "registry.example:5000/irisop/python-base@sha256:" + "a" * 64
DEST = f"registry.example:5000/irisop/runtime:r-{KEY}"


def job(**overrides) -> dict:
    args = dict(key=KEY, namespace="irisop-system", builder_image="registry.example:5000/irisop/buildah@sha256:"
                + "b" * 64, base_image=BASE, destination=DEST)
    args.update(overrides)
    return buildjob.build_job(**args)


def container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_job_is_named_by_key_and_destination_so_a_second_caller_finds_it() -> None:
    first, second = job(), job(builder_image="elsewhere/buildah:1")
    assert first["metadata"]["name"] == second["metadata"]["name"]
    assert first["metadata"]["name"] == buildjob.build_job_name(KEY, DEST)
    assert len(first["metadata"]["name"]) <= 63
    assert job(destination="other.example/irisop/runtime:r-x")["metadata"]["name"] != first["metadata"]["name"]
    assert first["metadata"]["labels"][buildjob.LABEL_BUILD_KEY] == KEY


def test_build_pod_is_not_privileged_and_carries_no_api_token() -> None:
    manifest = job()
    pod = manifest["spec"]["template"]["spec"]
    sec = container(manifest)["securityContext"]
    assert sec["privileged"] is False and sec["allowPrivilegeEscalation"] is False
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert not {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "MKNOD"} & set(sec["capabilities"]["add"])
    # The one relaxation: buildah's user namespace needs unshare(CLONE_NEWUSER).
    assert sec["seccompProfile"] == sec["appArmorProfile"] == {"type": "Unconfined"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never" and manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["activeDeadlineSeconds"] > 0 and manifest["spec"]["ttlSecondsAfterFinished"] > 0


def test_image_names_reach_the_script_through_the_environment_only() -> None:
    hostile = "evil.example/x:$(touch /pwned)"
    manifest = job(base_image=hostile, destination=hostile)
    script = container(manifest)["command"][-1]
    assert hostile not in script
    env = {e["name"]: e["value"] for e in container(manifest)["env"]}
    assert env["BASE_IMAGE"] == env["DESTINATION"] == hostile
    run(["sh", "-n", "-c", script])  # valid shell


def test_tls_is_verified_unless_the_registry_is_insecure() -> None:
    assert "--tls-verify=false" not in container(job())["command"][-1]
    assert container(job(tls_verify=False))["command"][-1].count("--tls-verify=false") == 2  # bud and push


def test_extra_ca_is_mounted_for_run_steps_only_when_given() -> None:
    assert EXTRA_CA_MOUNT not in container(job())["command"][-1]
    script = container(job(extra_ca=True))["command"][-1]
    assert f"/context/{buildjob.CA_KEY}:{EXTRA_CA_MOUNT}:ro" in script
    assert f"EXTRA_CA={EXTRA_CA_MOUNT}" in script


def test_digest_comes_back_through_the_termination_message() -> None:
    c = container(job())
    assert "--digestfile /dev/termination-log" in c["command"][-1]
    assert c["terminationMessagePath"] == "/dev/termination-log"


def bento(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "bento"
    (root / "src").mkdir(parents=True)
    (root / "bento.yaml").write_text("service: svc:Iris\n")
    (root / "src" / "service.py").write_text("print('hi')\n")
    containerfile = tmp_path / "runtime.Containerfile"
    containerfile.write_text("FROM scratch\n")
    return root, containerfile


def test_context_archive_is_reproducible_and_has_the_layout_the_script_expects(tmp_path: Path) -> None:
    root, containerfile = bento(tmp_path)
    first = buildjob.context_archive(root, containerfile)
    (root / "bento.yaml").touch()  # a new mtime must not change the archive
    assert buildjob.context_archive(root, containerfile) == first
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        names = tar.getnames()
        assert {m.uid for m in tar.getmembers()} == {0}
    assert buildjob.CONTAINERFILE_NAME in names
    assert {"bento/bento.yaml", "bento/src/service.py"} <= set(names)


def live(manifest: dict) -> dict:
    return {"metadata": {**manifest["metadata"], "uid": "1234-uid"}}


def test_inputs_are_owned_by_the_job_so_its_deletion_removes_them(tmp_path: Path) -> None:
    owner = live(job())
    cm = buildjob.context_config_map(owner, b"ctx", extra_ca=b"PEM")
    secret = buildjob.push_secret(owner, json.dumps({"auths": {}}).encode())
    for obj in (cm, secret):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
        assert obj["immutable"] is True
    assert base64.b64decode(cm["binaryData"][buildjob.CONTEXT_ARCHIVE]) == b"ctx"
    assert base64.b64decode(cm["binaryData"][buildjob.CA_KEY]) == b"PEM"
    assert json.loads(base64.b64decode(secret["data"]["auth.json"])) == {"auths": {}}
    vols = {v["name"]: v for v in job()["spec"]["template"]["spec"]["volumes"]}
    assert vols["context"]["configMap"]["name"] == cm["metadata"]["name"]
    assert vols["auth"]["secret"]["secretName"] == secret["metadata"]["name"]


def test_an_oversized_context_is_refused_with_the_likely_cause() -> None:
    with pytest.raises(RuntimeBuildError, match="ConfigMap"):
        buildjob.context_config_map(live(job()), b"x" * (buildjob.MAX_CONTEXT_BYTES + 1))
