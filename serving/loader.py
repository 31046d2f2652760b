"""Load an artifact directory and prove it is servable, or say exactly why not.

Checks run cheapest first and before any unpickling: metadata against the
contract, the file's sha256 against model.json and against the sha256 the
operator expects, the scikit-learn minor version, and only then the load
(joblib, or skops with an explicit list of trusted types), a shape check and
a sanity prediction; finally the quality gate scores the model on the
artifact's held-out rows (quality.py).

The load itself runs in a child process (extract.py) that returns the weights
of a recognised estimator; the server then never imports scikit-learn. Any
other estimator is loaded in-process and served through its own predict_proba.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contract import (
    CLASSES,
    FEATURES,
    MAX_MODEL_BYTES,
    METADATA_FILE,
    ArtifactMetadata,
    ContractError,
    parse_metadata,
    sha256_file,
    sklearn_compatible,
)
from .errors import ModelLoadError
from .predictor import LinearWeights, Predictor, agrees, build_predictor, check_set, softmax_predictor
from .quality import QualityReport, gate

# skops refuses to instantiate any type not on its built-in safe list unless it
# is named here. The trainer emits a LogisticRegression, which is on that list,
# so nothing extra is trusted; a file needing more is refused with the list.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = ()

EXTRACT_TIMEOUT = 120.0  # seconds; a cold scikit-learn import on a busy node takes a few

REFERENCE_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]])


@dataclass(frozen=True)
class LoadedModel:
    metadata: ArtifactMetadata
    sha256: str
    estimator: Any | None  # None when only the weights were loaded (fast path)
    predictor: Predictor
    quality: QualityReport | None = None  # the check-set score, when the artifact has a check set


def read_metadata(model_dir: Path) -> ArtifactMetadata:
    path = model_dir / METADATA_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return parse_metadata(doc)
    except ContractError as exc:
        raise ModelLoadError(str(exc)) from exc


def verify_file(model_dir: Path, meta: ArtifactMetadata, expected_sha256: str | None) -> Path:
    path = model_dir / meta.model_file
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelLoadError(f"{path} is {size} bytes, over the {MAX_MODEL_BYTES}-byte limit")
        actual = sha256_file(str(path))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model file {path} not found") from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if actual != meta.sha256:
        raise ModelLoadError(f"sha256 mismatch: {meta.model_file} is {actual}, model.json says {meta.sha256}")
    if expected_sha256 is not None and actual != expected_sha256:
        raise ModelLoadError(f"sha256 mismatch: {meta.model_file} is {actual}, IRISOP_EXPECTED_SHA256 is {expected_sha256}")
    return path


def sklearn_version() -> str:
    # From the installed metadata: importing sklearn just to read its version
    # would cost ~100 MiB of resident memory (see extract.py).
    try:
        return version("scikit-learn")
    except PackageNotFoundError as exc:
        raise ModelLoadError("scikit-learn is not installed in this server") from exc


def check_sklearn_version(meta: ArtifactMetadata) -> None:
    running = sklearn_version()
    if not sklearn_compatible(meta.sklearn_version, running):
        raise ModelLoadError(
            f"model trained with scikit-learn {meta.sklearn_version}, this server runs {running} "
            "(pickled models are only supported on the same minor release)"
        )


def load_estimator(path: Path, fmt: str) -> Any:
    if fmt == "skops":
        import skops.io as sio

        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED_TYPES]
        if untrusted:
            raise ModelLoadError(f"{path.name} needs types this server does not trust: {', '.join(untrusted)}")
        try:
            return sio.load(path, trusted=list(SKOPS_TRUSTED_TYPES))
        except Exception as exc:  # skops raises many unrelated types on corrupt input
            raise ModelLoadError(f"cannot load {path.name}: {type(exc).__name__}: {exc}") from exc
    import joblib

    try:
        with warnings.catch_warnings():
            # The version check above already decided; do not log twice.
            warnings.simplefilter("ignore")
            return joblib.load(path)
    except Exception as exc:  # unpickling can raise anything the pickle encodes
        raise ModelLoadError(f"cannot load {path.name}: {type(exc).__name__}: {exc}") from exc


def check_estimator(estimator: Any) -> None:
    if not hasattr(estimator, "predict_proba"):
        raise ModelLoadError(f"{type(estimator).__name__} has no predict_proba")
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != len(FEATURES):
        raise ModelLoadError(f"estimator expects {n_features} features, the contract has {len(FEATURES)}")
    classes = list(getattr(estimator, "classes_", []))
    # The trainer fits on class indices; the names come from the contract.
    if classes != list(range(len(CLASSES))) and classes != list(CLASSES):
        raise ModelLoadError(f"estimator classes {classes} do not match {list(CLASSES)}")


def sanity_predict(predictor: Predictor) -> None:
    proba = predictor.predict_proba(REFERENCE_ROWS.copy())
    if proba.shape != (len(REFERENCE_ROWS), len(CLASSES)) or not np.isfinite(proba).all():
        raise ModelLoadError(f"sanity prediction returned shape {proba.shape} or non-finite values")
    if not np.allclose(proba.sum(axis=1), 1.0):
        raise ModelLoadError("sanity prediction probabilities do not sum to 1")


def extract_in_child(path: Path, fmt: str) -> dict[str, Any]:
    """Run extract.py on the model file; its stderr line becomes the reason on failure."""
    package = __package__ or "irisop_serving"
    here = Path(__file__).resolve().parent
    # Inside a Bento the package is the top-level `serving` folder, importable
    # only from its parent directory, whatever the server's cwd is. (Not for
    # the editable install, where the folder `serving` is the package
    # `irisop_serving`: its parent also holds `operator/`, which must never
    # be importable.)
    cwd = str(here.parent) if here.name == package else None
    argv = [sys.executable, "-m", f"{package}.extract", str(path), fmt]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=EXTRACT_TIMEOUT, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        # The load did not get to finish (a busy node, no process slots): not a verdict on the model.
        raise ModelLoadError(f"loading {path.name} in a child process failed: {exc}", kind=None) from exc
    if proc.returncode < 0:
        # Killed by a signal (the OOM killer, a node shutting down): not the model's own answer.
        raise ModelLoadError(f"loading {path.name}: the child process was killed by signal {-proc.returncode}",
                             kind=None)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise ModelLoadError(lines[-1] if lines else f"loading {path.name} failed with exit code {proc.returncode}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"loading {path.name}: unreadable answer from the child process") from exc


def fast_predictor_from(doc: dict[str, Any]) -> Predictor | None:
    """A numpy predictor rebuilt from extracted weights, if it reproduces the estimator."""
    linear = doc.get("linear")
    if not linear:
        return None
    weights = LinearWeights(coef=np.array(linear["coef"], dtype=np.float64), intercept=np.array(linear["intercept"], dtype=np.float64))
    proba = softmax_predictor(weights)
    expected = np.array(doc["check_proba"], dtype=np.float64)
    classes = np.array(doc["check_classes"])
    if not agrees(proba, check_set(), expected, classes):
        return None
    return Predictor(predict_proba=proba, kind=f"fast:{doc['estimator']}")


def load_in_process(path: Path, fmt: str) -> tuple[Any, Predictor]:
    estimator = load_estimator(path, fmt)
    check_estimator(estimator)
    try:
        return estimator, build_predictor(estimator)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"estimator failed on the check set: {exc}") from exc


def load_model(model_dir: Path, expected_sha256: str | None = None, isolate: bool = True,
               min_accuracy: float | None = None) -> LoadedModel:
    """All start-up checks, the quality gate last; ``isolate`` loads the file in a child process first."""
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    meta = read_metadata(model_dir)
    path = verify_file(model_dir, meta, expected_sha256)
    check_sklearn_version(meta)
    estimator: Any | None = None
    predictor = fast_predictor_from(extract_in_child(path, meta.format)) if isolate else None
    if predictor is None:
        estimator, predictor = load_in_process(path, meta.format)
    sanity_predict(predictor)
    quality = gate(predictor, model_dir, meta, min_accuracy)
    return LoadedModel(metadata=meta, sha256=meta.sha256, estimator=estimator, predictor=predictor, quality=quality)
