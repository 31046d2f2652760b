"""POST /predict as a plain ASGI route inside the BentoML service.

BentoML's own API path (IO descriptors, pydantic input model, per-call
signature binding, its request context) cost ~300 µs of a ~330 µs request
(docs/serving.md, Performance). This route does the same job in a few tens of
µs and owns what that path could not do right:

- the body is bounded (413 unread past the byte limit, Content-Length or
  chunked) and must arrive within the body timeout (408);
- only ``application/json`` (UTF-8) is parsed; anything else is 415;
- every failure is a ServingError turned into a body by errors.http_response,
  logged as one INFO line (a client's mistake is not the server's ERROR).

Once the body is in, decoding, validation and prediction are synchronous and
bounded by the row limit (~10 ms for 1,000 rows), so nothing can time out
after that point: the processing clock starts when the body has arrived and
there is no await before the answer.

It runs inside BentoML's middleware stack (its Prometheus metrics count
/predict as before; docs/serving.md says what else).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol

import numpy as np
import orjson

from .body import ClientGone, declared_length, read_body
from .contract import CLASSES
from .errors import MethodNotAllowed, ModelNotReady, ServingError, UnsupportedMediaType, http_response
from .settings import max_body_bytes
from .validation import body_to_matrix, check_finite

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

logger = logging.getLogger("irisop_serving.requests")

_CLASS_NAMES = np.array(CLASSES, dtype=object)
_JSON = b"application/json"
# 408 and 413 leave an unread body on the connection: close it rather than
# read (or mis-parse) the rest.
_CLOSE = frozenset({408, 413})


class Predictor(Protocol):
    def predict_proba(self, matrix: np.ndarray) -> np.ndarray: ...


class Model(Protocol):
    sha256: str
    predictor: Predictor


class ServingState(Protocol):
    reason: str
    max_batch_rows: int

    @property
    def model(self) -> Model | None: ...


class PredictRoute:
    def __init__(self, state: Callable[[], ServingState], body_timeout: float) -> None:
        self.state = state
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}: use POST")
            headers = scope["headers"]
            _require_json(headers)
            state = self.state()
            body = await read_body(receive, max_body_bytes(state.max_batch_rows), self.body_timeout, declared_length(headers))
            answer = _answer(state, body)
        except ClientGone:
            logger.info("client error: %s %s: the client disconnected before its body was complete", _client(scope), scope["path"])
            return
        except ServingError as exc:
            status, payload = http_response(exc)
            if status < 500:
                logger.info("client error %d: %s %s %s: %s", status, _client(scope), scope["method"], scope["path"], exc.message)
            await _respond(send, status, orjson.dumps(payload), close=status in _CLOSE, allow=isinstance(exc, MethodNotAllowed))
            return
        await _respond(send, 200, answer)


def _answer(state: ServingState, body: bytes) -> bytes:
    model = state.model
    if model is None:
        raise ModelNotReady(f"model not ready: {state.reason}")
    matrix = body_to_matrix(body, state.max_batch_rows)
    proba = model.predictor.predict_proba(matrix)
    check_finite(proba, matrix)
    return orjson.dumps(
        {
            "predictions": _CLASS_NAMES[proba.argmax(axis=1)].tolist(),
            # orjson writes a float64 array as it writes the floats of
            # tolist(), without making them (~2 µs of 9 at 64 rows).
            "probabilities": np.ascontiguousarray(proba, dtype=np.float64),
            "model_sha256": model.sha256,
            "classes": CLASSES,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _require_json(headers: list[tuple[bytes, bytes]]) -> None:
    for name, value in headers:
        if name == b"content-type":
            if value == _JSON:
                return
            media, _, params = value.decode("latin-1").partition(";")
            charset = params.strip().lower().replace('"', "")
            if media.strip().lower() == "application/json" and charset in ("", "charset=utf-8"):
                return
            raise UnsupportedMediaType(f"Content-Type {value.decode('latin-1')!r} is not supported: send application/json (UTF-8)", field="Content-Type")
    raise UnsupportedMediaType("no Content-Type: send application/json", field="Content-Type")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


async def _respond(send: Send, status: int, body: bytes, close: bool = False, allow: bool = False) -> None:
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
