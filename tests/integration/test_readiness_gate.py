"""The serving container's refusals, as the operator reads them (issue 13.2 and 13.4).

Real `irisop serve` processes on freshly trained models. Each refusal is
checked on both sides of the contract: /readyz answers 503 with the reason,
and the line in the server's log parses (with the operator's own parser) to
the permanent kind the operator reports as Degraded.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterator

import joblib
import pytest

from irisop_operator import podfacts
from irisop_serving.contract import (
    CHECK_SET_INVALID,
    CHECK_SET_MISSING,
    ENV_MIN_ACCURACY,
    MODEL_REJECTED,
    QUALITY_GATE_FAILED,
    Refusal,
)
from tests.fixtures.quality import claim_accuracy, drop_check_set, replace_check_set, train_good, train_on_one_feature
from tests.fixtures.serving import Server, copy_artifact, edit_metadata, running_server, wait_ready

pytestmark = pytest.mark.integration


def wait_refused(server: Server, timeout: float = 60.0) -> Refusal:
    """Wait for the server's refusal line (a positive signal), then return it parsed."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        refusal = podfacts.reason_from_log(server.log())
        if refusal is not None:
            return refusal
        assert server.get("/readyz").status_code != 200, "server became ready"
        time.sleep(0.2)
    raise AssertionError(f"no 'model not ready' line:\n{server.log()[-3000:]}")


def replace_model_file(directory: Path, payload: bytes) -> None:
    """A different model file with a model.json that describes it consistently."""
    (directory / "model.joblib").write_bytes(payload)
    edit_metadata(directory, sha256=hashlib.sha256(payload).hexdigest(), size_bytes=len(payload))


@pytest.fixture(scope="module")
def dict_server(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = copy_artifact(artifact_dir, tmp_path_factory.mktemp("dict") / "model")
    buf = io.BytesIO()
    joblib.dump({"coef": [1, 2, 3]}, buf)
    replace_model_file(directory, buf.getvalue())
    yield from running_server(directory, tmp_path_factory.mktemp("serve-dict"))


def test_a_dict_is_refused_permanently(dict_server: Server) -> None:
    refusal = wait_refused(dict_server)
    assert refusal.kind == MODEL_REJECTED
    assert refusal.text() == "model not ready: dict has no predict_proba"
    ready = dict_server.get("/readyz")
    assert ready.status_code == 503 and ready.json()["reason"] == "dict has no predict_proba"
    assert dict_server.get("/livez").status_code == 200


def test_a_load_killed_by_a_signal_is_transient(artifact_dir: Path, tmp_path: Path) -> None:
    """The child process that unpickles dies (here: the pickle itself aborts it): no verdict on the model."""
    import os
    import pickle

    from irisop_serving.errors import ModelLoadError
    from irisop_serving.loader import load_model

    class Abort:
        def __reduce__(self):
            return (os.abort, ())

    directory = copy_artifact(artifact_dir, tmp_path / "model")
    replace_model_file(directory, pickle.dumps(Abort()))
    with pytest.raises(ModelLoadError) as err:
        load_model(directory)
    assert err.value.kind is None and "killed by signal" in str(err.value)



# ------------------------------------------------------------------ the quality gate (issue 13.4)
def _wrong_shape(directory: Path) -> None:
    doc = json.loads((directory / "holdout.json").read_text())
    doc["rows"] = [row[:3] for row in doc["rows"]]  # three features per row
    replace_check_set(directory, doc)


def _too_few_labels(directory: Path) -> None:
    doc = json.loads((directory / "holdout.json").read_text())
    doc["labels"] = doc["labels"][:-1]
    replace_check_set(directory, doc)


# name -> (make the artifact, serving env, expected kind or None for "ready", words the reason must contain)
CASES = {
    "good-with-threshold": (lambda d: train_good(d), {ENV_MIN_ACCURACY: "0.9"}, None, ()),
    "good-without-threshold": (lambda d: train_good(d), {}, None, ()),
    "poor-below-threshold": (lambda d: train_on_one_feature(d), {ENV_MIN_ACCURACY: "0.9"}, QUALITY_GATE_FAILED,
                             ("held-out accuracy 0.667 on 30 rows is below minAccuracy 0.900",
                              "model.json claims 0.667")),
    "poor-overstated": (lambda d: (train_on_one_feature(d), claim_accuracy(d, 0.967)), {}, QUALITY_GATE_FAILED,
                        ("held-out accuracy 0.667 on 30 rows disagrees with model.json's holdout_accuracy 0.967",)),
    "check-set-missing-file": (lambda d: (train_good(d), drop_check_set(d, keep_entry=True)), {}, CHECK_SET_MISSING,
                               ("holdout.json is not in the artifact",)),
    "no-check-set-but-threshold": (lambda d: (train_good(d), drop_check_set(d, keep_entry=False)),
                                   {ENV_MIN_ACCURACY: "0.9"}, CHECK_SET_MISSING, ("minAccuracy is 0.9",)),
    "check-set-wrong-shape": (lambda d: (train_good(d), _wrong_shape(d)), {}, CHECK_SET_INVALID,
                              ("row 0 is not 4 finite numbers",)),
    "check-set-labels-short": (lambda d: (train_good(d), _too_few_labels(d)), {}, CHECK_SET_INVALID,
                               ("has 30 rows and 29 labels",)),
    "threshold-out-of-range": (lambda d: train_good(d), {ENV_MIN_ACCURACY: "1.5"}, MODEL_REJECTED,
                               ("IRISOP_MIN_ACCURACY='1.5' must be between 0 and 1",)),
}


@pytest.fixture(scope="module")
def gate_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One server per case, started in parallel (each takes seconds to import and load)."""
    from concurrent.futures import ThreadPoolExecutor

    servers: dict[str, Server] = {}
    for name, (make, env, _, _) in CASES.items():
        directory = tmp_path_factory.mktemp(name) / "model"
        make(directory)
        servers[name] = Server(directory, tmp_path_factory.mktemp(f"serve-{name}"), env=env)
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(Server.start, servers.values()))
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_quality_gate(gate_servers: dict[str, Server], case: str) -> None:
    server = gate_servers[case]
    _, _, kind, words = CASES[case]
    if kind is None:
        wait_ready(server)
        assert server.post("/predict", json={"rows": [[5.1, 3.5, 1.4, 0.2]]}).json()["predictions"] == ["setosa"]
        assert podfacts.reason_from_log(server.log()) is None
        quality = server.get("/metadata").json()["quality"]
        assert quality["rows"] == 30 and quality["accuracy"] == pytest.approx(quality["claimed"], abs=1e-6)
        assert quality["accuracy"] >= 0.9
        return
    refusal = wait_refused(server)
    assert refusal.kind == kind, refusal
    for needle in words:
        assert needle in refusal.reason, refusal.reason
    ready = server.get("/readyz")
    assert ready.status_code == 503 and ready.json()["reason"] == refusal.reason
    assert server.post("/predict", json={"rows": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 503
    assert server.get("/livez").status_code == 200  # refused, not crashed: no restart loop
