"""`irisop serve` as a real HTTP server with a freshly trained model.

One server per module for the happy path and the bad-request cases (start-up
takes seconds), plus two servers that must refuse readiness: a tampered model
file, and a model whose sha256 is not the one the operator expects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings

from irisop_serving.contract import CLASSES, FEATURES
from tests.fixtures.serving import IRISOP, Server, copy_artifact, running_server, train_into, wait_ready
from tests.fixtures.tools import describe, run
from tests.fixtures.wide_rows import ROWS, check_answer, expected

pytestmark = pytest.mark.integration

MAX_ROWS = 50
REFERENCE = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [6.0, 2.9, 4.5, 1.5],
    "virginica": [6.9, 3.1, 5.4, 2.1],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    train_into(directory)
    return directory


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    sha = json.loads((model_dir / "model.json").read_text())["sha256"]
    yield from _ready(
        running_server(
            model_dir,
            tmp_path_factory.mktemp("serve"),
            env={"IRISOP_MAX_BATCH_ROWS": str(MAX_ROWS)},
            extra_args=["--expected-sha256", sha],
        )
    )


def _ready(servers: Iterator[Server]) -> Iterator[Server]:
    for srv in servers:
        wait_ready(srv)
        yield srv


def predict(server: Server, payload: Any) -> requests.Response:
    return server.post("/predict", json=payload)


def test_reference_rows(server: Server) -> None:
    resp = predict(server, {"rows": list(REFERENCE.values())})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["predictions"] == list(REFERENCE)
    assert body["classes"] == list(CLASSES)
    assert len(body["probabilities"]) == 3
    for probs, name in zip(body["probabilities"], REFERENCE):
        assert len(probs) == 3 and sum(probs) == pytest.approx(1.0)
        assert max(range(3), key=probs.__getitem__) == CLASSES.index(name)
    assert body["model_sha256"] == server.get("/metadata").json()["sha256"]


def test_named_feature_rows_in_any_key_order(server: Server) -> None:
    rows = [dict(reversed(list(zip(FEATURES, values)))) for values in REFERENCE.values()]
    resp = predict(server, {"rows": rows})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == list(REFERENCE)


def test_mixed_rows_and_a_full_batch(server: Server) -> None:
    rows: list[Any] = [REFERENCE["virginica"], dict(zip(FEATURES, REFERENCE["setosa"]))] * (MAX_ROWS // 2)
    resp = predict(server, {"rows": rows})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == ["virginica", "setosa"] * (MAX_ROWS // 2)


@pytest.fixture(scope="module")
def estimator(model_dir: Path) -> Any:
    import joblib

    return joblib.load(model_dir / "model.joblib")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_served_answers_match_sklearn_over_the_float_range(server: Server, estimator: Any, rows: list[list[float]]) -> None:
    """±1e308, subnormals, zeros, integers, mixed magnitudes: finite, sums to 1, scikit-learn's class."""
    resp = predict(server, {"rows": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    proba = np.array(body["probabilities"], dtype=np.float64)
    check_answer(expected(estimator, rows), proba, [CLASSES.index(name) for name in body["predictions"]])


def test_the_reported_overflow_row(server: Server) -> None:
    # Issue 10: [[null, null, null]] and "setosa"; scikit-learn says virginica.
    resp = predict(server, {"rows": [[0, 0, 1e308, 0]]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == ["virginica"]
    assert resp.json()["probabilities"] == [[0.0, 0.0, 1.0]]


NAMED = dict(zip(FEATURES, REFERENCE["setosa"]))


@pytest.mark.parametrize(
    ("body", "status", "expect"),
    [
        ({"rows": [[1, 2, 3]]}, 400, {"row": 0, "error": "expected 4 features"}),
        ({"rows": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}, 400, {"row": 1, "error": "expected 4 features"}),
        ({"rows": [[1, "a", 3, 4]]}, 400, {"row": 0, "field": "sepal_width", "error": "must be a number"}),
        ({"rows": [[1, 2, None, 4]]}, 400, {"row": 0, "field": "petal_length", "error": "must be a number"}),
        ({"rows": [[1, 2, 3, True]]}, 400, {"row": 0, "field": "petal_width", "error": "boolean"}),
        ({"rows": []}, 400, {"field": "rows", "error": "empty"}),
        ({"rows": [[1, 2, 3, 4]] * (MAX_ROWS + 1)}, 413, {"field": "rows", "error": f"over the limit of {MAX_ROWS}"}),
        ({"rows": [{**NAMED, "colour": 3}]}, 400, {"row": 0, "field": "colour", "error": "unknown feature"}),
        ({"rows": [{k: v for k, v in NAMED.items() if k != "sepal_width"}]}, 400, {"row": 0, "field": "sepal_width", "error": "missing feature"}),
        ({"rows": [42]}, 400, {"row": 0, "error": "expected a list of 4 numbers"}),
    ],
)
def test_bad_rows(server: Server, body: Any, status: int, expect: dict[str, Any]) -> None:
    resp = predict(server, body)
    assert resp.status_code == status, resp.text
    got = resp.json()
    for key, value in expect.items():
        if key == "error":
            assert value in got["error"]
        else:
            assert got[key] == value


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        (b'{"rows": [[1, 2, 3, 4]]', "body", "not valid JSON: Expecting"),
        (b"rows=1,2,3,4", "body", "not valid JSON"),
        (b"\xff\xfe", "body", "not UTF-8"),
        (b"", "body", "not valid JSON"),
        (b"{}", "rows", 'missing field "rows"'),
        (b'{"row": [[1, 2, 3, 4]]}', "row", "unknown field 'row'"),
        (b'{"rows": [[1, 2, 3, 4]], "extra": 1}', "extra", "unknown field 'extra'"),
        (b"[[1, 2, 3, 4]]", "body", "must be a JSON object"),
        (b"null", "body", "must be a JSON object"),
        (b'{"rows": "1,2,3,4"}', "rows", "must be a list of rows"),
        (b'{"rows": [[NaN, 3.5, 1.4, 0.2]]}', "sepal_length", "is nan"),
        (b'{"rows": [[5.1, Infinity, 1.4, 0.2]]}', "sepal_width", "is inf"),
        (b'{"rows": [[5.1, 3.5, -Infinity, 0.2]]}', "petal_length", "is -inf"),
        (b'{"rows": [[5.1, 3.5, 1.4, 1e999]]}', "petal_width", "is inf"),
    ],
)
def test_malformed_bodies_get_a_json_400(server: Server, raw: bytes, field: str, needle: str) -> None:
    resp = server.post("/predict", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) <= {"error", "row", "field"} and body["field"] == field and needle in body["error"]


def test_no_client_error_is_a_5xx(server: Server) -> None:
    for content_type in ("multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle", "application/octet-stream", "text/plain"):
        resp = server.post("/predict", data=b"garbage", headers={"Content-Type": content_type})
        assert resp.status_code == 415, (content_type, resp.text)
        assert resp.json()["field"] == "Content-Type"
    assert server.get("/predict").status_code == 405


def test_metadata(server: Server, model_dir: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    resp = server.get("/metadata")
    assert resp.status_code == 200
    body = resp.json()
    assert body["sha256"] == meta["sha256"]
    assert body["metrics"] == meta["metrics"]
    assert body["versions"] == meta["versions"]
    assert body["created_at"] == meta["created_at"]
    assert body["features"] == list(FEATURES) and body["classes"] == list(CLASSES)
    assert body["predictor"] == "fast:LogisticRegression"


def test_probes_and_metrics(server: Server) -> None:
    assert server.get("/livez").status_code == 200
    assert server.get("/readyz").status_code == 200
    predict(server, {"rows": [REFERENCE["setosa"]]})
    metrics = server.get("/metrics")
    assert metrics.status_code == 200
    assert 'bentoml_service_request_total{endpoint="/predict",http_response_code="200"' in metrics.text


def test_openapi_documents_predict_and_metadata(server: Server) -> None:
    spec = server.get("/docs.json").json()
    assert set(spec["paths"]) == {"/predict", "/metadata"}
    rows = spec["components"]["schemas"]["PredictRequest"]["properties"]["rows"]
    assert (rows["minItems"], rows["maxItems"]) == (1, MAX_ROWS)
    as_list, as_object = rows["items"]["oneOf"]
    assert (as_list["minItems"], as_list["maxItems"]) == (4, 4)
    assert as_object["required"] == list(FEATURES) and as_object["additionalProperties"] is False
    assert set(spec["paths"]["/predict"]["post"]["responses"]) == {"200", "400", "405", "408", "413", "415", "503", "504"}


# ------------------------------------------------------------------ refusing readiness
@pytest.fixture(scope="module", params=["tampered-file", "wrong-expected-sha"])
def unready(request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    directory = copy_artifact(model_dir, tmp_path_factory.mktemp("bad") / "model")
    extra: list[str] = []
    if request.param == "tampered-file":
        with open(directory / "model.joblib", "ab") as fh:
            fh.write(b"tampered")
        reason = "model.json says"
    else:
        extra = ["--expected-sha256", "0" * 64]
        reason = "IRISOP_EXPECTED_SHA256 is " + "0" * 64
    for srv in running_server(directory, tmp_path_factory.mktemp("serve-bad"), extra_args=extra):
        yield srv, reason


def test_refuses_readiness_but_stays_alive(unready: tuple[Server, str]) -> None:
    server, reason = unready
    ready = server.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert "sha256 mismatch" in ready.json()["reason"] and reason in ready.json()["reason"]
    assert server.get("/livez").status_code == 200
    resp = predict(server, {"rows": [REFERENCE["setosa"]]})
    assert resp.status_code == 503 and reason in resp.json()["error"]
    assert server.get("/metadata").status_code == 503
    assert "model not ready: sha256 mismatch" in server.log()


def test_serve_refuses_a_directory_without_model_json(tmp_path: Path) -> None:
    proc = run([*IRISOP, "serve", "--model", str(tmp_path)], check=False, timeout=60)
    assert proc.returncode == 1, describe(proc)
    assert proc.stderr.strip().splitlines() == [f"irisop serve: error: {tmp_path} is not an artifact directory (no model.json); run `irisop train --out {tmp_path}`"]


def test_bento_builds_offline_from_the_repo_root(tmp_path: Path) -> None:
    """`bentoml build -f serving/bentofile.yaml .` packs serving/*.py (not the CLI) into a Bento."""
    import os

    import yaml

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    run(["bentoml", "build", "-f", "serving/bentofile.yaml", "."], cwd=root, env=env, timeout=180)
    (bento,) = [p for p in (tmp_path / "bentoml" / "bentos" / "iris_classifier").iterdir() if p.is_dir()]
    sources = sorted(p.name for p in (bento / "src" / "serving").glob("*.py"))
    assert {"service.py", "contract.py", "loader.py", "extract.py", "validation.py"} <= set(sources)
    assert "cli.py" not in sources
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "serving.service:IrisClassifier"
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements

    # Serve the built Bento (what the image runs) from an unrelated cwd: the
    # model loads through the `serving.extract` child and the fast path.
    from irisop_deploy.local.process import ManagedProcess, free_port, http_ok

    model = tmp_path / "model"
    train_into(model, fmt="skops")
    port = free_port()
    served = ManagedProcess(
        name="bento",
        # env -C: start in an empty directory, as an image's WORKDIR may differ.
        argv=["env", "-C", str(tmp_path / "run"), "bentoml", "serve", f"iris_classifier:{bento.name}", "--port", str(port)],
        home=tmp_path / "run",
        env={**env, "IRISOP_MODEL_DIR": str(model)},
        ready=http_ok(f"http://127.0.0.1:{port}/readyz"),
        timeout=120,
    )
    (tmp_path / "run").mkdir()
    try:
        served.start()
        meta = requests.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()
        assert meta["predictor"] == "fast:LogisticRegression" and meta["format"] == "skops"
        resp = requests.post(f"http://127.0.0.1:{port}/predict", json={"rows": [REFERENCE["virginica"]]}, timeout=10)
        assert resp.json()["predictions"] == ["virginica"]
    finally:
        served.stop()
