"""Reading a /predict body (limit, deadline) and decoding it (duplicates, huge integers), as plain ASGI."""
from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

import pytest

from irisop_serving.body import ClientGone, DuplicateKeys, TooLarge, decode, read_body
from irisop_serving.errors import BodyTimeout, BodyTooLarge, InvalidRequest
from irisop_serving.validation import request_rows, rows_to_matrix


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
