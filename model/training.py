"""Fit the Iris classifier: seeded, deterministic, no downloads.

The data set is the copy bundled inside scikit-learn, so training works offline
and every run with the same seed and library versions sees the same bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

from irisop_serving.contract import CLASSES, FEATURES


@dataclass(frozen=True)
class TrainParams:
    """Everything that influences the fitted model; recorded in model.json."""

    seed: int = 42
    test_size: float = 0.2
    cv_folds: int = 5
    C: float = 1.0
    max_iter: int = 1000


@dataclass(frozen=True)
class TrainResult:
    estimator: LogisticRegression
    params: TrainParams
    holdout_accuracy: float
    cv_scores: tuple[float, ...]
    confusion: np.ndarray  # rows: true class, columns: predicted class (hold-out set)
    # The held-out rows and their class indices: written into the artifact as
    # its check set, which the serving container scores before it is ready.
    holdout_rows: np.ndarray
    holdout_labels: np.ndarray

    @property
    def cv_mean(self) -> float:
        return float(np.mean(self.cv_scores))

    def metrics(self) -> dict[str, object]:
        # Rounded so model.json stays readable and identical across platforms
        # whose last float digit may differ.
        return {
            "holdout_accuracy": round(self.holdout_accuracy, 6),
            "cv_scores": [round(s, 6) for s in self.cv_scores],
            "cv_mean": round(self.cv_mean, 6),
        }

    def params_dict(self) -> dict[str, object]:
        return asdict(self.params)


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """The bundled Iris data, checked against the artifact contract."""
    iris = load_iris()
    names = tuple(n.replace(" (cm)", "").replace(" ", "_") for n in iris.feature_names)
    if names != FEATURES or tuple(iris.target_names) != CLASSES:
        # A future scikit-learn renaming the columns must not silently
        # produce an artifact whose columns mean something else.
        raise RuntimeError(f"bundled Iris data does not match the contract: {names}, {list(iris.target_names)}")
    return np.ascontiguousarray(iris.data, dtype=np.float64), iris.target.astype(np.int64)


def build_estimator(params: TrainParams) -> LogisticRegression:
    return LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=params.seed)


def train(params: TrainParams = TrainParams()) -> TrainResult:
    X, y = load_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=params.test_size, random_state=params.seed, stratify=y
    )
    folds = StratifiedKFold(n_splits=params.cv_folds, shuffle=True, random_state=params.seed)
    cv_scores = cross_val_score(build_estimator(params), X_train, y_train, cv=folds)
    # Fitted on plain float64 arrays (no DataFrame) so the estimator carries
    # no feature_names_in_ and the server can feed it numpy rows directly.
    estimator = build_estimator(params).fit(X_train, y_train)
    predicted = estimator.predict(X_test)
    return TrainResult(
        estimator=estimator,
        params=params,
        holdout_accuracy=float(accuracy_score(y_test, predicted)),
        cv_scores=tuple(float(s) for s in cv_scores),
        confusion=confusion_matrix(y_test, predicted, labels=list(range(len(CLASSES)))),
        holdout_rows=X_test,
        holdout_labels=y_test,
    )
