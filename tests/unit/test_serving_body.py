"""Reading a /predict body (limit, deadline) and decoding it (duplicates, huge integers, the orjson fast path), as plain ASGI."""
from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irisop_serving.body import ClientGone, DuplicateKeys, TooLarge, common_rows, decode, read_body
from irisop_serving.errors import BodyTimeout, BodyTooLarge, InvalidRequest
from irisop_serving.validation import body_to_matrix, request_rows, rows_to_matrix


def messages(*parts: bytes, disconnect: bool = False, hang: bool = False):  # noqa: ANN201
    queue: list[dict[str, Any]] = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1 or hang} for i, p in enumerate(parts)]
    if disconnect:
        queue.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    return receive


def read(receive, limit: int = 100, timeout: float = 1.0, declared: int | None = None) -> bytes:  # noqa: ANN001
    return asyncio.run(read_body(receive, limit, timeout, declared))


def test_one_message_and_chunks() -> None:
    assert read(messages(b'{"rows": []}')) == b'{"rows": []}'
    assert read(messages(b"ab", b"cd", b"")) == b"abcd"


def test_limits() -> None:
    with pytest.raises(BodyTooLarge, match="101 bytes is over the limit of 100"):
        read(messages(b"never read"), declared=101)
    with pytest.raises(BodyTooLarge, match="over the limit of 100"):
        read(messages(*[b"x" * 30] * 5))
    assert read(messages(*[b"x" * 25] * 4)) == b"x" * 100  # exactly the limit


def test_deadline_and_disconnect() -> None:
    with pytest.raises(BodyTimeout, match="within 0.05 s"):
        read(messages(b"{", hang=True), timeout=0.05)
    with pytest.raises(ClientGone):
        read(messages(b"{", hang=True, disconnect=True))
    with pytest.raises(ClientGone):
        read(messages(disconnect=True))


def test_decode_keeps_what_validation_must_name() -> None:
    doc = decode(b'{"rows": [[NaN, Infinity, 1e999, 1]]}')
    values = doc["rows"][0]
    assert math.isnan(values[0]) and values[1] == math.inf == values[2] and values[3] == 1
    top = int(sys.float_info.max)
    assert decode(str([top, -top]).encode()) == [top, -top]
    assert [type(v) for v in decode(str([top + 1, -top - 1, 10**308]).encode())] == [TooLarge, TooLarge, int]
    assert type(decode(b"[" + b"9" * 310 + b"]")[0]) is TooLarge
    assert type(decode(b"[-" + b"9" * 5000 + b"]")[0]) is TooLarge
    dup = decode(b'{"a": 1, "b": 2, "a": 3}')
    assert isinstance(dup, DuplicateKeys) and dup.key == "a"


@pytest.mark.parametrize(("raw", "needle"), [(b"\xff", "not UTF-8"), (b"{", "not valid JSON"), (b"[" * 100000, "nested too deeply")])
def test_undecodable(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        decode(raw)


def test_request_rows_and_the_errors_it_names() -> None:
    assert request_rows({"rows": [[1, 2, 3, 4]]}) == [[1, 2, 3, 4]]
    for doc, field in [([], "body"), ({}, "rows"), ({"rows": [], "x": 1}, "x"), (decode(b'{"rows": 1, "rows": 2}'), "rows")]:
        with pytest.raises(InvalidRequest) as err:
            request_rows(doc)
        assert err.value.field == field
    with pytest.raises(InvalidRequest, match="row 0: petal_width is too large for a float"):
        rows_to_matrix(decode(b'{"rows": [[1, 2, 3, ' + b"1" * 400 + b"]]}")["rows"], 10)
    with pytest.raises(InvalidRequest, match='"rows" must be a list of rows, got an integer too large for a float'):
        rows_to_matrix(decode(b'{"rows": ' + b"1" * 400 + b"}")["rows"], 10)


# --- the orjson fast path (body.common_rows, validation.body_to_matrix) --------

def _exact(body: bytes, max_rows: int = 1000) -> np.ndarray:
    return rows_to_matrix(request_rows(decode(body)), max_rows)


def _outcome(fn, body: bytes):  # noqa: ANN001, ANN202 - the matrix's bytes, or the error a client would get
    try:
        return fn(body, 1000).tobytes() if fn is body_to_matrix else fn(body).tobytes()
    except InvalidRequest as exc:
        return (type(exc), exc.message, exc.row, exc.field)


# A number as a client may write it: floats in shortest and in long form, and
# integers up to and past float64's range.
_TOP = int(sys.float_info.max)
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.25e}"),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from([str(_TOP), str(-_TOP), str(_TOP + 1), str(_TOP + 10**290), str(2**64), str(2**64 - 1),
                     "1e999", "-1e999", "1e-400", "4.9e-324", "-0", "-0.0", "1E5", "1e+5"]),
)
# Mostly the four features (the fast path), sometimes a wrong count (the exact path's error).
ROW_TEXT = st.one_of(st.lists(NUMBER_TEXT, min_size=4, max_size=4), st.lists(NUMBER_TEXT, max_size=6)).map(
    lambda values: "[" + ", ".join(values) + "]")


@settings(max_examples=500, deadline=None)
@given(rows=st.lists(ROW_TEXT, min_size=0, max_size=12), spaces=st.sampled_from(["", " ", "\n\t"]))
def test_the_fast_path_answers_exactly_as_the_exact_path(rows: list[str], spaces: str) -> None:
    body = ('{' + spaces + '"rows":' + spaces + "[" + ("," + spaces).join(rows) + "]}").encode()
    assert _outcome(body_to_matrix, body) == _outcome(_exact, body)


@pytest.mark.parametrize("rows", [b"[{}, {}]", b"[[1, 2, 3, 4], [1, 2, 3]]", b"[[[1, 2, 3, 4]]]", b"[[]]", b"[]", b"{}",
                                  b"[[1, 2, 3, 4, 5]]", b"[[1, 2, 3, [4]]]", b"[[1, 2, 3, {}]]", b"[1, 2, 3, 4]", b"7"])
def test_shapes_that_are_not_rows_get_the_exact_paths_error(rows: bytes) -> None:
    body = b'{"rows": ' + rows + b"}"
    exact = _outcome(_exact, body)
    assert isinstance(exact, tuple) and exact[0] is InvalidRequest  # every one of them is refused...
    assert _outcome(body_to_matrix, body) == exact  # ...with the same message, row and field


def test_the_fast_path_takes_the_common_body_only() -> None:
    assert common_rows(b'{"rows": [[5.1, 3.5, 1.4, 0.2], [1, 2e3, -3, 4E-1]]}') == [[5.1, 3.5, 1.4, 0.2], [1, 2000.0, -3, 0.4]]
    for body in [
        b'{"rows": [[1, 2, 3, 4]], "rows": [[5, 6, 7, 8]]}',  # a duplicate key: two strings
        b'{"rows": [[NaN, 1, 2, 3]]}',
        b'{"rows": [[true, 1, 2, 3]]}',
        b'{"rows": [{"sepal_length": 1}]}',
        b'{"rows": [[1, 2, 3, 4]]} \xc2\xa0',  # non-ASCII
        b'{"rows": [[1e999, 2, 3, 4]]}',  # orjson refuses it: decode() names the row
        b'{"rows": [[1, 2, 3, 4]]',  # malformed
        b'[{"rows": 1}]',
    ]:
        assert common_rows(body) is None, body


def test_an_integer_just_past_the_float64_maximum_is_refused_on_the_fast_path_too() -> None:
    # orjson rounds it down to the maximum; decode() says it is too large.
    with pytest.raises(InvalidRequest, match="row 0: sepal_width is too large for a float"):
        body_to_matrix(b'{"rows": [[1, ' + str(_TOP + 1).encode() + b", 3, 4]]}", 10)
    assert body_to_matrix(b'{"rows": [[1, ' + str(_TOP).encode() + b", 3, 4]]}", 10)[0, 1] == sys.float_info.max
