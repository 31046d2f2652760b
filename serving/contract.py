"""The artifact contract shared by the trainer, the serving service and the operator.

An artifact is a directory (or S3 prefix) holding one model file and a
``model.json`` that describes it. Everything that writes or checks an artifact
goes through these names so the three programs can never disagree.

This module is pure Python with no third-party imports: the operator imports it
to check metadata *without* loading the model (it must never unpickle an
artifact), and it ships inside the serving Bento.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

FEATURES: tuple[str, ...] = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CLASSES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
METADATA_FILE = "model.json"
MODEL_FILES: dict[str, str] = {"joblib": "model.joblib", "skops": "model.skops"}
DEFAULT_FORMAT = "joblib"
SCHEMA_VERSION = 1
# An Iris classifier is a few KiB to a few MiB; anything far larger is not what
# the metadata claims and is refused before download.
MAX_MODEL_BYTES = 64 * 1024 * 1024
# A sha256 as model.json, the operator and the pod env spell it: 64 lowercase hex characters.
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ContractError(ValueError):
    """The metadata does not describe an Iris classifier artifact we can serve."""


class CommandError(Exception):
    """An expected failure of an `irisop` sub-command: printed as one line, exit code 1, no traceback.

    Here, at the bottom of the import graph, because every program's
    sub-command raises it (serving, trainer, operator, local stack, AWS
    bootstrap) and none of them may import another program to get it; the
    dispatcher (irisop_operator.cli) catches it.
    """


@dataclass(frozen=True)
class ArtifactMetadata:
    """The fields of model.json that the operator and the server rely on."""

    sha256: str
    format: str
    model_file: str
    sklearn_version: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    raw: Mapping[str, Any]
    check_set: "CheckSetRef | None" = None  # the held-out rows, when the trainer wrote them

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


# ---- The operator <-> serving-pod contract: what the operator writes into the
# model image and the Deployment, and the serving container reads. Defined here
# only; deploy/images/runtime.Containerfile repeats MODEL_DIR and SERVING_PORT
# (a Containerfile cannot import Python) and tests/unit/test_pod_contract.py
# fails when it disagrees.
MODEL_DIR = "/models/current"  # where the model image carries the artifact (model.json + model file)
SERVING_PORT = 3000  # the HTTP port BentoML listens on in the pod
READY_PATH = "/readyz"  # BentoML's readiness route: refuses until the model passed every check
LIVE_PATH = "/livez"  # BentoML's liveness route: answers while the process is up, ready or not
ENV_MODEL_DIR = "IRISOP_MODEL_DIR"  # the artifact directory (MODEL_DIR in a model image)
ENV_EXPECTED_SHA256 = "IRISOP_EXPECTED_SHA256"  # the sha256 the operator verified; any other model is refused
ENV_MAX_BATCH_ROWS = "IRISOP_MAX_BATCH_ROWS"  # spec.serving.maxBatchRows: rows per /predict request
ENV_WORKERS = "IRISOP_WORKERS"  # spec.serving.workers: server worker processes


# ---- Where an artifact lives: an S3 prefix (the trainer uploads to it, the operator reads it).
@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends with "/", never starts with "/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def parse_s3_uri(uri: str) -> S3Location:
    """``s3://bucket/some/prefix/`` -> bucket + prefix, the artifact directory.

    One normalisation for the writer and the reader: the prefix is a directory
    (a trailing "/" added) and leading or doubled slashes at its ends are
    dropped, so ``s3://b//v1`` names the keys ``v1/...`` for both.
    """
    if not uri.startswith("s3://"):
        raise ContractError(f"{uri!r} is not an s3://bucket/prefix/ URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ContractError(f"{uri!r} names no bucket")
    prefix = prefix.strip("/")
    return S3Location(bucket=bucket, prefix=f"{prefix}/" if prefix else "")


def is_sha256(text: str) -> bool:
    return bool(SHA256_HEX.match(text))


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def parse_metadata(doc: Mapping[str, Any]) -> ArtifactMetadata:
    """Validate a model.json document; raise ContractError naming the bad field."""
    if not isinstance(doc, Mapping):
        raise ContractError("model.json must be a JSON object")

    def field(name: str, kind: type) -> Any:
        if name not in doc:
            raise ContractError(f"model.json: missing field {name!r}")
        value = doc[name]
        if not isinstance(value, kind):
            raise ContractError(f"model.json: field {name!r} must be {kind.__name__}")
        return value

    sha = field("sha256", str)
    if not SHA256_HEX.match(sha):
        raise ContractError("model.json: 'sha256' must be 64 lowercase hex characters")
    fmt = field("format", str)
    if fmt not in MODEL_FILES:
        raise ContractError(f"model.json: unknown format {fmt!r} (expected one of {sorted(MODEL_FILES)})")
    model_file = field("model_file", str)
    if model_file != MODEL_FILES[fmt]:
        raise ContractError(f"model.json: model_file must be {MODEL_FILES[fmt]!r} for format {fmt!r}")
    features = tuple(field("feature_names", list))
    if features != FEATURES:
        raise ContractError(f"model.json: feature_names {list(features)} are not the Iris features {list(FEATURES)}")
    classes = tuple(field("class_names", list))
    if classes != CLASSES:
        raise ContractError(f"model.json: class_names {list(classes)} are not the Iris classes {list(CLASSES)}")
    versions = field("versions", dict)
    sklearn_version = versions.get("scikit-learn")
    if not isinstance(sklearn_version, str):
        raise ContractError("model.json: versions['scikit-learn'] is missing")
    size = doc.get("size_bytes")
    if size is not None and (not isinstance(size, int) or not 0 < size <= MAX_MODEL_BYTES):
        raise ContractError(f"model.json: size_bytes must be between 1 and {MAX_MODEL_BYTES}")
    return ArtifactMetadata(
        sha256=sha,
        format=fmt,
        model_file=model_file,
        sklearn_version=sklearn_version,
        features=features,
        classes=classes,
        raw=dict(doc),
        check_set=_check_set_ref(doc.get("check_set")),
    )


def sklearn_compatible(trained_with: str, running: str) -> bool:
    """Pickled scikit-learn estimators are only supported on the same minor release."""
    return trained_with.split(".")[:2] == running.split(".")[:2]


# ---- Why a serving pod is not ready: the serving container -> the operator ----
# The container cannot write to the API (it has no token), and the kubelet does
# not copy HTTP probe bodies into events, so while /readyz refuses it logs one
# line, which the operator reads from the newest pods of a rollout:
#
#   model not ready: <reason>                        transient: time or a restart may help
#   model not ready: <reason> [permanent <Kind>]     permanent: this artifact/pod spec will never serve
#
# <Kind> is a CamelCase condition reason; the operator reports a permanent
# refusal as Degraded=<Kind> at once and a transient one only when the
# rollout's progress deadline passes. Everything about an artifact is
# permanent (a pod's image never changes); only a load that did not get to
# finish (a timeout, a killed child process) is transient.
NOT_READY_MARKER = "model not ready: "
MODEL_REJECTED = "ModelRejected"  # not loadable, not a classifier, wrong sha256/versions/shape, bad settings
QUALITY_GATE_FAILED = "QualityGateFailed"  # held-out accuracy below minAccuracy, or not what model.json claims
CHECK_SET_INVALID = "CheckSetInvalid"  # the held-out rows (the check set, below) are malformed
CHECK_SET_MISSING = "CheckSetMissing"  # minAccuracy asks for a check set the artifact lacks
REFUSAL_KINDS: tuple[str, ...] = (MODEL_REJECTED, QUALITY_GATE_FAILED, CHECK_SET_INVALID, CHECK_SET_MISSING)
_PERMANENT_TAG = re.compile(r"\s*\[permanent (?P<kind>[A-Z][A-Za-z]*)\]\s*$")


@dataclass(frozen=True)
class Refusal:
    """One "model not ready" line, parsed."""

    reason: str  # without the marker and the tag
    kind: str | None  # a REFUSAL_KINDS value when permanent, None when transient

    @property
    def permanent(self) -> bool:
        return self.kind is not None

    def text(self) -> str:
        """What users read: "model not ready: <reason>"."""
        return NOT_READY_MARKER + self.reason


def not_ready_line(reason: str, kind: str | None) -> str:
    """The log line the serving container writes when it refuses readiness."""
    reason = " ".join(reason.split())  # one line, whatever the exception text held
    return NOT_READY_MARKER + reason + (f" [permanent {kind}]" if kind else "")


def parse_not_ready(line: str) -> Refusal | None:
    """The refusal in a log line (log prefixes before the marker are ignored)."""
    at = line.find(NOT_READY_MARKER)
    if at == -1:
        return None
    rest = line[at + len(NOT_READY_MARKER):].rstrip()
    tag = _PERMANENT_TAG.search(rest)
    kind = tag.group("kind") if tag and tag.group("kind") in REFUSAL_KINDS else None
    return Refusal(reason=rest[: tag.start()] if kind else rest, kind=kind)


# ---- The check set: held-out rows the serving container scores before it is ready ----
# The trainer writes the rows it held out, with their labels, into the
# artifact (CHECK_SET_FILE) and describes the file in model.json:
#   "check_set": {"file": "holdout.json", "sha256": "<hex>", "size_bytes": N, "rows": R}
# so model.json's hashes cover it like the model file. The file is plain JSON
# (never pickle): {"feature_names": FEATURES, "rows": [[4 floats], ...], "labels": [class index, ...]}.
# The serving container measures the loaded model's accuracy on it and
# refuses readiness when it is below ENV_MIN_ACCURACY (spec.model.minAccuracy)
# or differs from model.json's metrics.holdout_accuracy by more than
# ACCURACY_TOLERANCE (the same rows, so only a wrong claim or a different model can differ).
CHECK_SET_FILE = "holdout.json"
MAX_CHECK_SET_BYTES = 1024 * 1024
MAX_CHECK_SET_ROWS = 10_000
ACCURACY_TOLERANCE = 0.01
ENV_MIN_ACCURACY = "IRISOP_MIN_ACCURACY"  # set by the operator from spec.model.minAccuracy, when given


class CheckSetError(ContractError):
    """The check set (or its entry in model.json) is not a usable list of labelled Iris rows."""


@dataclass(frozen=True)
class CheckSetRef:
    """model.json's description of the check-set file."""

    file: str
    sha256: str
    size_bytes: int
    rows: int


@dataclass(frozen=True)
class CheckSet:
    rows: tuple[tuple[float, ...], ...]
    labels: tuple[int, ...]


def _check_set_ref(entry: Any) -> CheckSetRef | None:
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise CheckSetError("model.json: check_set must be an object")
    if entry.get("file") != CHECK_SET_FILE:
        raise CheckSetError(f"model.json: check_set.file must be {CHECK_SET_FILE!r}")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not SHA256_HEX.match(sha):
        raise CheckSetError("model.json: check_set.sha256 must be 64 lowercase hex characters")
    size, rows = entry.get("size_bytes"), entry.get("rows")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_CHECK_SET_BYTES:
        raise CheckSetError(f"model.json: check_set.size_bytes must be between 1 and {MAX_CHECK_SET_BYTES}")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 < rows <= MAX_CHECK_SET_ROWS:
        raise CheckSetError(f"model.json: check_set.rows must be between 1 and {MAX_CHECK_SET_ROWS}")
    return CheckSetRef(file=CHECK_SET_FILE, sha256=sha, size_bytes=size, rows=rows)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and value not in (float("inf"), float("-inf"))


def parse_check_set(doc: Any, expected_rows: int) -> CheckSet:
    """Validate a check-set document: R rows of 4 finite numbers, R labels that are class indices."""
    if not isinstance(doc, Mapping):
        raise CheckSetError(f"{CHECK_SET_FILE} must be a JSON object")
    if tuple(doc.get("feature_names") or ()) != FEATURES:
        raise CheckSetError(f"{CHECK_SET_FILE}: feature_names must be {list(FEATURES)}")
    rows, labels = doc.get("rows"), doc.get("labels")
    if not isinstance(rows, list) or not isinstance(labels, list):
        raise CheckSetError(f"{CHECK_SET_FILE}: rows and labels must be lists")
    if len(rows) != expected_rows or len(labels) != expected_rows:
        raise CheckSetError(f"{CHECK_SET_FILE}: has {len(rows)} rows and {len(labels)} labels, "
                            f"model.json says {expected_rows}")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(FEATURES) or not all(_finite_number(v) for v in row):
            raise CheckSetError(f"{CHECK_SET_FILE}: row {i} is not {len(FEATURES)} finite numbers")
    for i, label in enumerate(labels):
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(CLASSES):
            raise CheckSetError(f"{CHECK_SET_FILE}: label {i} is not a class index 0..{len(CLASSES) - 1}")
    return CheckSet(rows=tuple(tuple(float(v) for v in row) for row in rows), labels=tuple(labels))


def claimed_accuracy(meta: ArtifactMetadata) -> float | None:
    """metrics.holdout_accuracy from model.json, if it is a number."""
    value = (meta.raw.get("metrics") or {}).get("holdout_accuracy") if isinstance(meta.raw.get("metrics"), Mapping) \
        else None
    return float(value) if _finite_number(value) else None


def parse_min_accuracy(raw: str) -> float | None:
    """ENV_MIN_ACCURACY's value: empty for "no threshold", else a number from 0 to 1."""
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ContractError(f"{ENV_MIN_ACCURACY}={raw!r} is not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise ContractError(f"{ENV_MIN_ACCURACY}={raw!r} must be between 0 and 1")
    return value


def artifact_files(meta: ArtifactMetadata) -> tuple[str, ...]:
    """The files model.json's hashes cover (model.json itself not included)."""
    return (meta.model_file,) + ((meta.check_set.file,) if meta.check_set else ())
