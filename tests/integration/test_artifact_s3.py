"""fetch_artifact against a real moto_server over HTTP."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from irisop_operator import metrics
from irisop_operator.artifact import fetch_artifact
from irisop_operator.pipeline import ArtifactError, ModelSource
from irisop_operator.reconcile import Pipeline
from irisop_operator.settings import Settings
from tests.fixtures.aws import fake_artifact, upload_dir
from tests.fixtures.cluster import wait_for
from tests.fixtures.holding_proxy import HoldingProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(work_dir=str(tmp_path / "work"))


def _upload(s3: Any, bucket: str, tmp_path: Path, name: str = "v1", **kw: Any) -> tuple[str, dict]:
    meta = fake_artifact(tmp_path / name, **kw)
    return upload_dir(s3, tmp_path / name, bucket, f"models/{name}"), meta


def test_fetch_verifies_and_records_version(s3, bucket, tmp_path, settings):
    uri, meta = _upload(s3, bucket, tmp_path)
    art = fetch_artifact(ModelSource(uri=uri, sha256=meta["sha256"]), settings)
    assert art.sha256 == meta["sha256"]
    assert art.local_dir == Path(settings.work_dir) / "artifacts" / meta["sha256"]
    assert (art.local_dir / "model.joblib").read_bytes() == (tmp_path / "v1" / "model.joblib").read_bytes()
    assert json.loads((art.local_dir / "model.json").read_text())["sha256"] == meta["sha256"]
    head = s3.head_object(Bucket=bucket, Key="models/v1/model.joblib")
    assert art.version_id == head["VersionId"]
    assert art.etag == head["ETag"].strip('"')
    assert art.metadata.classes == ("setosa", "versicolor", "virginica")


def test_second_fetch_reuses_local_copy(s3, bucket, tmp_path, settings):
    uri, meta = _upload(s3, bucket, tmp_path)
    first = fetch_artifact(ModelSource(uri=uri), settings)
    mtime = (first.local_dir / "model.joblib").stat().st_mtime_ns
    second = fetch_artifact(ModelSource(uri=uri), settings)
    assert second == first
    assert (second.local_dir / "model.joblib").stat().st_mtime_ns == mtime


def test_static_credentials_from_secret(s3, bucket, tmp_path, settings, monkeypatch):
    uri, _ = _upload(s3, bucket, tmp_path)
    # Remove the default chain: only the Secret's keys are left.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = {"AWS_ACCESS_KEY_ID": "fromsecret", "AWS_SECRET_ACCESS_KEY": "fromsecret"}
    assert fetch_artifact(ModelSource(uri=uri, credentials=creds), settings).sha256


def test_secret_without_keys_is_credentials_invalid(s3, bucket, tmp_path, settings):
    # The same reason (and check) as the reconciler's for a Secret missing a key.
    uri, _ = _upload(s3, bucket, tmp_path)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri, credentials={"AWS_ACCESS_KEY_ID": "x"}), settings)
    assert err.value.reason == "CredentialsInvalid" and not err.value.transient
    assert "missing AWS_SECRET_ACCESS_KEY" in str(err.value)


def test_pin_mismatch_downloads_nothing(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri, sha256="0" * 64), settings)
    assert err.value.reason == "ChecksumMismatch" and not err.value.transient
    assert not (Path(settings.work_dir) / "artifacts").exists()


def test_corrupted_model_file_is_rejected_and_removed(s3, bucket, tmp_path, settings):
    uri, meta = _upload(s3, bucket, tmp_path)
    s3.put_object(Bucket=bucket, Key="models/v1/model.joblib", Body=b"x" * meta["size_bytes"])
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ChecksumMismatch"
    assert not (Path(settings.work_dir) / "artifacts" / meta["sha256"] / "model.joblib").exists()


def test_size_differs_from_metadata(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path)
    s3.put_object(Bucket=bucket, Key="models/v1/model.joblib", Body=b"short")
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ChecksumMismatch"


def test_too_large_refused_before_download(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path, size=4096)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), replace(settings, max_artifact_bytes=1024))
    assert err.value.reason == "TooLarge"
    assert not list((Path(settings.work_dir) / "artifacts").glob("*/model.joblib"))


def test_missing_model_file(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path)
    s3.delete_object(Bucket=bucket, Key="models/v1/model.joblib")
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ArtifactNotFound" and not err.value.transient


@pytest.mark.parametrize("uri_suffix", ["models/nothing-here/", ""])
def test_missing_metadata_or_bucket(s3, bucket, settings, uri_suffix):
    uri = f"s3://{bucket}/{uri_suffix}" if uri_suffix else "s3://no-such-bucket-irisop/x/"
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ArtifactNotFound"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", json.dumps({"sha256": "a" * 64}).encode()],
    ids=["not-json", "not-object", "missing-fields"],
)
def test_invalid_metadata(s3, bucket, tmp_path, settings, body):
    uri, _ = _upload(s3, bucket, tmp_path)
    s3.put_object(Bucket=bucket, Key="models/v1/model.json", Body=body)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "InvalidMetadata"


def test_metadata_of_another_model_is_invalid(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path, class_names=["cat", "dog", "bird"])
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "InvalidMetadata"
    assert "class_names" in err.value.message


def test_oversized_metadata(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path)
    s3.put_object(Bucket=bucket, Key="models/v1/model.json", Body=b" " * (65 * 1024))
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "TooLarge"


def test_format_mismatch(s3, bucket, tmp_path, settings):
    uri, _ = _upload(s3, bucket, tmp_path)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri, format="skops"), settings)
    assert err.value.reason == "FormatMismatch"


def test_skops_format(s3, bucket, tmp_path, settings):
    uri, meta = _upload(s3, bucket, tmp_path, fmt="skops")
    art = fetch_artifact(ModelSource(uri=uri, format="skops"), settings)
    assert (art.local_dir / "model.skops").exists() and art.sha256 == meta["sha256"]


def test_s3_down_is_transient(aws_env, settings, monkeypatch, dead_port):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead_port}")
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri="s3://b/p/"), settings)
    assert err.value.reason == "S3Unavailable" and err.value.transient


def test_corrupted_copy_at_a_new_prefix_is_not_hidden_by_the_cache(s3, bucket, tmp_path, settings):
    """Issue 13.1: model.json at v2 claims v1's sha256, the file there has a flipped byte."""
    uri, meta = _upload(s3, bucket, tmp_path)
    genuine = fetch_artifact(ModelSource(uri=uri), settings)
    good_bytes = (genuine.local_dir / "model.joblib").read_bytes()

    bad = bytearray(good_bytes)
    bad[len(bad) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key="models/v2/model.joblib", Body=bytes(bad))
    s3.put_object(Bucket=bucket, Key="models/v2/model.json", Body=json.dumps(meta).encode())
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=f"s3://{bucket}/models/v2/"), settings)
    assert err.value.reason == "ChecksumMismatch" and not err.value.transient
    assert "models/v2/model.joblib" in err.value.message
    # The genuine cached copy is untouched and still reused for v1.
    assert (genuine.local_dir / "model.joblib").read_bytes() == good_bytes
    assert fetch_artifact(ModelSource(uri=uri), settings) == genuine


def test_a_new_version_at_the_same_key_is_downloaded_again(s3, bucket, tmp_path, settings):
    uri, meta = _upload(s3, bucket, tmp_path)
    first = fetch_artifact(ModelSource(uri=uri), settings)
    corrupt = bytearray((tmp_path / "v1" / "model.joblib").read_bytes())
    corrupt[0] ^= 0xFF
    s3.put_object(Bucket=bucket, Key="models/v1/model.joblib", Body=bytes(corrupt))  # same size, new VersionId
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ChecksumMismatch"
    assert (first.local_dir / "model.joblib").read_bytes() == (tmp_path / "v1" / "model.joblib").read_bytes()


def test_unversioned_bucket_reuses_by_etag_and_size(s3, tmp_path, settings):
    name = "irisop-unversioned-" + tmp_path.name[-8:].lower().replace("_", "-")
    s3.create_bucket(Bucket=name)
    uri, meta = _upload(s3, name, tmp_path)
    first = fetch_artifact(ModelSource(uri=uri), settings)
    assert first.version_id is None and first.etag
    mtime = (first.local_dir / "model.joblib").stat().st_mtime_ns
    assert fetch_artifact(ModelSource(uri=uri), settings) == first
    assert (first.local_dir / "model.joblib").stat().st_mtime_ns == mtime
    # Same size, other bytes: the ETag differs, so it is downloaded and refused.
    payload = bytearray((tmp_path / "v1" / "model.joblib").read_bytes())
    payload[-1] ^= 0x01
    s3.put_object(Bucket=name, Key="models/v1/model.joblib", Body=bytes(payload))
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == "ChecksumMismatch"


# ------------------------------------------------------------------ check sets (issue 13.4)
@pytest.fixture(scope="module")
def trained_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.quality import train_good

    directory = tmp_path_factory.mktemp("trained") / "v1"
    train_good(directory)
    return directory


def _upload_trained(s3, bucket, trained_artifact, tmp_path, name, change=None):
    import shutil

    directory = tmp_path / name
    shutil.copytree(trained_artifact, directory)
    if change:
        change(directory)
    return upload_dir(s3, directory, bucket, f"models/{name}"), json.loads((directory / "model.json").read_text())


def test_the_check_set_is_fetched_verified_and_kept_with_its_model_json(s3, bucket, tmp_path, settings,
                                                                         trained_artifact):
    uri, meta = _upload_trained(s3, bucket, trained_artifact, tmp_path, "good")
    art = fetch_artifact(ModelSource(uri=uri), settings)
    assert art.metadata.check_set.rows == 30
    assert (art.local_dir / "holdout.json").read_bytes() == (trained_artifact / "holdout.json").read_bytes()
    assert art.local_dir.name.startswith(meta["sha256"] + "-")
    assert art.content_key == f"{meta['sha256']}+{art.metadata_sha256}"

    # The same model file under a model.json claiming more: other files, other directory, other image.
    from tests.fixtures.quality import claim_accuracy

    uri2, _ = _upload_trained(s3, bucket, trained_artifact, tmp_path, "overstated", lambda d: claim_accuracy(d, 1.0))
    other = fetch_artifact(ModelSource(uri=uri2), settings)
    assert other.sha256 == art.sha256
    assert other.local_dir != art.local_dir and other.content_key != art.content_key
    assert json.loads((art.local_dir / "model.json").read_text())["metrics"]["holdout_accuracy"] != 1.0


def _shape(change_doc):
    from tests.fixtures.quality import replace_check_set

    def change(directory):
        doc = json.loads((directory / "holdout.json").read_text())
        replace_check_set(directory, change_doc(doc))

    return change


@pytest.mark.parametrize(
    "name, change, reason, words",
    [
        ("missing-file", lambda d: (d / "holdout.json").unlink(), "CheckSetMissing", "holdout.json is not there"),
        ("three-features", _shape(lambda doc: {**doc, "rows": [r[:3] for r in doc["rows"]]}), "CheckSetInvalid",
         "row 0 is not 4 finite numbers"),
        ("label-out-of-range", _shape(lambda doc: {**doc, "labels": [7] + doc["labels"][1:]}), "CheckSetInvalid",
         "label 0 is not a class index"),
        ("not-json", lambda d: _raw_check_set(d, b"\x80 not json"), "CheckSetInvalid", "not valid JSON"),
        ("bad-entry", lambda d: _edit_entry(d, rows=0), "CheckSetInvalid", "check_set.rows must be between"),
        ("tampered", lambda d: (d / "holdout.json").write_bytes((d / "holdout.json").read_bytes().replace(b"5.", b"6.", 1)),
         "ChecksumMismatch", "holdout.json hashes to"),
    ],
)
def test_bad_check_sets_get_a_clear_reason(s3, bucket, tmp_path, settings, trained_artifact, name, change, reason,
                                           words):
    uri, _ = _upload_trained(s3, bucket, trained_artifact, tmp_path, name, change)
    with pytest.raises(ArtifactError) as err:
        fetch_artifact(ModelSource(uri=uri), settings)
    assert err.value.reason == reason and not err.value.transient, err.value.message
    assert words in err.value.message


def _raw_check_set(directory: Path, data: bytes) -> None:
    import hashlib

    (directory / "holdout.json").write_bytes(data)
    _edit_entry(directory, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _edit_entry(directory: Path, **changes: Any) -> None:
    meta = json.loads((directory / "model.json").read_text())
    meta["check_set"].update(changes)
    (directory / "model.json").write_text(json.dumps(meta))


def test_concurrent_reconciles_of_one_source_share_one_set_of_s3_reads(
        s3, bucket, tmp_path, settings, aws_env, monkeypatch):
    """Two fetches of one source, overlapping for certain: the second joins the first's S3 reads."""
    uri, meta = _upload(s3, bucket, tmp_path)
    # model.json is the first read of a fetch: holding it keeps the first fetch in flight.
    proxy = HoldingProxy(aws_env["AWS_ENDPOINT_URL"], hold=lambda method, path: path.endswith("/model.json"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    pipeline, source = Pipeline(), ModelSource(uri=uri, sha256=meta["sha256"])
    joined = metrics.ARTIFACT_READS_JOINED._value.get()
    pool = ThreadPoolExecutor(2)
    try:
        first = pool.submit(pipeline.fetch_artifact, source, settings)
        wait_for(lambda: proxy.held == 1, what="the first fetch to reach S3")
        second = pool.submit(pipeline.fetch_artifact, source, settings)
        wait_for(lambda: metrics.ARTIFACT_READS_JOINED._value.get() == joined + 1, what="the second fetch to join")
        proxy.release()
        assert first.result(timeout=30) == second.result(timeout=30)
        assert proxy.held == 1 and proxy.count("GET", "/model.json") == 1
        assert proxy.count("GET", "/model.joblib") == 1  # one download, not two

        # Once the shared call returned nothing is kept: the next fetch reads model.json again.
        pipeline.fetch_artifact(source, settings)
        assert proxy.count("GET", "/model.json") == 2
    finally:
        proxy.close()  # releases anything still held, so a failing run ends at once
        pool.shutdown()
