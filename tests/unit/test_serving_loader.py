"""Start-up checks of a model artifact, each failure with its reason, and the fast path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irisop_serving import loader
from irisop_serving.errors import ModelLoadError
from irisop_serving.loader import load_model
from irisop_serving.predictor import build_predictor, check_set
from tests.fixtures.serving import copy_artifact, edit_metadata, train_into

REFERENCE = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]])


@pytest.mark.parametrize("fixture", ["artifact_dir", "skops_artifact_dir"])
def test_valid_artifacts_load_with_the_fast_path(request: pytest.FixtureRequest, fixture: str) -> None:
    directory: Path = request.getfixturevalue(fixture)
    model = load_model(directory)
    assert model.predictor.kind == "fast:LogisticRegression"
    assert model.sha256 == json.loads((directory / "model.json").read_text())["sha256"]
    assert model.predictor.predict_proba(REFERENCE.copy()).argmax(axis=1).tolist() == [0, 1, 2]


def test_expected_sha_that_matches(artifact_dir: Path) -> None:
    sha = json.loads((artifact_dir / "model.json").read_text())["sha256"]
    assert load_model(artifact_dir, expected_sha256=sha).sha256 == sha


def refused(directory: Path, message: str, expected_sha256: str | None = None) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_model(directory, expected_sha256)


def test_missing_directory(tmp_path: Path) -> None:
    refused(tmp_path / "nope", "does not exist")


def test_missing_model_json(tmp_path: Path) -> None:
    refused(tmp_path, "model.json not found")


def test_model_json_not_json(tmp_path: Path, artifact_dir: Path) -> None:
    d = copy_artifact(artifact_dir, tmp_path / "a")
    (d / "model.json").write_text("{not json")
    refused(d, "is not valid JSON")


def test_model_json_against_the_contract(tmp_path: Path, artifact_dir: Path) -> None:
    d = copy_artifact(artifact_dir, tmp_path / "a")
    edit_metadata(d, class_names=["a", "b", "c"])
    refused(d, "are not the Iris classes")


def test_missing_model_file(tmp_path: Path, artifact_dir: Path) -> None:
    d = copy_artifact(artifact_dir, tmp_path / "a")
    (d / "model.joblib").unlink()
    refused(d, "model file .* not found")


def test_tampered_model_file(tmp_path: Path, artifact_dir: Path) -> None:
    d = copy_artifact(artifact_dir, tmp_path / "a")
    with open(d / "model.joblib", "ab") as fh:
        fh.write(b"\0")
    refused(d, "sha256 mismatch: model.joblib is [0-9a-f]{64}, model.json says")


def test_wrong_expected_sha(artifact_dir: Path) -> None:
    refused(artifact_dir, "IRISOP_EXPECTED_SHA256 is " + "f" * 64, expected_sha256="f" * 64)


def test_other_sklearn_minor(tmp_path: Path, artifact_dir: Path) -> None:
    d = copy_artifact(artifact_dir, tmp_path / "a")
    edit_metadata(d, versions={"scikit-learn": "0.24.2", "joblib": "1.0"})
    refused(d, "trained with scikit-learn 0.24.2, this server runs")


def test_unloadable_file_with_matching_sha(tmp_path: Path, artifact_dir: Path) -> None:
    # Someone rewrote both the file and its sha: the load itself must fail cleanly.
    import hashlib

    d = copy_artifact(artifact_dir, tmp_path / "a")
    (d / "model.joblib").write_bytes(b"not a pickle")
    edit_metadata(d, sha256=hashlib.sha256(b"not a pickle").hexdigest(), size_bytes=12)
    refused(d, "cannot load model.joblib")


def test_skops_with_untrusted_types_is_refused(tmp_path: Path) -> None:
    import hashlib

    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    d = tmp_path / "a"
    train_into(d, fmt="skops")
    # A reference to an arbitrary function is exactly what skops exists to refuse.
    import os

    sneaky = Pipeline([("f", FunctionTransformer(os.getcwd))])
    data = sio.dumps(sneaky)
    (d / "model.skops").write_bytes(data)
    edit_metadata(d, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    refused(d, "needs types this server does not trust: posix.getcwd")


def test_estimator_with_wrong_feature_count(tmp_path: Path) -> None:
    import hashlib

    import joblib
    from sklearn.linear_model import LogisticRegression

    d = tmp_path / "a"
    train_into(d)
    rng = np.random.default_rng(0)
    wrong = LogisticRegression().fit(rng.normal(size=(30, 3)), np.arange(30) % 3)
    joblib.dump(wrong, d / "model.joblib")
    data = (d / "model.joblib").read_bytes()
    edit_metadata(d, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    refused(d, "estimator expects 3 features")


def test_fast_path_matches_predict_proba(trained) -> None:
    predictor = build_predictor(trained.estimator)
    assert predictor.kind == "fast:LogisticRegression"
    rows = np.random.default_rng(5).uniform(-5, 15, size=(500, 4))
    np.testing.assert_allclose(predictor.predict_proba(rows.copy()), trained.estimator.predict_proba(rows), rtol=1e-9, atol=1e-12)


def test_unknown_estimator_falls_back(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    predictor = build_predictor(tree)
    assert predictor.kind == "estimator:DecisionTreeClassifier"
    np.testing.assert_array_equal(predictor.predict_proba(REFERENCE), tree.predict_proba(REFERENCE))


def test_fast_path_that_disagrees_is_not_used(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    from irisop_serving import predictor as predictor_module

    def off_by_a_little(estimator):
        def proba(matrix: np.ndarray) -> np.ndarray:
            out = estimator.predict_proba(matrix)
            out[:, 0] += 1e-6
            return out

        return proba

    monkeypatch.setattr(predictor_module, "FAST_PATHS", (off_by_a_little,))
    assert build_predictor(trained.estimator).kind == "estimator:LogisticRegression"


def test_subclass_is_not_taken_for_the_known_type(trained) -> None:
    from sklearn.linear_model import LogisticRegression

    from irisop_model.training import load_data

    class Custom(LogisticRegression):
        def predict_proba(self, X):  # a subclass may change the formula
            return super().predict_proba(X)[:, ::-1]

    X, y = load_data()
    assert build_predictor(Custom(max_iter=1000).fit(X, y)).kind == "estimator:Custom"


def test_reference_rows_constant() -> None:
    np.testing.assert_array_equal(loader.REFERENCE_ROWS, REFERENCE)


def test_isolated_load_keeps_sklearn_out_of_the_server_process(artifact_dir: Path) -> None:
    import sys

    from tests.fixtures.tools import run

    code = (
        "import sys; from pathlib import Path; from irisop_serving.loader import load_model; "
        f"m = load_model(Path({str(artifact_dir)!r})); "
        "print(m.predictor.kind, m.estimator is None, 'sklearn' in sys.modules)"
    )
    out = run([sys.executable, "-c", code], timeout=120).stdout
    assert out.split() == ["fast:LogisticRegression", "True", "False"]


def test_extracted_weights_that_disagree_are_not_used(trained) -> None:
    from irisop_serving.loader import fast_predictor_from

    checks = check_set()
    doc = {
        "estimator": "LogisticRegression",
        "linear": {"coef": trained.estimator.coef_.tolist(), "intercept": trained.estimator.intercept_.tolist()},
        "check_proba": trained.estimator.predict_proba(checks).tolist(),
        "check_classes": trained.estimator.predict(checks).tolist(),
    }
    assert fast_predictor_from(doc).kind == "fast:LogisticRegression"
    doc["check_proba"][0][0] += 1e-6
    assert fast_predictor_from(doc) is None
    assert fast_predictor_from({"estimator": "DecisionTreeClassifier", "linear": None}) is None


def test_unrecognised_estimator_is_served_in_process(tmp_path: Path) -> None:
    import hashlib

    import joblib
    from sklearn.tree import DecisionTreeClassifier

    from irisop_model.training import load_data

    d = tmp_path / "a"
    train_into(d)
    X, y = load_data()
    joblib.dump(DecisionTreeClassifier(random_state=0).fit(X, y), d / "model.joblib")
    data = (d / "model.joblib").read_bytes()
    # The tree saw every row, the held-out ones included: its honest claim is 1.0
    # (the quality gate refuses a model.json that claims anything else).
    edit_metadata(d, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                  metrics={"holdout_accuracy": 1.0})
    model = load_model(d)
    assert model.predictor.kind == "estimator:DecisionTreeClassifier"
    assert model.predictor.predict_proba(REFERENCE).argmax(axis=1).tolist() == [0, 1, 2]
