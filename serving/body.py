"""A /predict body: read within a byte limit and a deadline, then decoded as strict JSON.

Reading (ASGI ``receive``): a Content-Length over the limit is refused before
a byte is read; a chunked body is refused as soon as it passes the limit, so
memory never holds more than the limit plus one chunk. The whole body must
arrive within the body timeout (408); a client that disconnects first gets
nothing (there is no one to answer).

Decoding (the stdlib's C scanner with hooks, cheaper than it sounds: one call
per object and per integer):
- UTF-8 only; NaN/Infinity literals are parsed so validation can name the row
  and field they are in, like 1e999.
- A duplicate key is not silently last-wins: the object becomes a
  ``DuplicateKeys`` that validation reports with its row.
- An integer beyond the float64 range (|n| > 1.797...e308 exactly, so also
  one that float() would round down to the maximum) becomes ``TooLarge``
  instead of Python's 4,300-digit ValueError or a silent rounding, so every
  such integer gets the same row/field error.

``common_rows`` is the fast path in front of it for the request nearly every
client sends, list rows of plain numbers: orjson, when the body's bytes show
that none of the cases above can be in it.
"""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Awaitable, Callable

import orjson

from .errors import BodyTimeout, BodyTooLarge, InvalidRequest

Receive = Callable[[], Awaitable[dict[str, Any]]]

# float64's largest value as an exact integer (309 digits): a larger integer
# would round to it or overflow, so it is out of range, as the OpenAPI
# document's maximum says.
_FLOAT_MAX_INT = int(sys.float_info.max)
_MAX_INT_DIGITS = len(str(_FLOAT_MAX_INT))


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class DuplicateKeys(dict):  # type: ignore[type-arg]
    """A JSON object that named ``key`` more than once (the last value kept, but reported)."""

    key: str = ""


class TooLarge:
    """An integer literal beyond the float64 range (its digits are not kept)."""

    __slots__ = ()


_TOO_LARGE = TooLarge()


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # the HTTP parser has already refused a malformed one
    return None


async def read_body(receive: Receive, limit: int, timeout: float, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes", field="body")
    try:
        async with asyncio.timeout(timeout):
            return await _collect(receive, limit)
    except TimeoutError as exc:
        raise BodyTimeout(f"the body did not arrive within {timeout:g} s", field="body") from exc


async def _collect(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body", False):
        return body  # the common case: one message
    parts = [body]
    size = len(body)
    while True:
        if message["type"] == "http.disconnect":
            raise ClientGone()
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes", field="body")
        if not message.get("more_body", False):
            return b"".join(parts)
        message = await receive()
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    duplicate = DuplicateKeys(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicate.key = key
            break
        seen.add(key)
    return duplicate


def _int(text: str) -> int | TooLarge:
    digits = len(text) - (text[0] == "-")
    if digits < _MAX_INT_DIGITS:
        return int(text)
    if digits > _MAX_INT_DIGITS:
        return _TOO_LARGE  # before int(): Python refuses to parse over 4,300 digits
    value = int(text)
    return _TOO_LARGE if abs(value) > _FLOAT_MAX_INT else value


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int)


def decode(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not UTF-8: byte {exc.start} is invalid", field="body") from exc
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", field="body") from exc
    except RecursionError as exc:
        raise InvalidRequest("body is not valid JSON: nested too deeply", field="body") from exc


# Everything a body of list rows of numbers is made of, but its one string:
# {"rows": [[5.1, 3.5, 1.4, 0.2], ...]}.
_NUMBER_DOC_BYTES = b"0123456789.eE+-[],:{} \t\r\n"


def common_rows(body: bytes) -> Any | None:
    """The "rows" of a body whose only string is "rows", decoded by orjson; None for any other body.

    Such a body holds none of the cases ``decode`` treats with care: one
    string means one key, so no duplicate; no letters but e/E, so no NaN,
    Infinity, true, false or null; ASCII only. orjson refuses malformed JSON
    and a number that overflows a float64, and then the answer is None, so
    that ``decode`` names the error. One difference is left to the caller:
    orjson rounds an integer literal just past float64's maximum down to it,
    which ``decode`` refuses as TooLarge.
    """
    if body.translate(None, _NUMBER_DOC_BYTES) != b'"rows"':
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc["rows"] if type(doc) is dict and len(doc) == 1 else None
