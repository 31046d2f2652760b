"""ASGI middleware for what BentoML's @api cannot express.

- /readyz: BentoML's own answers a bare 503 when ``__is_ready__`` is False; an
  operator or a human debugging a rollout needs the reason, so while the model
  is not ready this answers /readyz itself with a JSON body.
- GET /metadata: BentoML APIs are POST-only.
- POST /predict with a form or multipart Content-Type: BentoML would route it
  to its multipart parser, which answers a malformed body with a 500. The API
  takes JSON only, so those get a 415 here.
Everything else, including /readyz once ready, passes through untouched.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Protocol

from .errors import UnsupportedMediaType, http_response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ModelStatus(Protocol):
    ready: bool
    reason: str

    def metadata(self) -> dict[str, Any]: ...


# Media types BentoML hands to a non-JSON parser.
_NOT_JSON = ("multipart/", "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle")


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        status: Callable[[], ModelStatus],
        readyz: str = "/readyz",
        metadata: str = "/metadata",
        json_only: tuple[str, ...] = ("/predict",),
    ) -> None:
        self.app = app
        self.status = status
        self.readyz = readyz
        self.metadata_path = metadata
        self.json_only = json_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == self.readyz:
                status = self.status()
                if not status.ready:
                    await _json(send, 503, {"ready": False, "reason": status.reason})
                    return
            elif path == self.metadata_path:
                status = self.status()
                if status.ready:
                    await _json(send, 200, status.metadata())
                else:
                    await _json(send, 503, {"ready": False, "reason": status.reason})
                return
        elif scope["type"] == "http" and scope["path"] in self.json_only:
            media_type = _content_type(scope)
            if media_type.startswith(_NOT_JSON):
                code, body = http_response(
                    UnsupportedMediaType(f"Content-Type {media_type!r} is not supported: send application/json", field="Content-Type")
                )
                await _json(send, code, body)
                return
        await self.app(scope, receive, send)


def _content_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


async def _json(send: Send, code: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
