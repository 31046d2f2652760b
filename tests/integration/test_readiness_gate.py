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
from irisop_serving.contract import MODEL_REJECTED, Refusal
from tests.fixtures.serving import Server, copy_artifact, edit_metadata, running_server

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
