"""The one interface between the reconcile loop and the artifact/image pipeline.

The handlers only see these types and two functions: ``fetch_artifact`` (S3 →
verified local copy, without ever loading the model) and
``ensure_model_image`` (verified artifact → pushed image, by digest). The
implementations live in ``artifact.py`` and ``images/``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from irisop_serving.contract import ArtifactMetadata

from .conditions import CREDENTIALS_INVALID

# The keys a credentials Secret (spec.model.credentialsSecret) may hold; the first two are required.
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
REQUIRED_CREDENTIAL_KEYS = CREDENTIAL_KEYS[:2]


@dataclass(frozen=True)
class ModelSource:
    """What spec.model asks for."""

    uri: str  # s3://bucket/prefix/ (the artifact directory)
    sha256: str | None = None  # optional pin
    format: str = "joblib"
    # Static AWS keys from a referenced Secret (optional; the default chain is preferred).
    credentials: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def flight_key(self) -> tuple[str, ...]:
        """Which fetches may share one answer: the same request made with the same credentials.

        Other credentials may not be allowed to read what these can, so they
        never share. The keys go in hashed: the key holds no copy of a secret.
        """
        who = hashlib.sha256(json.dumps(sorted((self.credentials or {}).items())).encode()).hexdigest()
        return self.uri, self.sha256 or "", self.format, who


@dataclass(frozen=True)
class VerifiedArtifact:
    uri: str
    sha256: str
    metadata: ArtifactMetadata
    local_dir: Path
    version_id: str | None = None  # S3 version id of the model file, when versioning is on
    etag: str | None = None
    metadata_sha256: str | None = None  # sha256 of the model.json bytes

    @property
    def content_key(self) -> str:
        """What the model image's content is a function of, besides the runtime.

        An artifact with a check set is scored against model.json's claims in
        the pod, so the same model file under another model.json (another
        claim, other held-out rows) is other image content. Older artifacts
        keep the model sha256 alone, so upgrading the operator rebuilds and
        rolls out nothing.
        """
        if self.metadata.check_set is None or not self.metadata_sha256:
            return self.sha256
        return f"{self.sha256}+{self.metadata_sha256}"


@dataclass(frozen=True)
class ImageResult:
    image: str  # repository@sha256:... — what the Deployment runs
    tag: str  # content tag: hash of (runtime image digest, model sha256)
    digest: str
    reused: bool  # True when the tag already existed and nothing was pushed


class PipelineError(Exception):
    """A failure with a machine-readable reason for the status condition.

    ``transient`` says whether retrying can help (network, throttling, registry
    down) or whether the user must change something (sha mismatch, bad metadata).
    """

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient


class ArtifactError(PipelineError):
    """The artifact is missing, unreadable, or not what it claims to be."""


class ImageError(PipelineError):
    """The model image could not be produced or pushed."""


def static_credentials(data: Mapping[str, str], source: str) -> dict[str, str]:
    """The AWS keys of a credentials Secret's data; ArtifactError(CredentialsInvalid) naming what is missing."""
    creds = {k: v for k, v in data.items() if k in CREDENTIAL_KEYS}
    missing = [k for k in REQUIRED_CREDENTIAL_KEYS if not creds.get(k)]
    if missing:
        raise ArtifactError(CREDENTIALS_INVALID, f"{source} needs {' and '.join(REQUIRED_CREDENTIAL_KEYS)} "
                                                 f"(missing {', '.join(missing)})")
    return creds
