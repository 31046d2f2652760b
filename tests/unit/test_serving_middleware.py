"""The edge middleware (readiness reason, /metadata, JSON-only /predict), driven as a plain ASGI app."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from irisop_serving.middleware import EdgeMiddleware


@dataclass
class Status:
    ready: bool
    reason: str
    info: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return self.info


async def downstream(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"downstream"})


def call(app: EdgeMiddleware, path: str, method: str = "GET", kind: str = "http") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": kind, "method": method, "path": path}, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_not_ready_answers_readyz_with_the_reason() -> None:
    app = EdgeMiddleware(downstream, lambda: Status(False, "sha256 mismatch"))
    status, body = call(app, "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "reason": "sha256 mismatch"}


def test_ready_passes_readyz_to_bentoml() -> None:
    app = EdgeMiddleware(downstream, lambda: Status(True, "ok"))
    assert call(app, "/readyz") == (299, b"downstream")


def test_metadata() -> None:
    app = EdgeMiddleware(downstream, lambda: Status(True, "ok", {"sha256": "x"}))
    status, body = call(app, "/metadata")
    assert (status, json.loads(body)) == (200, {"sha256": "x"})
    app = EdgeMiddleware(downstream, lambda: Status(False, "no model"))
    status, body = call(app, "/metadata")
    assert status == 503 and json.loads(body)["reason"] == "no model"


def test_metadata_answers_405_to_other_methods() -> None:
    app = EdgeMiddleware(downstream, lambda: Status(True, "ok"))
    status, body = call(app, "/metadata", method="POST")
    assert status == 405 and "use GET" in json.loads(body)["error"]


def test_routes_take_their_exact_path() -> None:
    async def ours(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 298, "headers": []})
        await send({"type": "http.response.body", "body": b"ours"})

    app = EdgeMiddleware(downstream, lambda: Status(True, "ok"), routes={"/predict": ours})
    assert call(app, "/predict", method="POST") == (298, b"ours")
    assert call(app, "/predict", method="GET") == (298, b"ours")
    assert call(app, "/predictions", method="POST")[0] == 299


def test_other_paths_and_methods_pass_through() -> None:
    app = EdgeMiddleware(downstream, lambda: Status(False, "x"))
    assert call(app, "/readyz", method="POST")[0] == 299
    assert call(app, "/livez")[0] == 299
