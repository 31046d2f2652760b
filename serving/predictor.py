"""Class probabilities for a validated float64 matrix, without sklearn's per-call overhead.

Profiling showed ``predict_proba`` on one row costs ~200 µs, almost all of it
scikit-learn's input validation; the arithmetic of a linear model is a few
microseconds. For estimator types we recognise, the fitted weights are copied
into numpy at load time and the same formula is evaluated directly. The fast
path is only used after it has matched ``predict_proba`` (and ``predict``) on
a check set; any other estimator, or a mismatch, falls back to the estimator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .contract import FEATURES

Proba = Callable[[np.ndarray], np.ndarray]

# Inputs are already checked finite and shaped by validation.py, so the only
# differences allowed are floating-point rounding between two softmax codes.
_RTOL = 1e-9
_ATOL = 1e-12


@dataclass(frozen=True)
class Predictor:
    predict_proba: Proba
    kind: str  # "fast:<estimator>" or "estimator:<estimator>", shown in /metadata


@dataclass(frozen=True)
class LinearWeights:
    """A multinomial linear model: softmax(X @ coef.T + intercept)."""

    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)


def check_set(n: int = 256, seed: int = 0) -> np.ndarray:
    """Rows spread over (and beyond) the Iris value range, including the extremes."""
    rng = np.random.default_rng(seed)
    random = rng.uniform(0.0, 10.0, size=(n, len(FEATURES)))
    corners = np.array([[0.0] * 4, [10.0] * 4, [5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]])
    return np.vstack([random, corners, -random[:8] * 10])


def linear_weights(estimator: Any) -> LinearWeights | None:
    """The weights of a recognised estimator, or None (then the estimator itself is used)."""
    from sklearn.linear_model import LogisticRegression

    # Exact type: a subclass may override predict_proba.
    if type(estimator) is not LogisticRegression:
        return None
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    if coef.ndim != 2 or coef.shape[0] < 3:
        return None  # binary models use a different formula; not ours
    return LinearWeights(coef=coef, intercept=np.asarray(estimator.intercept_, dtype=np.float64))


def softmax_predictor(weights: LinearWeights) -> Proba:
    matrix_w = np.ascontiguousarray(weights.coef.T)  # (features, classes): X @ W
    intercept = np.ascontiguousarray(weights.intercept)

    def predict_proba(matrix: np.ndarray) -> np.ndarray:
        # Overflow is expected and handled: a score of +-inf (or NaN from inf - inf)
        # sends its row to the scaled form; a finite gap that overflows below
        # becomes -inf, whose exp() is the right 0.
        with np.errstate(over="ignore", invalid="ignore"):
            scores = matrix @ matrix_w
            scores += intercept
            if not np.isfinite(scores).all():
                bad = ~np.isfinite(scores).all(axis=1)
                scores[bad] = _scaled_margins(matrix[bad], matrix_w, intercept)
            scores -= scores.max(axis=1, keepdims=True)  # log-sum-exp: exp() of values <= 0
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    return predict_proba


def _scaled_margins(rows: np.ndarray, matrix_w: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """``scores - max(scores)`` per row, computed without overflow for any finite row.

    With s = max|x| the scores are s * (x/s @ W + b/s); x/s is within [-1, 1]
    so the bracket is finite, and scaling its (non-positive) distance to the
    row's maximum back by s can only saturate towards -inf, where exp() is 0.
    """
    scale = np.abs(rows).max(axis=1, keepdims=True)
    unit = rows / scale @ matrix_w + intercept / scale
    unit -= unit.max(axis=1, keepdims=True)
    return unit * scale


def agrees(proba: Proba, checks: np.ndarray, expected_proba: np.ndarray, expected_classes: np.ndarray) -> bool:
    """Does ``proba`` reproduce the estimator's probabilities and classes on the check set?"""
    got = proba(checks.copy())
    return (
        got.shape == expected_proba.shape
        and np.array_equal(got.argmax(axis=1), expected_classes)
        and bool(np.allclose(got, expected_proba, rtol=_RTOL, atol=_ATOL))
    )


FAST_PATHS: tuple[Callable[[Any], Proba | None], ...] = (
    lambda estimator: softmax_predictor(w) if (w := linear_weights(estimator)) is not None else None,
)


def build_predictor(estimator: Any, checks: np.ndarray | None = None) -> Predictor:
    name = type(estimator).__name__
    checks = check_set() if checks is None else checks
    expected = estimator.predict_proba(checks)
    classes = estimator.predict(checks)
    for factory in FAST_PATHS:
        fast = factory(estimator)
        if fast is not None and agrees(fast, checks, expected, classes):
            return Predictor(predict_proba=fast, kind=f"fast:{name}")
    return Predictor(predict_proba=estimator.predict_proba, kind=f"estimator:{name}")
