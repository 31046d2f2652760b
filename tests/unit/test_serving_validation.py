"""Request rows -> matrix, and the 4xx error for every malformed row."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from irisop_serving.contract import FEATURES
from irisop_serving.errors import BatchTooLarge, InvalidRequest, ModelNotReady, ServingError, http_response
from irisop_serving.validation import rows_to_matrix

NAMED = dict(zip(FEATURES, [6.9, 3.1, 5.4, 2.1]))


def test_list_rows() -> None:
    matrix = rows_to_matrix([[5.1, 3.5, 1.4, 0.2], [6, 3, 4, 1]], 10)
    assert matrix.dtype == np.float64 and matrix.shape == (2, 4)
    np.testing.assert_array_equal(matrix[1], [6.0, 3.0, 4.0, 1.0])


def test_named_rows_are_put_in_contract_order() -> None:
    shuffled = dict(reversed(list(NAMED.items())))
    np.testing.assert_array_equal(rows_to_matrix([shuffled], 10), [[6.9, 3.1, 5.4, 2.1]])


def test_mixed_rows() -> None:
    matrix = rows_to_matrix([[5.1, 3.5, 1.4, 0.2], NAMED], 10)
    np.testing.assert_array_equal(matrix, [[5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]])


def test_batch_at_the_limit_is_accepted() -> None:
    assert rows_to_matrix([[1, 2, 3, 4]] * 5, 5).shape == (5, 4)


def expect(rows: Any, error: type[ServingError], message: str, row: int | None = None, field: str | None = None, limit: int = 10) -> None:
    with pytest.raises(error, match=message) as info:
        rows_to_matrix(rows, limit)
    assert info.value.row == row
    assert info.value.field == field


@pytest.mark.parametrize(
    ("rows", "message", "row", "field"),
    [
        ([], "is empty", None, "rows"),
        ("abc", "must be a list of rows, got a string", None, "rows"),
        ({"a": 1}, "must be a list of rows, got an object", None, "rows"),
        (None, "must be a list of rows, got null", None, "rows"),
        ([[1, 2, 3]], "row 0: expected 4 features", 0, None),
        ([[1, 2, 3, 4], [1, 2, 3, 4, 5]], "row 1: expected 4 features", 1, None),
        ([[1, 2, "3", 4]], "row 0: petal_length must be a number, got a string", 0, "petal_length"),
        ([[1, 2, None, 4]], "petal_length must be a number, got null", 0, "petal_length"),
        ([[True, 2, 3, 4]], "sepal_length must be a number, got a boolean", 0, "sepal_length"),
        ([[1, 2, 3, [4]]], "petal_width must be a number, got a list", 0, "petal_width"),
        ([[1, 2, 3, 4], [float("nan"), 2, 3, 4]], "row 1: sepal_length is nan", 1, "sepal_length"),
        ([[1, float("inf"), 3, 4]], "row 0: sepal_width is inf", 0, "sepal_width"),
        ([[1, 2, 3, float("-inf")]], "row 0: petal_width is -inf", 0, "petal_width"),
        ([[1, 2, 3, 10**400]], "petal_width is too large", 0, "petal_width"),
        ([5.1], "row 0: expected a list of 4 numbers or an object", 0, None),
        (["5.1,3.5,1.4,0.2"], "row 0: expected a list of 4 numbers or an object of named features, got a string", 0, None),
        ([{**NAMED, "colour": 1}], "row 0: unknown feature 'colour'", 0, "colour"),
        ([{k: v for k, v in NAMED.items() if k != "petal_width"}], "row 0: missing feature 'petal_width'", 0, "petal_width"),
        ([{**NAMED, "sepal_width": "wide"}], "sepal_width must be a number", 0, "sepal_width"),
        ([{**NAMED, "sepal_width": float("nan")}], "sepal_width is nan", 0, "sepal_width"),
    ],
)
def test_invalid_rows(rows: Any, message: str, row: int | None, field: str | None) -> None:
    expect(rows, InvalidRequest, message, row, field)


def test_batch_over_the_limit() -> None:
    expect([[1, 2, 3, 4]] * 11, BatchTooLarge, "batch of 11 rows is over the limit of 10", None, "rows")


@pytest.mark.parametrize(
    ("exc", "status"),
    [(InvalidRequest("x", row=1, field="f"), 400), (BatchTooLarge("x"), 413), (ModelNotReady("x"), 503)],
)
def test_http_mapping(exc: ServingError, status: int) -> None:
    code, body = http_response(exc)
    assert code == status
    assert body["error"] == "x"


def test_error_body_names_row_and_field() -> None:
    assert http_response(InvalidRequest("bad", row=3, field="petal_width"))[1] == {"error": "bad", "row": 3, "field": "petal_width"}
    assert http_response(InvalidRequest("bad"))[1] == {"error": "bad"}
