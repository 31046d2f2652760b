"""The quality gate end to end on the real local node (issue 13.4; lead runs it, like test_e2e_local).

A good model serves with spec.model.minAccuracy 0.9. Then, while a bounded
background load keeps asking the Service:

1. an honest but poor model (trained on one feature: 0.667) is held back by
   the threshold: Degraded=QualityGateFailed with both numbers, fast (issue
   13.2: no waiting for progressDeadlineSeconds, set to 300 s here so only
   the fast path can pass), and the old pods keep answering;
2. the same poor model with a model.json claiming 0.967 (threshold lowered
   to 0.5) is held back because the measured score is not the claim;
3. a good model rolls out and serves.

Zero failed requests throughout.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from irisop_operator import names
from tests.fixtures.aws import ensure_bucket, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.quality import claim_accuracy, train_good, train_on_one_feature
from tests.fixtures.load import ServiceLoad
from tests.integration.test_e2e_local import BUCKET, _try, predict, sample, service_url, serving_sha

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# Long enough that a Degraded seen before it can only come from the pods' own refusal.
DEADLINE = 300
FAST = 90  # seconds from the spec change: image build + pod start + model load + gate + the operator's look


def _upload(s3, directory: Path, namespace: str, version: str) -> str:
    return upload_dir(s3, directory, BUCKET, f"{namespace}/{version}")


def _held_back(crd, namespace: str, name: str, sha_served: str, url: str, words: str) -> float:
    started = time.monotonic()

    def refused():
        cond = crd.condition(namespace, name, "Degraded")
        ok = cond.get("status") == "True" and cond.get("reason") == "QualityGateFailed" and words in cond["message"]
        return cond if ok else None

    degraded = wait_for(refused, timeout=FAST, what=f"Degraded=QualityGateFailed saying {words!r}")
    elapsed = time.monotonic() - started
    assert degraded["message"].startswith("pod "), degraded["message"]
    assert predict(url)["model_sha256"] == sha_served, "the old pods keep serving"
    events = [e for e in crd.events(namespace, "QualityGateFailed") if words in (e.message or "")]
    assert events, "a Warning Event says why"
    return elapsed


def test_quality_gate_on_a_real_node(crd, installed_operator, namespace, stack_s3_client, tmp_path):
    s3 = stack_s3_client  # the S3 stand-in the operator pod reads from
    ensure_bucket(s3, BUCKET)
    good = train_good(tmp_path / "good", seed=42)
    body = sample(namespace, _upload(s3, tmp_path / "good", namespace, "good"))
    body["spec"]["model"]["minAccuracy"] = 0.9
    body["spec"]["serving"]["progressDeadlineSeconds"] = DEADLINE
    crd.custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, body)
    name = body["metadata"]["name"]
    crd.wait_condition(namespace, name, "Ready", "True", timeout=240)
    url = service_url(crd, namespace, name)
    assert wait_for(lambda: _try(predict, url), timeout=30, what="the Service")["model_sha256"] == good["sha256"]
    dep = crd.deployment(namespace, name)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert float(env["IRISOP_MIN_ACCURACY"]) == 0.9

    load = ServiceLoad(url, max_seconds=600)
    load.start()
    try:
        # 1. Honest but poor: below the threshold.
        poor = train_on_one_feature(tmp_path / "poor")
        assert poor["metrics"]["holdout_accuracy"] < 0.9
        crd.patch_model(namespace, name, {"spec": {"model": {"uri": _upload(s3, tmp_path / "poor", namespace, "poor")}}})
        took = _held_back(crd, namespace, name, good["sha256"], url,
                          "held-out accuracy 0.667 on 30 rows is below minAccuracy 0.900")
        print(f"poor model held back {took:.1f} s after the change")

        # 2. The same model claiming more than it scores: the claim is checked, not believed.
        poor_dir = tmp_path / "overstated"
        train_on_one_feature(poor_dir)
        claim_accuracy(poor_dir, 0.967)
        crd.patch_model(namespace, name, {"spec": {"model": {
            "uri": _upload(s3, poor_dir, namespace, "overstated"), "minAccuracy": 0.5}}})
        took = _held_back(crd, namespace, name, good["sha256"], url,
                          "disagrees with model.json's holdout_accuracy 0.967")
        print(f"overstated model held back {took:.1f} s after the change")

        # 3. A good model rolls out.
        better = train_good(tmp_path / "good2", seed=7)
        crd.patch_model(namespace, name, {"spec": {"model": {
            "uri": _upload(s3, tmp_path / "good2", namespace, "good2"), "minAccuracy": 0.9}}})
        wait_for(lambda: serving_sha(crd, namespace, name) == better["sha256"], timeout=60, what="the new model built")
        crd.wait_condition(namespace, name, "Ready", "True", timeout=240)
        crd.wait_condition(namespace, name, "Degraded", "False", timeout=30)
        wait_for(lambda: load.seen(better["sha256"]), timeout=30, what="answers from the good model")
    finally:
        load.stop()
    assert load.ok > 20, f"too few requests ({load.ok})"
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:3]}"
