"""Pure parts of the uploader: URI parsing, upload order, the printed spec block.

The network paths (moto_server, unreachable endpoint, missing credentials)
are in tests/integration/test_model_upload_s3.py.
"""
from __future__ import annotations

import pytest
import yaml

from irisop_model.upload import S3Location, UploadError, parse_s3_uri, spec_model_block, upload_order


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://models/iris/v1/", "models", "iris/v1/"),
        ("s3://models/iris/v1", "models", "iris/v1/"),
        ("s3://models", "models", ""),
        ("s3://models/", "models", ""),
    ],
)
def test_parse_s3_uri(uri: str, bucket: str, prefix: str) -> None:
    loc = parse_s3_uri(uri)
    assert (loc.bucket, loc.prefix) == (bucket, prefix)
    assert loc.uri == f"s3://{bucket}/{prefix}"


@pytest.mark.parametrize("uri", ["", "s3://", "s3:///prefix", "https://models/iris/", "models/iris"])
def test_parse_s3_uri_rejects(uri: str) -> None:
    with pytest.raises(UploadError):
        parse_s3_uri(uri)


def test_model_json_is_uploaded_last() -> None:
    order = upload_order(["model.json", "model.joblib", "MODEL_CARD.md", "confusion_matrix.png"])
    assert order[-1] == "model.json"
    assert sorted(order) == sorted(["model.json", "model.joblib", "MODEL_CARD.md", "confusion_matrix.png"])


def test_spec_model_block_is_pasteable_yaml() -> None:
    sha = "ab" * 32
    text = spec_model_block(S3Location("models", "iris/v1/"), sha, "skops")
    assert yaml.safe_load(text) == {"spec": {"model": {"uri": "s3://models/iris/v1/", "sha256": sha, "format": "skops"}}}
    assert text.startswith("spec:\n  model:\n")
