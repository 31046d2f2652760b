"""Upload an artifact directory to S3 and describe it as an IrisModel spec.model.

boto3 does the credential and endpoint discovery (environment, profiles,
instance roles, ``AWS_ENDPOINT_URL``), so the same command works against AWS
and the local moto server. Every botocore failure is turned into one
UploadError sentence; the CLI prints it without a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from irisop_serving.contract import METADATA_FILE, ContractError, S3Location
from irisop_serving.contract import parse_s3_uri as _parse_s3_uri


class UploadError(RuntimeError):
    """The artifact could not be uploaded; the message is one line for the user."""


def parse_s3_uri(uri: str) -> S3Location:
    """The upload target an s3:// URI names (one parser, shared with the operator: irisop_serving.contract)."""
    try:
        return _parse_s3_uri(uri)
    except ContractError as exc:
        raise UploadError(f"upload target {exc}") from exc


def upload_order(files: Iterable[str]) -> list[str]:
    """model.json goes last: a reader that finds it can rely on the rest being there."""
    names = sorted(set(files))
    if METADATA_FILE in names:
        names.remove(METADATA_FILE)
        names.append(METADATA_FILE)
    return names


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # Few, short retries: an unreachable endpoint should fail in seconds,
    # not after botocore's default back-off.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.session.Session().client("s3", config=config)


def upload_artifact(directory: Path, files: Iterable[str], location: S3Location, client: Any = None) -> list[str]:
    """Upload ``files`` from ``directory``; return the object keys written."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    keys: list[str] = []
    try:
        client = client or s3_client()
        for name in upload_order(files):
            key = location.key(name)
            # put_object, not upload_file: artifacts are small (the contract caps
            # them at 64 MiB) and put_object surfaces the S3 error code
            # (NoSuchBucket, AccessDenied) instead of a wrapped transfer error.
            with open(directory / name, "rb") as body:
                client.put_object(Bucket=location.bucket, Key=key, Body=body)
            keys.append(key)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise UploadError(f"no usable AWS credentials for {location.uri} ({exc})") from exc
    except EndpointConnectionError as exc:
        raise UploadError(f"cannot reach the S3 endpoint for {location.uri}: {exc}") from exc
    except ClientError as exc:
        raise UploadError(_client_error_text(exc, location)) from exc
    except BotoCoreError as exc:
        raise UploadError(f"upload to {location.uri} failed: {exc}") from exc
    except OSError as exc:
        raise UploadError(f"cannot read {exc.filename or directory}: {exc.strerror or exc}") from exc
    return keys


def _client_error_text(exc: Any, location: S3Location) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "Unknown")
    if code in {"NoSuchBucket", "404"}:
        return f"bucket {location.bucket!r} does not exist ({location.uri})"
    if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
        return f"S3 refused the upload to {location.uri}: {code}"
    message = error.get("Message") or str(exc)
    return f"upload to {location.uri} failed: {code}: {message}"


def spec_model_block(location: S3Location, sha256: str, fmt: str) -> str:
    """The YAML a user pastes into an IrisModel."""
    doc = {"spec": {"model": {"uri": location.uri, "sha256": sha256, "format": fmt}}}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
