"""ASGI middleware for the GET endpoints BentoML's @api cannot express.

BentoML's own /readyz answers a bare 503 when ``__is_ready__`` is False; an
operator or a human debugging a rollout needs the reason, so while the model is
not ready this middleware answers /readyz itself with a JSON body. /metadata is
a GET (BentoML APIs are POST-only) and is served here too. Everything else,
including /readyz once ready, passes through to BentoML untouched.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Protocol

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ModelStatus(Protocol):
    ready: bool
    reason: str

    def metadata(self) -> dict[str, Any]: ...


class ProbeMiddleware:
    def __init__(self, app: ASGIApp, status: Callable[[], ModelStatus], readyz: str = "/readyz", metadata: str = "/metadata") -> None:
        self.app = app
        self.status = status
        self.readyz = readyz
        self.metadata_path = metadata

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
        await self.app(scope, receive, send)


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
