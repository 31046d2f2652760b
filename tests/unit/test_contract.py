"""serving/contract.py: the artifact contract shared by trainer, server and operator."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from irisop_serving.contract import (
    CLASSES,
    FEATURES,
    MAX_MODEL_BYTES,
    ContractError,
    parse_metadata,
    sha256_file,
    sklearn_compatible,
)


def valid(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "sha256": "0" * 64,
        "format": "joblib",
        "model_file": "model.joblib",
        "size_bytes": 991,
        "feature_names": list(FEATURES),
        "class_names": list(CLASSES),
        "versions": {"scikit-learn": "1.9.1", "joblib": "1.6.0", "python": "3.11.7"},
    }
    doc.update(changes)
    return doc


def test_valid_metadata_parses() -> None:
    meta = parse_metadata(valid())
    assert meta.sha256 == "0" * 64
    assert meta.format == "joblib" and meta.model_file == "model.joblib"
    assert meta.features == FEATURES and meta.classes == CLASSES
    assert meta.sklearn_version == "1.9.1"
    assert meta.short_sha == "0" * 12


def test_skops_metadata_parses() -> None:
    assert parse_metadata(valid(format="skops", model_file="model.skops")).format == "skops"


def test_size_bytes_is_optional() -> None:
    doc = valid()
    del doc["size_bytes"]
    without = parse_metadata(doc)
    with_size = parse_metadata(valid())
    # Everything the operator and the server rely on is the same without it.
    assert (without.sha256, without.format, without.model_file, without.sklearn_version) == \
        (with_size.sha256, with_size.format, with_size.model_file, with_size.sklearn_version)
    assert "size_bytes" not in without.raw and "size_bytes" in with_size.raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": "ABC"}, "'sha256' must be 64 lowercase hex"),
        ({"sha256": "A" * 64}, "'sha256' must be 64 lowercase hex"),
        ({"sha256": 5}, "field 'sha256' must be str"),
        ({"format": "pickle"}, "unknown format 'pickle'"),
        ({"model_file": "../etc/passwd"}, "model_file must be 'model.joblib'"),
        ({"format": "skops"}, "model_file must be 'model.skops'"),
        ({"feature_names": ["a", "b", "c", "d"]}, "are not the Iris features"),
        ({"feature_names": list(reversed(FEATURES))}, "are not the Iris features"),
        ({"class_names": ["setosa", "versicolor"]}, "are not the Iris classes"),
        ({"versions": {}}, "versions\\['scikit-learn'\\] is missing"),
        ({"versions": "1.9"}, "field 'versions' must be dict"),
        ({"size_bytes": 0}, "size_bytes must be between"),
        ({"size_bytes": MAX_MODEL_BYTES + 1}, "size_bytes must be between"),
        ({"size_bytes": "12"}, "size_bytes must be between"),
    ],
)
def test_invalid_metadata_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_metadata(valid(**changes))


@pytest.mark.parametrize("field", ["sha256", "format", "model_file", "feature_names", "class_names", "versions"])
def test_missing_field(field: str) -> None:
    doc = valid()
    del doc[field]
    with pytest.raises(ContractError, match=f"missing field '{field}'"):
        parse_metadata(doc)


def test_not_an_object() -> None:
    with pytest.raises(ContractError, match="must be a JSON object"):
        parse_metadata([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("trained", "running", "ok"),
    [("1.9.1", "1.9.0", True), ("1.9.1", "1.10.0", False), ("1.8.2", "1.9.1", False), ("2.9.0", "1.9.0", False)],
)
def test_sklearn_compatible(trained: str, running: str, ok: bool) -> None:
    assert sklearn_compatible(trained, running) is ok


def test_sha256_file(tmp_path: Path) -> None:
    data = b"iris" * 100_000
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(str(path), chunk=1000) == hashlib.sha256(data).hexdigest()
