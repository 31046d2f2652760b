"""ASGI middleware for what BentoML's @api cannot express.

- Exact-path routes of our own, answered before BentoML sees the request:
  POST /predict (predict_route.py) and GET /docs.json (openapi.py, the
  document that matches what /predict really does).
- /readyz: BentoML's own answers a bare 503 when ``__is_ready__`` is False; an
  operator or a human debugging a rollout needs the reason, so while the model
  is not ready this answers /readyz itself with a JSON body.
- GET /metadata (BentoML APIs are POST-only); any other method is 405.
Everything else, including /readyz once ready, passes through untouched.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping, Protocol

from .contract import READY_PATH
from .errors import MethodNotAllowed, http_response

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ModelStatus(Protocol):
    ready: bool
    reason: str

    def metadata(self) -> dict[str, Any]: ...


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        status: Callable[[], ModelStatus],
        routes: Mapping[str, ASGIApp] | None = None,
        readyz: str = READY_PATH,
        metadata: str = "/metadata",
    ) -> None:
        self.app = app
        self.status = status
        self.routes = dict(routes or {})
        self.readyz = readyz
        self.metadata_path = metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            route = self.routes.get(path)
            if route is not None:
                await route(scope, receive, send)
                return
            reading = scope["method"] in ("GET", "HEAD")
            if path == self.metadata_path:
                await self._metadata(send, reading, scope["method"])
                return
            if path == self.readyz and reading:
                status = self.status()
                if not status.ready:
                    await _json(send, 503, {"ready": False, "reason": status.reason})
                    return
        await self.app(scope, receive, send)

    async def _metadata(self, send: Send, reading: bool, method: str) -> None:
        if not reading:
            code, body = http_response(MethodNotAllowed(f"{method} is not allowed on {self.metadata_path}: use GET"))
            await _json(send, code, body, [(b"allow", b"GET, HEAD")])
            return
        status = self.status()
        if status.ready:
            await _json(send, 200, status.metadata())
        else:
            await _json(send, 503, {"ready": False, "reason": status.reason})


async def _json(send: Send, code: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": data})
