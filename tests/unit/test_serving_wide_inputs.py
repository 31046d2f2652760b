"""The fast path against scikit-learn over the whole float64 range (property-based)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from irisop_serving.errors import InvalidRequest
from irisop_serving.predictor import build_predictor
from irisop_serving.validation import check_finite
from tests.fixtures.wide_rows import EXTREMES, ROWS, check_answer, expected


@pytest.fixture(scope="module")
def predictor(trained):  # noqa: ANN001, ANN201 - the session fixture's TrainResult
    built = build_predictor(trained.estimator)
    assert built.kind == "fast:LogisticRegression"
    return built


@settings(max_examples=400, deadline=None)
@given(rows=ROWS)
def test_fast_path_agrees_with_sklearn_everywhere(predictor, trained, rows: list[list[float]]) -> None:  # noqa: ANN001
    proba = predictor.predict_proba(np.array(rows, dtype=np.float64))
    check_answer(expected(trained.estimator, rows), proba, proba.argmax(axis=1).tolist())


def test_the_reported_row(predictor, trained) -> None:  # noqa: ANN001
    # Issue 10: answered [[null, null, null]] and "setosa"; scikit-learn says virginica.
    row = [[0.0, 0.0, 1e308, 0.0]]
    proba = predictor.predict_proba(np.array(row))
    assert np.isfinite(proba).all() and proba.argmax() == 2 == trained.estimator.predict(row)[0]


def test_every_combination_of_extremes(predictor, trained) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    rows = [list(rng.choice(EXTREMES, size=4)) for _ in range(2000)]
    proba = predictor.predict_proba(np.array(rows, dtype=np.float64))
    check_answer(expected(trained.estimator, rows), proba, proba.argmax(axis=1).tolist())


def test_a_non_finite_answer_is_refused_naming_the_row() -> None:
    matrix = np.array([[5.1, 3.5, 1.4, 0.2], [1.0, 2.0, -1e308, 3.0]])
    proba = np.array([[0.9, 0.05, 0.05], [np.nan, np.nan, np.nan]])
    with pytest.raises(InvalidRequest) as err:
        check_finite(proba, matrix)
    assert (err.value.row, err.value.field) == (1, "petal_length")
    assert "no finite answer" in err.value.message
    check_finite(proba[:1], matrix[:1])  # finite answers pass
