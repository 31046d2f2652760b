"""Write an artifact directory: model file, model.json, plot and model card."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from irisop_serving.contract import (
    CHECK_SET_FILE,
    CLASSES,
    FEATURES,
    METADATA_FILE,
    MODEL_FILES,
    SCHEMA_VERSION,
    parse_check_set,
    parse_metadata,
)

from .report import model_card, plot_confusion_matrix
from .serialize import dump_bytes
from .training import TrainResult

PLOT_FILE = "confusion_matrix.png"
CARD_FILE = "MODEL_CARD.md"


class ArtifactWriteError(OSError):
    """The output directory cannot be created or written."""


def library_versions(fmt: str) -> dict[str, str]:
    import joblib
    import numpy
    import sklearn

    versions = {
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    if fmt == "skops":
        import skops

        versions["skops"] = skops.__version__
    return versions


def estimator_name(estimator: Any) -> str:
    cls = type(estimator)
    module = cls.__module__
    # sklearn.linear_model._logistic -> sklearn.linear_model: the public path.
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{public}.{cls.__qualname__}"


def check_set_bytes(result: TrainResult) -> bytes:
    """The held-out rows and labels as the contract's check-set JSON (deterministic bytes)."""
    doc = {
        "feature_names": list(FEATURES),
        "rows": [[float(v) for v in row] for row in result.holdout_rows],
        "labels": [int(label) for label in result.holdout_labels],
    }
    data = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
    parse_check_set(json.loads(data), len(doc["rows"]))  # never write a check set the server would refuse
    return data


def build_metadata(result: TrainResult, fmt: str, model_bytes: bytes, created_at: datetime,
                   check_set: bytes | None = None) -> dict[str, Any]:
    check_set = check_set_bytes(result) if check_set is None else check_set
    meta = {
        "schema_version": SCHEMA_VERSION,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "format": fmt,
        "model_file": MODEL_FILES[fmt],
        "size_bytes": len(model_bytes),
        "feature_names": list(FEATURES),
        "class_names": list(CLASSES),
        "versions": library_versions(fmt),
        "metrics": result.metrics(),
        "created_at": created_at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "params": result.params_dict(),
        "estimator": estimator_name(result.estimator),
        # The held-out rows, covered by their hash like the model file.
        "check_set": {
            "file": CHECK_SET_FILE,
            "sha256": hashlib.sha256(check_set).hexdigest(),
            "size_bytes": len(check_set),
            "rows": len(result.holdout_labels),
        },
    }
    parse_metadata(meta)  # never write an artifact the server or operator would refuse
    return meta


def write_artifact(out: Path, result: TrainResult, fmt: str, created_at: datetime | None = None) -> dict[str, Any]:
    """Write the artifact into ``out`` (created if needed); return the metadata."""
    model_bytes = dump_bytes(result.estimator, fmt)
    check_set = check_set_bytes(result)
    meta = build_metadata(result, fmt, model_bytes, created_at or datetime.now(timezone.utc), check_set)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A model file of the other format left over from an earlier run would
        # make the directory ambiguous for anyone listing it.
        for other in MODEL_FILES.values():
            if other != meta["model_file"]:
                (out / other).unlink(missing_ok=True)
        _write_atomic(out / meta["model_file"], model_bytes)
        _write_atomic(out / CHECK_SET_FILE, check_set)
        plot_confusion_matrix(result.confusion, out / PLOT_FILE)
        _write_atomic(out / CARD_FILE, model_card(meta, result.confusion).encode())
        # model.json last: its presence says the directory is complete.
        _write_atomic(out / METADATA_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    except OSError as exc:
        raise ArtifactWriteError(f"cannot write artifact to {out}: {exc.strerror or exc}") from exc
    return meta


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
