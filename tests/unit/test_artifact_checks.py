"""Pure parts of artifact fetching: URI parsing, error classification, claim checks."""
from __future__ import annotations

import botocore.exceptions
import pytest

from irisop_operator.artifact import _check_claims, classify_error, parse_s3_uri
from irisop_operator.pipeline import ArtifactError, ModelSource
from irisop_serving.contract import CLASSES, FEATURES, parse_metadata

SHA = "ab" * 32


@pytest.mark.parametrize(
    "uri, bucket, prefix",
    [
        ("s3://b/models/v1/", "b", "models/v1/"),
        ("s3://b/models/v1", "b", "models/v1/"),  # a directory either way
        ("s3://b", "b", ""),
        ("s3://b/", "b", ""),
    ],
)
def test_parse_s3_uri(uri, bucket, prefix):
    loc = parse_s3_uri(uri)
    assert (loc.bucket, loc.prefix) == (bucket, prefix)
    assert loc.key("model.json") == prefix + "model.json"


@pytest.mark.parametrize("uri", ["https://b/x", "b/x", "s3://", "s3:///x"])
def test_parse_s3_uri_rejects(uri):
    with pytest.raises(ArtifactError) as err:
        parse_s3_uri(uri)
    assert err.value.reason == "InvalidURI" and not err.value.transient


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    "code, status, reason, transient",
    [
        ("NoSuchKey", 404, "ArtifactNotFound", False),
        ("NoSuchBucket", 404, "ArtifactNotFound", False),
        ("404", 404, "ArtifactNotFound", False),
        ("AccessDenied", 403, "AccessDenied", False),
        ("InvalidAccessKeyId", 403, "AccessDenied", False),
        ("SlowDown", 503, "S3Unavailable", True),
        ("InternalError", 500, "S3Unavailable", True),
        ("WeirdNew5xx", 502, "S3Unavailable", True),
    ],
)
def test_classify_client_errors(code, status, reason, transient):
    err = classify_error(_client_error(code, status), "s3://b/k")
    assert (err.reason, err.transient) == (reason, transient)


def test_classify_connection_and_credentials():
    conn = classify_error(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), "s3://b/k")
    assert conn.reason == "S3Unavailable" and conn.transient
    creds = classify_error(botocore.exceptions.NoCredentialsError(), "s3://b/k")
    assert creds.reason == "AccessDenied" and not creds.transient


def _meta(fmt: str = "joblib"):
    return parse_metadata({
        "sha256": SHA, "format": fmt, "model_file": {"joblib": "model.joblib", "skops": "model.skops"}[fmt],
        "feature_names": list(FEATURES), "class_names": list(CLASSES), "versions": {"scikit-learn": "1.9.1"},
    })


def test_claims_pass():
    _check_claims(ModelSource(uri="s3://b/p/", sha256=SHA), _meta())
    _check_claims(ModelSource(uri="s3://b/p/", sha256=SHA.upper()), _meta())  # pins are case-insensitive
    _check_claims(ModelSource(uri="s3://b/p/"), _meta())


def test_claims_pin_mismatch():
    with pytest.raises(ArtifactError) as err:
        _check_claims(ModelSource(uri="s3://b/p/", sha256="cd" * 32), _meta())
    assert err.value.reason == "ChecksumMismatch"


def test_claims_format_mismatch():
    with pytest.raises(ArtifactError) as err:
        _check_claims(ModelSource(uri="s3://b/p/", format="joblib"), _meta("skops"))
    assert err.value.reason == "FormatMismatch"
