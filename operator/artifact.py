"""S3 → verified local artifact, without ever loading the model.

The operator holds cluster and AWS credentials, and a joblib file can run
arbitrary code when unpickled, so this module only moves and hashes bytes:
it reads ``model.json`` (validated with the shared contract), refuses a model
file larger than the limit *before* downloading it (``head_object``), streams
the file to disk while hashing it, and compares the hash with both the
``spec.model.sha256`` pin and ``model.json``. Loading the model happens in the
serving container, behind its readiness gate.

Every failure is an ``ArtifactError`` whose ``reason`` goes straight into the
``ArtifactReady`` condition; ``transient`` tells the handler whether to retry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import boto3
import botocore.config
import botocore.exceptions

from irisop_serving.contract import (
    CHECK_SET_INVALID,
    CHECK_SET_MISSING,
    MAX_CHECK_SET_BYTES,
    METADATA_FILE,
    ArtifactMetadata,
    CheckSetError,
    CheckSetRef,
    ContractError,
    S3Location,
    parse_check_set,
    parse_metadata,
    sha256_file,
)
from irisop_serving.contract import parse_s3_uri as _parse_s3_uri

from .conditions import ACCESS_DENIED, CHECKSUM_MISMATCH, FORMAT_MISMATCH, INVALID_METADATA
from .conditions import ARTIFACT_NOT_FOUND as NOT_FOUND
from .conditions import INVALID_URI, S3_UNAVAILABLE, TOO_LARGE
from .pipeline import CREDENTIAL_KEYS, ArtifactError, ModelSource, VerifiedArtifact, static_credentials
from .settings import Settings

# model.json is a few hundred bytes; anything bigger is not our metadata.
MAX_METADATA_BYTES = 64 * 1024
_CHUNK = 1 << 20

# S3 error codes that mean "the object or bucket is not there".
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound"}
# Codes that mean "these credentials may not read this": the user must fix IAM or the Secret.
_DENIED_CODES = {
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AccountProblem",
}
# Codes worth a retry: throttling and server-side trouble.
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "503", "500", "502", "504",
}


def parse_s3_uri(uri: str) -> S3Location:
    """The artifact directory an s3:// URI names (one parser: irisop_serving.contract)."""
    try:
        return _parse_s3_uri(uri)
    except ContractError as exc:
        raise ArtifactError(INVALID_URI, str(exc)) from exc


_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=32,  # one per operator worker thread
)


def s3_client(credentials: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client on the standard chain, or on static keys from a Secret.

    ``AWS_ENDPOINT_URL`` (S3-compatible stores, moto) is honoured by boto3 itself.
    Few retries with short timeouts: the reconcile loop is the outer retry.
    """
    if credentials:
        key_id, secret, token = (static_credentials(credentials, "the credentials Secret").get(k)
                                 for k in CREDENTIAL_KEYS)
        session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                        aws_session_token=token or None)
        return session.client("s3", config=_CLIENT_CONFIG)
    return _default_client()


_client_lock = threading.Lock()
_clients: dict[tuple[str, ...], Any] = {}
# The environment that decides which endpoint/region/keys a default-chain client
# uses: a changed value (tests, a re-pointed S3-compatible store) gets a new client.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
               "AWS_ACCESS_KEY_ID", "AWS_PROFILE")


def _default_client() -> Any:
    # One client per process (per environment): boto3 clients are thread-safe
    # once built, and building one costs ~6 MB and tens of milliseconds. The
    # lock matters: 32 worker threads asking at once would otherwise each build
    # one (measured: RSS 57 -> 251 MiB for 50 concurrent fetches without it).
    key = tuple(os.environ.get(name, "") for name in _CLIENT_ENV)
    with _client_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = boto3.session.Session().client("s3", config=_CLIENT_CONFIG)
        return client


def classify_error(exc: Exception, what: str) -> ArtifactError:
    """Map a botocore failure to a reason; the caller raises it ``from exc``."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NOT_FOUND_CODES or status == 404:
            return ArtifactError(NOT_FOUND, f"{what} not found ({code})")
        if code in _DENIED_CODES or status == 403:
            return ArtifactError(ACCESS_DENIED, f"access to {what} denied ({code})")
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return ArtifactError(S3_UNAVAILABLE, f"S3 error reading {what} ({code})", transient=True)
        return ArtifactError(ACCESS_DENIED if status == 401 else NOT_FOUND,
                             f"S3 refused {what}: {code} {err.get('Message', '')}".strip())
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ArtifactError(ACCESS_DENIED, f"no AWS credentials to read {what}")
    # Connection refused, timeouts, truncated bodies: S3 (or the network) is having a bad moment.
    return ArtifactError(S3_UNAVAILABLE, f"S3 unreachable reading {what}: {exc}", transient=True)


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _read_metadata(client: Any, loc: S3Location) -> tuple[bytes, ArtifactMetadata]:
    key = loc.key(METADATA_FILE)
    what = f"s3://{loc.bucket}/{key}"
    try:
        obj = client.get_object(Bucket=loc.bucket, Key=key)
        if obj["ContentLength"] > MAX_METADATA_BYTES:
            obj["Body"].close()
            raise ArtifactError(TOO_LARGE, f"{what} is {obj['ContentLength']} bytes; metadata is at most {MAX_METADATA_BYTES}")
        raw = obj["Body"].read()
    except _BOTO_ERRORS as exc:
        raise classify_error(exc, what) from exc
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(INVALID_METADATA, f"{what} is not valid JSON: {exc}") from exc
    try:
        return raw, parse_metadata(doc)
    except CheckSetError as exc:
        raise ArtifactError(CHECK_SET_INVALID, str(exc)) from exc
    except ContractError as exc:
        raise ArtifactError(INVALID_METADATA, str(exc)) from exc


def _check_claims(source: ModelSource, meta: ArtifactMetadata) -> None:
    """The cheap checks that need no download: format and the sha pin."""
    if source.format != meta.format:
        raise ArtifactError(FORMAT_MISMATCH, f"spec.model.format is {source.format!r} but model.json says {meta.format!r}")
    if source.sha256 and source.sha256.lower() != meta.sha256:
        raise ArtifactError(
            CHECKSUM_MISMATCH,
            f"spec.model.sha256 pins {source.sha256[:12]} but model.json describes {meta.sha256[:12]}",
        )


def _head(client: Any, loc: S3Location, name: str, limit: int, claimed_size: int | None) -> dict[str, Any]:
    """Size up one file before downloading it: over the limit, or not the size model.json says, is refused."""
    key = loc.key(name)
    what = f"s3://{loc.bucket}/{key}"
    try:
        head = client.head_object(Bucket=loc.bucket, Key=key)
    except _BOTO_ERRORS as exc:
        raise classify_error(exc, what) from exc
    size = int(head["ContentLength"])
    if size > limit:
        raise ArtifactError(TOO_LARGE, f"{what} is {size} bytes, over the {limit}-byte limit")
    if claimed_size is not None and claimed_size != size:
        raise ArtifactError(CHECKSUM_MISMATCH, f"{what} is {size} bytes but model.json says {claimed_size}")
    return head


def _head_model(client: Any, loc: S3Location, meta: ArtifactMetadata, limit: int) -> dict[str, Any]:
    return _head(client, loc, meta.model_file, limit, meta.raw.get("size_bytes"))


def _fetch_check_set(client: Any, loc: S3Location, ref: CheckSetRef, target: Path) -> None:
    """The held-out rows model.json names: downloaded, hash-verified and shape-checked (JSON, never pickle)."""
    what = f"s3://{loc.bucket}/{loc.key(ref.file)}"
    try:
        head = _head(client, loc, ref.file, MAX_CHECK_SET_BYTES, ref.size_bytes)
    except ArtifactError as exc:
        if exc.reason == NOT_FOUND:
            raise ArtifactError(CHECK_SET_MISSING, f"model.json names a check set but {what} is not there") from exc
        raise
    _cached_or_download(client, loc, ref.file, ref.sha256, head, target)
    try:
        parse_check_set(json.loads((target / ref.file).read_bytes()), ref.rows)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(CHECK_SET_INVALID, f"{what} is not valid JSON: {exc}") from exc
    except CheckSetError as exc:
        raise ArtifactError(CHECK_SET_INVALID, f"{what}: {exc}") from exc


def _download(client: Any, loc: S3Location, name: str, head: Mapping[str, Any], directory: Path,
              limit: int) -> tuple[Path, str]:
    """Stream the exact version we sized up into a temporary file of ``directory``.

    Returns the temporary path and its sha256; the caller moves it into place
    only once the hash matches, so a bad download never replaces good bytes.
    ``limit`` is the size head_object announced: more bytes than that means the
    object is not the one we checked.
    """
    key = loc.key(name)
    what = f"s3://{loc.bucket}/{key}"
    kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": key}
    # Pin the version (or ETag) we checked with head_object, so a concurrent
    # upload cannot swap in a different, unchecked object between the two calls.
    if head.get("VersionId") and head["VersionId"] != "null":
        kwargs["VersionId"] = head["VersionId"]
    elif head.get("ETag"):
        kwargs["IfMatch"] = head["ETag"]
    digest = hashlib.sha256()
    written = 0
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                body = client.get_object(**kwargs)["Body"]
                for block in body.iter_chunks(_CHUNK):
                    written += len(block)
                    if written > limit:  # the object changed size under us
                        raise ArtifactError(CHECKSUM_MISMATCH, f"{what} is longer than the {limit} bytes S3 announced")
                    digest.update(block)
                    out.write(block)
            except _BOTO_ERRORS as exc:
                raise classify_error(exc, what) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


@dataclass(frozen=True)
class ObjectIdentity:
    """Which S3 object some cached bytes were verified from.

    The cache is keyed by the sha256 model.json *claims*; these fields say
    whether the object at a URI is the one that was actually hashed. S3 gives
    every version of a key its own VersionId; without versioning, the ETag
    and size stand in (an ETag changes whenever the content does).
    """

    url: str  # s3://bucket/key
    version_id: str | None
    etag: str | None
    size: int

    @classmethod
    def from_head(cls, url: str, head: Mapping[str, Any]) -> "ObjectIdentity":
        version = head.get("VersionId")
        return cls(url=url, version_id=version if version and version != "null" else None,
                   etag=(head.get("ETag") or "").strip('"') or None, size=int(head["ContentLength"]))

    def same_object(self, other: "ObjectIdentity") -> bool:
        if self.url != other.url:
            return False
        if self.version_id and other.version_id:
            return self.version_id == other.version_id
        return bool(self.etag) and self.etag == other.etag and self.size == other.size


# Beside the cached files: the S3 objects they were verified from (one list per sha256 directory).
SOURCES_FILE = ".verified-sources.json"
_sources_lock = threading.Lock()  # read-modify-write of SOURCES_FILE by concurrent reconciles


def _verified_sources(directory: Path) -> list[ObjectIdentity]:
    try:
        doc = json.loads((directory / SOURCES_FILE).read_text(encoding="utf-8"))
        return [ObjectIdentity(url=d["url"], version_id=d.get("version_id"), etag=d.get("etag"), size=int(d["size"]))
                for d in doc]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # an unreadable record only costs a fresh download


def _record_source(directory: Path, identity: ObjectIdentity) -> None:
    with _sources_lock:
        known = [s for s in _verified_sources(directory) if s.url != identity.url]
        known.append(identity)
        _write_atomic(directory / SOURCES_FILE,
                      json.dumps([dataclasses.asdict(s) for s in known], sort_keys=True).encode())


def _cached_or_download(client: Any, loc: S3Location, name: str, sha256: str, head: Mapping[str, Any],
                        directory: Path) -> None:
    """Make ``directory/name`` hold the bytes of the S3 object ``head`` describes, verified against ``sha256``.

    Cached bytes are reused only if they were verified from this very object:
    a different object at another URI whose metadata merely *claims* a known
    sha256 is downloaded and hashed like any other, and fails if it lies.
    """
    url = f"s3://{loc.bucket}/{loc.key(name)}"
    identity = ObjectIdentity.from_head(url, head)
    path = directory / name
    if (path.exists() and any(identity.same_object(known) for known in _verified_sources(directory))
            and sha256_file(str(path)) == sha256):  # re-hashed: scratch space is not trusted blindly
        return
    tmp, actual = _download(client, loc, name, head, directory, identity.size)
    if actual != sha256:
        tmp.unlink(missing_ok=True)  # the cached (genuine) copy, if any, stays as it was
        raise ArtifactError(CHECKSUM_MISMATCH, f"{url} hashes to {actual[:12]} but model.json says {sha256[:12]}")
    os.replace(tmp, path)
    _record_source(directory, identity)


def _write_atomic(path: Path, data: bytes) -> None:
    """Concurrent reconciles of the same model share the directory: never expose a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def artifact_dir(settings: Settings, sha256: str, metadata: bytes | None = None) -> Path:
    """The cache directory: per model sha256, and per model.json for artifacts with a check set.

    The files of an artifact with a check set are only valid together (the
    gate scores the rows against model.json's claim), so two model.json
    documents for one model file must not share a directory.
    """
    name = sha256 if metadata is None else f"{sha256}-{hashlib.sha256(metadata).hexdigest()[:16]}"
    return Path(settings.work_dir) / "artifacts" / name


def fetch_artifact(source: ModelSource, settings: Settings, *, client: Any = None) -> VerifiedArtifact:
    """Download and verify the artifact at ``source.uri``; never load the model.

    The result lives in ``<work_dir>/artifacts/<sha256>/`` (model file,
    check set when model.json names one, model.json). The S3 checks (metadata, size, version) always run; the
    cached model file is reused only when it was verified from the very S3
    object now at the URI (see ``_cached_or_download``).
    """
    loc = parse_s3_uri(source.uri)
    client = client or s3_client(source.credentials)
    raw_meta, meta = _read_metadata(client, loc)
    _check_claims(source, meta)
    head = _head_model(client, loc, meta, settings.max_artifact_bytes)

    target = artifact_dir(settings, meta.sha256, raw_meta if meta.check_set is not None else None)
    target.mkdir(parents=True, exist_ok=True)
    _cached_or_download(client, loc, meta.model_file, meta.sha256, head, target)
    if meta.check_set is not None:
        _fetch_check_set(client, loc, meta.check_set, target)
    _write_atomic(target / METADATA_FILE, raw_meta)
    identity = ObjectIdentity.from_head(f"s3://{loc.bucket}/{loc.key(meta.model_file)}", head)
    return VerifiedArtifact(
        uri=source.uri,
        sha256=meta.sha256,
        metadata=meta,
        local_dir=target,
        version_id=identity.version_id,
        etag=identity.etag,
        metadata_sha256=hashlib.sha256(raw_meta).hexdigest(),
    )
