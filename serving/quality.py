"""The quality gate: score the loaded model on its held-out rows before it may be ready (issue 13.4).

KServe, Seldon and BentoML let any model that loads take traffic. Here the
artifact carries the rows the trainer held out (the check set, see
serving/contract.py), covered by model.json's hashes, and the server
measures the model's accuracy on them after every other start-up check. It
refuses readiness, with a reason that names the numbers, when

- the accuracy is below IRISOP_MIN_ACCURACY (spec.model.minAccuracy), or
- it differs from model.json's ``metrics.holdout_accuracy`` by more than
  ACCURACY_TOLERANCE: the same rows scored by the same model give the same
  number, so a difference means the claim (or the model) is not what it says.

Every refusal here is permanent (the artifact will not change), with its own
kind so the IrisModel's Degraded reason says which: QualityGateFailed,
CheckSetInvalid, CheckSetMissing.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .contract import (
    ACCURACY_TOLERANCE,
    CHECK_SET_INVALID,
    CHECK_SET_MISSING,
    ENV_MIN_ACCURACY,
    MAX_CHECK_SET_BYTES,
    MODEL_REJECTED,
    QUALITY_GATE_FAILED,
    ArtifactMetadata,
    CheckSet,
    CheckSetError,
    ContractError,
    claimed_accuracy,
    parse_check_set,
    parse_min_accuracy,
)
from .errors import ModelLoadError
from .predictor import Predictor


@dataclass(frozen=True)
class QualityReport:
    accuracy: float  # measured on the check set
    rows: int
    claimed: float | None
    min_accuracy: float | None


def min_accuracy_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """IRISOP_MIN_ACCURACY, or None when unset; a malformed value refuses readiness."""
    raw = (os.environ if env is None else env).get(ENV_MIN_ACCURACY, "")
    try:
        return parse_min_accuracy(raw)
    except ContractError as exc:
        raise ModelLoadError(str(exc), kind=MODEL_REJECTED) from exc


def read_check_set(model_dir: Path, meta: ArtifactMetadata) -> CheckSet:
    """The check-set file, hash-checked against model.json, then shape-checked."""
    ref = meta.check_set
    assert ref is not None
    path = model_dir / ref.file
    try:
        size = path.stat().st_size
        if size > MAX_CHECK_SET_BYTES:
            raise ModelLoadError(f"{ref.file} is {size} bytes, over the {MAX_CHECK_SET_BYTES}-byte limit",
                                 kind=CHECK_SET_INVALID)
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model.json names a check set but {ref.file} is not in the artifact",
                             kind=CHECK_SET_MISSING) from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot read {ref.file}: {exc}", kind=CHECK_SET_INVALID) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.sha256:
        raise ModelLoadError(f"sha256 mismatch: {ref.file} is {actual}, model.json says {ref.sha256}",
                             kind=CHECK_SET_INVALID)
    try:
        return parse_check_set(json.loads(data), ref.rows)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{ref.file} is not valid JSON: {exc}", kind=CHECK_SET_INVALID) from exc
    except CheckSetError as exc:
        raise ModelLoadError(str(exc), kind=CHECK_SET_INVALID) from exc


def accuracy(predictor: Predictor, check: CheckSet) -> float:
    proba = predictor.predict_proba(np.array(check.rows, dtype=np.float64))
    return float(np.mean(proba.argmax(axis=1) == np.array(check.labels)))


def gate(predictor: Predictor, model_dir: Path, meta: ArtifactMetadata,
         min_accuracy: float | None) -> QualityReport | None:
    """Raise ModelLoadError unless the model scores as required and as claimed; None without a check set."""
    if meta.check_set is None:
        if min_accuracy is not None:
            raise ModelLoadError(
                f"minAccuracy is {min_accuracy:g} but the artifact has no check set (held-out rows): "
                "train it again with `irisop train` to include one", kind=CHECK_SET_MISSING)
        return None  # an artifact from before check sets: served as before
    check = read_check_set(model_dir, meta)
    measured = accuracy(predictor, check)
    claimed = claimed_accuracy(meta)
    n = len(check.labels)
    if min_accuracy is not None and measured < min_accuracy:
        claim = f"; model.json claims {claimed:.3f}" if claimed is not None else ""
        raise ModelLoadError(f"held-out accuracy {measured:.3f} on {n} rows is below minAccuracy "
                             f"{min_accuracy:.3f}{claim}", kind=QUALITY_GATE_FAILED)
    if claimed is not None and abs(measured - claimed) > ACCURACY_TOLERANCE:
        raise ModelLoadError(f"held-out accuracy {measured:.3f} on {n} rows disagrees with model.json's "
                             f"holdout_accuracy {claimed:.3f} (tolerance {ACCURACY_TOLERANCE})",
                             kind=QUALITY_GATE_FAILED)
    return QualityReport(accuracy=measured, rows=n, claimed=claimed, min_accuracy=min_accuracy)
