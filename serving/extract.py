"""Load a model file in a throwaway process and hand back only numbers.

Run as ``python -m <package>.extract MODEL_FILE FORMAT``; prints one JSON
document. Two reasons it is a separate process:

- Memory: importing scikit-learn (and SciPy under it) adds ~100 MiB to a
  process for good. For the estimators the fast path covers, the server only
  needs the weights, so the import happens here and dies with this process.
- Isolation: unpickling (joblib) runs code from the file; doing it in a child
  that exits keeps whatever it did out of the serving process.

The child also computes the estimator's own ``predict_proba``/``predict`` on
the check set, so the server can prove its numpy path gives the same answers
without importing scikit-learn itself.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .errors import ModelLoadError


def extract(path: Path, fmt: str) -> dict[str, Any]:
    from .loader import check_estimator, load_estimator
    from .predictor import check_set, linear_weights

    estimator = load_estimator(path, fmt)
    check_estimator(estimator)
    weights = linear_weights(estimator)
    checks = check_set()
    doc: dict[str, Any] = {"estimator": type(estimator).__name__, "linear": None}
    if weights is not None:
        doc["linear"] = {"coef": weights.coef.tolist(), "intercept": weights.intercept.tolist()}
        # repr() of a float round-trips exactly, so JSON carries these bit for bit.
        doc["check_proba"] = estimator.predict_proba(checks).tolist()
        doc["check_classes"] = estimator.predict(checks).tolist()
    return doc


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: extract MODEL_FILE FORMAT", file=sys.stderr)
        return 2
    try:
        doc = extract(Path(argv[0]), argv[1])
    except ModelLoadError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
