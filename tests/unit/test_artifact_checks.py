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


def test_cached_bytes_match_only_the_object_they_were_verified_from():
    from irisop_operator.artifact import ObjectIdentity

    url = "s3://b/iris/v1/model.joblib"
    versioned = ObjectIdentity.from_head(url, {"VersionId": "v1", "ETag": '"e1"', "ContentLength": 10})
    assert versioned == ObjectIdentity(url, "v1", "e1", 10)
    assert versioned.same_object(ObjectIdentity(url, "v1", "e1", 10))
    # A VersionId decides on its own when both sides have one (a re-upload of equal bytes is a new version).
    assert not versioned.same_object(ObjectIdentity(url, "v2", "e1", 10))
    assert not versioned.same_object(ObjectIdentity("s3://b/iris/v2/model.joblib", "v1", "e1", 10))
    plain = ObjectIdentity.from_head(url, {"VersionId": "null", "ETag": '"e1"', "ContentLength": 10})
    assert plain.version_id is None
    assert plain.same_object(ObjectIdentity(url, None, "e1", 10))
    assert not plain.same_object(ObjectIdentity(url, None, "e1", 11))
    assert not plain.same_object(ObjectIdentity(url, None, "e2", 10))
    assert not ObjectIdentity(url, None, None, 10).same_object(ObjectIdentity(url, None, None, 10))
