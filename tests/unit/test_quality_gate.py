"""The quality gate's pure parts (issue 13.4): check-set contract, minAccuracy in spec and pod, the gate's verdicts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from irisop_operator.builders import Owner, build_deployment
from irisop_operator.spec import SpecError, parse_spec
from irisop_serving.contract import (
    CHECK_SET_FILE,
    CHECK_SET_INVALID,
    CHECK_SET_MISSING,
    ENV_MIN_ACCURACY,
    QUALITY_GATE_FAILED,
    CheckSetError,
    ContractError,
    artifact_files,
    claimed_accuracy,
    parse_check_set,
    parse_metadata,
    parse_min_accuracy,
)
from irisop_serving.errors import ModelLoadError
from irisop_serving.predictor import Predictor
from irisop_serving.quality import gate, min_accuracy_from_env

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1], [5.0, 3.4, 1.5, 0.2]]
LABELS = [0, 1, 2, 0]
FEATURE_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def check_doc(rows=ROWS, labels=LABELS):
    return {"feature_names": FEATURE_NAMES, "rows": rows, "labels": labels}


def metadata_doc(check_set=None, accuracy=0.75):
    doc = {"sha256": "a" * 64, "format": "joblib", "model_file": "model.joblib", "feature_names": FEATURE_NAMES,
           "class_names": ["setosa", "versicolor", "virginica"], "versions": {"scikit-learn": "1.9.1"},
           "metrics": {"holdout_accuracy": accuracy}}
    if check_set is not None:
        doc["check_set"] = check_set
    return doc


def write_artifact_dir(directory: Path, doc=None, accuracy=0.75):
    import hashlib

    data = json.dumps(check_doc() if doc is None else doc).encode()
    (directory / CHECK_SET_FILE).write_bytes(data)
    entry = {"file": CHECK_SET_FILE, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
             "rows": len(ROWS)}
    return parse_metadata(metadata_doc(entry, accuracy))


def predicting(classes):
    """A predictor answering fixed classes for the check-set rows (the gate only needs its argmax)."""
    def proba(matrix):
        out = np.zeros((len(matrix), 3))
        out[np.arange(len(matrix)), classes[: len(matrix)]] = 1.0
        return out

    return Predictor(predict_proba=proba, kind="test")


# ---- the contract ----------------------------------------------------------
def test_parse_check_set_accepts_labelled_rows():
    check = parse_check_set(check_doc(), 4)
    assert check.rows[1] == (6.0, 2.9, 4.5, 1.5) and check.labels == (0, 1, 2, 0)


@pytest.mark.parametrize("doc, words", [
    ([1, 2], "must be a JSON object"),
    ({**check_doc(), "feature_names": ["a", "b", "c", "d"]}, "feature_names"),
    (check_doc(rows=[r[:3] for r in ROWS]), "row 0 is not 4 finite numbers"),
    (check_doc(rows=[ROWS[0], ROWS[1], ROWS[2], [1, 2, 3, float("nan")]]), "row 3 is not 4 finite numbers"),
    (check_doc(rows=[ROWS[0], ROWS[1], ROWS[2], [1, 2, 3, True]]), "row 3"),
    (check_doc(labels=[0, 1, 2]), "4 rows and 3 labels"),
    (check_doc(labels=[0, 1, 3, 0]), "label 2 is not a class index"),
    (check_doc(labels=[0, 1, "2", 0]), "label 2"),
    ({"feature_names": FEATURE_NAMES, "rows": "x", "labels": []}, "must be lists"),
])
def test_parse_check_set_names_what_is_wrong(doc, words):
    with pytest.raises(CheckSetError) as err:
        parse_check_set(doc, 4)
    assert words in str(err.value)


@pytest.mark.parametrize("entry, words", [
    ("holdout.json", "must be an object"),
    ({"file": "../x.json", "sha256": "a" * 64, "size_bytes": 10, "rows": 4}, "check_set.file"),
    ({"file": CHECK_SET_FILE, "sha256": "xyz", "size_bytes": 10, "rows": 4}, "check_set.sha256"),
    ({"file": CHECK_SET_FILE, "sha256": "a" * 64, "size_bytes": 0, "rows": 4}, "check_set.size_bytes"),
    ({"file": CHECK_SET_FILE, "sha256": "a" * 64, "size_bytes": 10, "rows": 10**6}, "check_set.rows"),
])
def test_a_malformed_check_set_entry_is_a_check_set_error(entry, words):
    with pytest.raises(CheckSetError) as err:
        parse_metadata(metadata_doc(entry))
    assert words in str(err.value)


def test_claims_and_files():
    meta = parse_metadata(metadata_doc())
    assert meta.check_set is None and artifact_files(meta) == ("model.joblib",)
    assert claimed_accuracy(meta) == 0.75
    assert claimed_accuracy(parse_metadata({**metadata_doc(), "metrics": {"holdout_accuracy": "high"}})) is None
    with_set = parse_metadata(metadata_doc({"file": CHECK_SET_FILE, "sha256": "b" * 64, "size_bytes": 9, "rows": 4}))
    assert artifact_files(with_set) == ("model.joblib", CHECK_SET_FILE)


@pytest.mark.parametrize("raw, value", [("", None), ("  ", None), ("0", 0.0), ("0.95", 0.95), ("1", 1.0)])
def test_min_accuracy_values(raw, value):
    assert parse_min_accuracy(raw) == value


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "high", "nan"])
def test_min_accuracy_out_of_range_is_refused_with_its_value(raw):
    with pytest.raises(ContractError) as err:
        parse_min_accuracy(raw)
    assert repr(raw) in str(err.value)
    with pytest.raises(ModelLoadError):
        min_accuracy_from_env({ENV_MIN_ACCURACY: raw})


# ---- spec.model.minAccuracy -> the pod ---------------------------------------
def test_min_accuracy_in_the_spec_reaches_the_pod_only_when_set():
    owner = Owner("iris", "ml", "u1")
    plain = parse_spec({"model": {"uri": "s3://b/iris/"}})
    gated = parse_spec({"model": {"uri": "s3://b/iris/", "minAccuracy": 0.9}})
    assert plain.min_accuracy is None and gated.min_accuracy == 0.9

    def env(spec):
        return {e["name"]: e["value"] for e in build_deployment(owner, spec, "img", "a" * 64)
                ["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert ENV_MIN_ACCURACY not in env(plain)
    assert parse_min_accuracy(env(gated)[ENV_MIN_ACCURACY]) == 0.9


@pytest.mark.parametrize("value", [1.5, -0.1, "0.9", True])
def test_min_accuracy_outside_0_1_is_spec_invalid(value):
    with pytest.raises(SpecError) as err:
        parse_spec({"model": {"uri": "s3://b/iris/", "minAccuracy": value}})
    assert "spec.model.minAccuracy" in str(err.value)


# ---- the gate ------------------------------------------------------------------
def test_an_accurate_honest_model_passes(tmp_path):
    meta = write_artifact_dir(tmp_path, accuracy=0.75)
    report = gate(predicting([0, 1, 2, 2]), tmp_path, meta, 0.7)
    assert (report.accuracy, report.rows, report.claimed) == (0.75, 4, 0.75)


def test_below_the_threshold_names_both_numbers(tmp_path):
    meta = write_artifact_dir(tmp_path, accuracy=0.5)
    with pytest.raises(ModelLoadError) as err:
        gate(predicting([0, 1, 1, 1]), tmp_path, meta, 0.9)
    assert err.value.kind == QUALITY_GATE_FAILED
    assert "held-out accuracy 0.500 on 4 rows is below minAccuracy 0.900; model.json claims 0.500" in str(err.value)


def test_an_overstated_claim_is_refused_even_without_a_threshold(tmp_path):
    meta = write_artifact_dir(tmp_path, accuracy=1.0)
    with pytest.raises(ModelLoadError) as err:
        gate(predicting([0, 1, 2, 2]), tmp_path, meta, None)
    assert err.value.kind == QUALITY_GATE_FAILED
    assert "0.750 on 4 rows disagrees with model.json's holdout_accuracy 1.000" in str(err.value)


def test_without_a_check_set_only_a_threshold_is_a_problem(tmp_path):
    meta = parse_metadata(metadata_doc())
    assert gate(predicting([0]), tmp_path, meta, None) is None
    with pytest.raises(ModelLoadError) as err:
        gate(predicting([0]), tmp_path, meta, 0.9)
    assert err.value.kind == CHECK_SET_MISSING


def test_a_changed_or_missing_check_set_file_is_refused(tmp_path):
    meta = write_artifact_dir(tmp_path)
    (tmp_path / CHECK_SET_FILE).write_text(json.dumps(check_doc(labels=[0, 0, 0, 0])))
    with pytest.raises(ModelLoadError) as err:
        gate(predicting([0, 0, 0, 0]), tmp_path, meta, None)
    assert err.value.kind == CHECK_SET_INVALID and "sha256 mismatch" in str(err.value)
    (tmp_path / CHECK_SET_FILE).unlink()
    with pytest.raises(ModelLoadError) as err:
        gate(predicting([0, 0, 0, 0]), tmp_path, meta, None)
    assert err.value.kind == CHECK_SET_MISSING


# ---- the trainer writes what the gate reads ------------------------------------
def test_the_trainer_writes_its_held_out_rows_and_they_score_as_claimed(tmp_path):
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train
    from irisop_serving.predictor import build_predictor
    from irisop_serving.quality import read_check_set

    result = train(TrainParams(seed=42))
    meta = parse_metadata(write_artifact(tmp_path, result, "joblib"))
    check = read_check_set(tmp_path, meta)
    assert np.array_equal(np.array(check.rows), result.holdout_rows)
    assert check.labels == tuple(result.holdout_labels)
    report = gate(build_predictor(result.estimator), tmp_path, meta, 0.9)
    assert report.accuracy == pytest.approx(result.holdout_accuracy)


def test_the_model_image_layer_carries_the_check_set(tmp_path):
    import gzip
    import io
    import tarfile

    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train
    from irisop_operator.images.layer import MODEL_DIR_IN_IMAGE, build_model_layer

    meta = parse_metadata(write_artifact(tmp_path, train(TrainParams(seed=42)), "joblib"))
    layer = build_model_layer(tmp_path, [*artifact_files(meta), "model.json"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        held_out = tar.extractfile(f"{MODEL_DIR_IN_IMAGE}/{CHECK_SET_FILE}").read()
    assert held_out == (tmp_path / CHECK_SET_FILE).read_bytes()
