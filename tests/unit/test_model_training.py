"""The trainer: reproducible bytes, complete metadata, the artifact directory."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pytest

from irisop_model.artifact import CARD_FILE, PLOT_FILE, build_metadata, estimator_name, write_artifact
from irisop_model.serialize import FormatError, check_format, dump_bytes, normalise_skops
from irisop_model.training import TrainParams, train
from irisop_serving.contract import CLASSES, FEATURES, MODEL_FILES, parse_metadata, sha256_file
from tests.fixtures.serving import FIXED_TIME


@pytest.mark.parametrize("fmt", sorted(MODEL_FILES))
def test_training_twice_gives_byte_identical_model_files(tmp_path: Path, fmt: str) -> None:
    first = write_artifact(tmp_path / "a", train(TrainParams(seed=7)), fmt, created_at=FIXED_TIME)
    # A different creation time must not reach the model file.
    second = write_artifact(tmp_path / "b", train(TrainParams(seed=7)), fmt, created_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
    name = MODEL_FILES[fmt]
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first["sha256"] == second["sha256"] == sha256_file(str(tmp_path / "a" / name))
    assert first["created_at"] != second["created_at"]


def test_a_different_seed_gives_a_different_model() -> None:
    a = dump_bytes(train(TrainParams(seed=1)).estimator, "joblib")
    b = dump_bytes(train(TrainParams(seed=2)).estimator, "joblib")
    assert hashlib.sha256(a).digest() != hashlib.sha256(b).digest()


def test_skops_archive_has_no_timestamps_or_id_names(trained) -> None:
    data = dump_bytes(trained.estimator, "skops")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        schema = json.loads(zf.read("schema.json"))
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert all(name.startswith("array-") for name in (i.filename for i in infos) if name != "schema.json")
    ids = [n for n in _walk_ids(schema)]
    assert ids and max(ids) <= len(ids)  # renumbered 1..n, not id() values
    assert normalise_skops(data) == data  # idempotent


def _walk_ids(node):
    if isinstance(node, dict):
        if isinstance(node.get("__id__"), int):
            yield node["__id__"]
        for value in node.values():
            yield from _walk_ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_ids(item)


def test_skops_file_loads_with_no_extra_trusted_types(trained) -> None:
    import skops.io as sio

    data = dump_bytes(trained.estimator, "skops")
    assert sio.get_untrusted_types(data=data) == []
    loaded = sio.loads(data, trusted=[])
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]])
    np.testing.assert_array_equal(loaded.predict_proba(rows), trained.estimator.predict_proba(rows))


def test_joblib_file_round_trips(trained) -> None:
    loaded = joblib.load(io.BytesIO(dump_bytes(trained.estimator, "joblib")))
    np.testing.assert_array_equal(loaded.coef_, trained.estimator.coef_)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(FormatError, match="unknown format 'pickle'"):
        check_format("pickle")


def test_model_predicts_the_reference_rows(trained) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]])
    assert [CLASSES[i] for i in trained.estimator.predict(rows)] == list(CLASSES)
    assert trained.estimator.n_features_in_ == len(FEATURES)
    assert not hasattr(trained.estimator, "feature_names_in_")


def test_metrics_are_plausible(trained) -> None:
    metrics = trained.metrics()
    assert 0.9 <= metrics["holdout_accuracy"] <= 1.0
    assert len(metrics["cv_scores"]) == trained.params.cv_folds
    assert metrics["cv_mean"] == pytest.approx(np.mean(metrics["cv_scores"]), abs=1e-6)
    assert trained.confusion.shape == (3, 3)
    assert trained.confusion.sum() == 30  # 20% of 150


@pytest.mark.parametrize("fmt", sorted(MODEL_FILES))
def test_metadata_is_accepted_by_the_contract(trained, fmt: str) -> None:
    data = dump_bytes(trained.estimator, fmt)
    meta = build_metadata(trained, fmt, data, FIXED_TIME)
    parsed = parse_metadata(meta)
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.model_file == MODEL_FILES[fmt]
    assert meta["size_bytes"] == len(data)
    assert meta["created_at"] == "2026-01-02T03:04:05Z"
    assert meta["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert meta["params"]["seed"] == 42
    assert set(meta["metrics"]) == {"holdout_accuracy", "cv_scores", "cv_mean"}
    assert {"scikit-learn", "joblib", "python"} <= set(meta["versions"])
    assert ("skops" in meta["versions"]) == (fmt == "skops")
    assert meta["schema_version"] == 1


def test_artifact_directory_contents(tmp_path: Path, trained) -> None:
    meta = write_artifact(tmp_path, trained, "joblib", created_at=FIXED_TIME)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.joblib", "model.json", "holdout.json", PLOT_FILE, CARD_FILE])
    assert json.loads((tmp_path / "model.json").read_text()) == meta
    assert (tmp_path / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (tmp_path / CARD_FILE).read_text()
    assert meta["sha256"] in card and "Hold-out accuracy" in card


def test_switching_format_removes_the_other_model_file(tmp_path: Path, trained) -> None:
    write_artifact(tmp_path, trained, "joblib", created_at=FIXED_TIME)
    write_artifact(tmp_path, trained, "skops", created_at=FIXED_TIME)
    assert not (tmp_path / "model.joblib").exists()
    assert (tmp_path / "model.skops").exists()


def test_estimator_name_is_the_public_path(trained) -> None:
    assert estimator_name(trained.estimator) == "sklearn.linear_model.LogisticRegression"
