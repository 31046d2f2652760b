"""Nothing lost when the local stack restarts (issue 13.7), on the real local node.

`irisop up`; upload a model of our own to a new prefix and point a second
IrisModel at it; both Ready. `irisop down` (every process stops, the S3
stand-in too); `irisop up` again: both IrisModels are Ready on the same
sha256, and nothing was uploaded again — the bucket holds exactly the object
versions it held before (the sample is not re-uploaded, our model is read from
disk where SeaweedFS kept it).

Needs root and the real node (one kubelet/containerd per machine): run only
where test_local_node.py and test_e2e_local.py run. It leaves the stack up if
it found it up, and down otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.fixtures.aws import upload_dir
from tests.fixtures.cluster import wait_for

# The machine's one node: tests/run.sh runs these after the main session (see pyproject.toml).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.whole_stack]
REPO = Path(__file__).resolve().parents[2]
OWN = {"name": "iris-restart", "namespace": "default", "prefix": "restart/v1"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from irisop_deploy.images.runtime import host_ca_bundle
    from irisop_deploy.local.stack import Stack

    was_up = Stack().plane.running()
    stack = Stack(extra_ca=host_ca_bundle())
    stack.up()
    try:
        yield stack
    finally:
        try:
            stack.kubectl("-n", OWN["namespace"], "delete", "irismodel", OWN["name"], "--ignore-not-found",
                          "--wait=true")
        finally:
            if not was_up:
                stack.down()


def _s3() -> Any:
    from irisop_deploy.local import network, s3store

    return s3store.client(network.S3_PORT, network.STACK_ADDRESS)


def _object_versions(s3: Any, bucket: str) -> set[tuple[str, str, str]]:
    found = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found |= {(v["Key"], v["VersionId"], v["ETag"]) for v in page.get("Versions", [])}
    return found


def _own_model(stack: Any, tmp: Path, bucket: str) -> tuple[dict, str]:
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train

    meta = write_artifact(tmp / "own", train(TrainParams(seed=7)), "joblib")
    uri = upload_dir(_s3(), tmp / "own", bucket, OWN["prefix"])
    doc = yaml.safe_load((REPO / "deploy/examples/irismodel.yaml").read_text())
    doc["metadata"].update(name=OWN["name"], namespace=OWN["namespace"])
    doc["spec"]["model"]["uri"] = uri
    path = tmp / "own.yaml"
    path.write_text(yaml.safe_dump(doc))
    stack.kubectl("apply", "--server-side", "-f", str(path))
    return meta, uri


def _ready_on(stack: Any, namespace: str, name: str, timeout: float = 300) -> str:
    """The sha256 the IrisModel is Ready on, judged by the operator running now:
    first it has reconciled every IrisModel (its own metric), then Ready."""
    from kubernetes import config

    from irisop_deploy.local.stack import OperatorHasSeen

    with config.new_client_from_config(config_file=str(stack.plane.kubeconfig)) as api:
        seen = OperatorHasSeen(api)
        wait_for(lambda: seen({}), timeout, interval=1, what="the new operator to reconcile every IrisModel")

    def ready_sha() -> str | None:
        obj = json.loads(stack.kubectl("-n", namespace, "get", "irismodel", name, "-o", "json"))
        status = obj.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        return status.get("model", {}).get("sha256") if ready and current else None

    return wait_for(ready_sha, timeout, interval=1, what=f"{namespace}/{name} Ready")


def test_down_and_up_keeps_every_model_ready_on_the_same_sha_without_reupload(stack: Any, tmp_path: Path) -> None:
    from irisop_model.upload import parse_s3_uri

    from irisop_deploy.local.stack import SAMPLE, Stack

    sample = yaml.safe_load(SAMPLE.read_text())
    bucket = parse_s3_uri(sample["spec"]["model"]["uri"]).bucket
    own_meta, _ = _own_model(stack, tmp_path, bucket)
    models = {(OWN["namespace"], OWN["name"]), (sample["metadata"].get("namespace", "default"),
                                                sample["metadata"]["name"])}
    before = {model: _ready_on(stack, *model) for model in models}
    assert before[(OWN["namespace"], OWN["name"])] == own_meta["sha256"]
    stored = _object_versions(_s3(), bucket)

    stopped = stack.down()
    assert "S3 stand-in" in stopped
    assert not stack.s3().running()

    # A new Stack, as a new `irisop up` process would make.
    again = Stack(extra_ca=stack.extra_ca)
    result = again.up()
    assert "already at" in result["model"], result["model"]  # the sample was not trained or uploaded again
    assert {model: _ready_on(again, *model) for model in models} == before
    # Not one object written: the same keys, versions and ETags as before the restart.
    assert _object_versions(_s3(), bucket) == stored
