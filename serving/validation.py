"""Request document -> a float64 matrix, or an InvalidRequest naming the row and field.

The document is ``{"rows": [...]}`` and nothing else. A row is either a list
of the four measurements in contract order or an object keyed by the four
feature names. JSON decoding (body.py) has already happened, so this works on
plain Python values and is cheap: the common all-float batch is checked with
one type test per value before numpy takes over.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Sequence

import numpy as np

from .contract import FEATURES
from .body import DuplicateKeys, TooLarge, common_rows, decode
from .errors import BatchTooLarge, InvalidRequest

_N = len(FEATURES)
_FEATURE_SET = frozenset(FEATURES)
_FLOAT_MAX = sys.float_info.max


def body_to_matrix(body: bytes, max_rows: int) -> np.ndarray:
    """A /predict body -> its float64 matrix, or the InvalidRequest that names what is wrong.

    List rows of plain numbers take orjson and one numpy conversion
    (body.common_rows; 64 rows: ~12 µs instead of ~27 µs in process). Anything else, and
    anything the fast path is not sure of, goes the exact way, which also
    writes every error message: the fast path never refuses a body.
    """
    rows = common_rows(body)
    if type(rows) is list and 0 < len(rows) <= max_rows:
        # Such a body holds only lists, numbers and empty objects, so numpy's
        # own conversion checks the types and the shape, in C.
        try:
            matrix = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = None
        # orjson never returns inf, but rounds an integer just past the
        # maximum down to it, where decode() says TooLarge: let it say so.
        if matrix is not None and matrix.shape == (len(rows), _N) and np.abs(matrix).max() < _FLOAT_MAX:
            return matrix
    return rows_to_matrix(request_rows(decode(body)), max_rows)


def request_rows(doc: Any) -> Any:
    """The "rows" of a request document (still unchecked)."""
    if type(doc) is dict and len(doc) == 1 and "rows" in doc:
        return doc["rows"]  # the hot path
    if isinstance(doc, DuplicateKeys):
        raise InvalidRequest(f"duplicate key {doc.key!r} in the request object", field=doc.key)
    if not isinstance(doc, dict):
        raise InvalidRequest(f'the body must be a JSON object {{"rows": [...]}}, got {_kind(doc)}', field="body")
    unknown = sorted(str(k) for k in doc if k != "rows")
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}: the request object has only \"rows\"", field=unknown[0])
    raise InvalidRequest('missing field "rows"', field="rows")


def rows_to_matrix(rows: Any, max_rows: int) -> np.ndarray:
    if not isinstance(rows, list):
        raise InvalidRequest(f'"rows" must be a list of rows, got {_kind(rows)}', field="rows")
    if not rows:
        raise InvalidRequest('"rows" is empty: send at least one row', field="rows")
    if len(rows) > max_rows:
        raise BatchTooLarge(f"batch of {len(rows)} rows is over the limit of {max_rows}", field="rows")
    try:
        matrix = np.array(rows if _all_plain_number_lists(rows) else _checked(rows), dtype=np.float64)
    except OverflowError:
        # An integer too large for a float64 slipped through the fast check;
        # the per-value path names it.
        matrix = np.array(_checked(rows), dtype=np.float64)
    if not np.isfinite(matrix).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(matrix))[0])
        raise InvalidRequest(f"row {i}: {FEATURES[j]} is {matrix[i, j]}, expected a finite number", row=i, field=FEATURES[j])
    return matrix


def check_finite(proba: np.ndarray, matrix: np.ndarray) -> None:
    """Refuse to answer with a non-finite probability (JSON has no NaN; orjson would write null).

    The fast path is finite for every finite input; an estimator served
    through its own predict_proba may not be, and then the row is named.
    """
    if np.isfinite(proba).all():
        return
    i = int(np.argwhere(~np.isfinite(proba).all(axis=1))[0, 0])
    j = int(np.abs(matrix[i]).argmax())
    raise InvalidRequest(
        f"row {i}: the model has no finite answer for these values ({FEATURES[j]} is {matrix[i, j]!r}); "
        "send measurements in a realistic range",
        row=i,
        field=FEATURES[j],
    )


def _checked(rows: Sequence[Any]) -> list[list[float]]:
    return [_row_values(i, row) for i, row in enumerate(rows)]


def _all_plain_number_lists(rows: Sequence[Any]) -> bool:
    """The hot path: every row a 4-list of int/float (bool is an int, so use type())."""
    for row in rows:
        if type(row) is not list or len(row) != _N:
            return False
        for value in row:
            kind = type(value)
            if kind is not float and kind is not int:
                return False
    return True


def _row_values(i: int, row: Any) -> list[float]:
    if isinstance(row, list):
        if len(row) != _N:
            raise InvalidRequest(f"row {i}: expected {_N} features {list(FEATURES)}, got {len(row)}", row=i)
        return [_number(i, name, value) for name, value in zip(FEATURES, row)]
    if isinstance(row, dict):
        if isinstance(row, DuplicateKeys):
            raise InvalidRequest(f"row {i}: duplicate feature {row.key!r}", row=i, field=row.key)
        unknown = sorted(str(k) for k in row if k not in _FEATURE_SET)
        if unknown:
            raise InvalidRequest(f"row {i}: unknown feature {unknown[0]!r} (expected {list(FEATURES)})", row=i, field=unknown[0])
        for name in FEATURES:
            if name not in row:
                raise InvalidRequest(f"row {i}: missing feature {name!r}", row=i, field=name)
        return [_number(i, name, row[name]) for name in FEATURES]
    raise InvalidRequest(f"row {i}: expected a list of {_N} numbers or an object of named features, got {_kind(row)}", row=i)


def _number(i: int, name: str, value: Any) -> float:
    if type(value) is TooLarge:
        raise InvalidRequest(f"row {i}: {name} is too large for a float", row=i, field=name)
    if type(value) is bool or not isinstance(value, (int, float)):
        raise InvalidRequest(f"row {i}: {name} must be a number, got {_kind(value)}", row=i, field=name)
    try:
        number = float(value)
    except OverflowError as exc:
        raise InvalidRequest(f"row {i}: {name} is too large for a float", row=i, field=name) from exc
    if not math.isfinite(number):
        raise InvalidRequest(f"row {i}: {name} is {number}, expected a finite number", row=i, field=name)
    return number


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is TooLarge:
        return "an integer too large for a float"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
