"""BentoML's request timeout, without the timer it leaves behind for every request.

BentoML's ``TimeoutMiddleware`` (``bentoml._internal.server.http.traffic``,
BentoML 1.4) arms ``loop.call_later`` for each request and never cancels it,
and runs the rest of the stack in a Task of its own. At ~10,000 req/s with
its 3 s setting about 30,000 timers are alive at any moment, each holding a
future; the event loop fires every one of them for nothing and the garbage
collector walks them all. That was the p99 tail of issue 10: at 16
connections p99 was 27–43 ms against a 1.4 ms p50, and 3 ms with the timer
cancelled (docs/serving.md, "The p99 tail").

``BoundedTimeout`` keeps BentoML's behaviour: a 504 with BentoML's body when
no response has started within the timeout, and no limit once it has. It
uses ``asyncio.timeout``, whose timer is cancelled when the request ends,
and runs no extra Task. Routes that bound their own time skip it: /predict
reads its body against its own clock (408) and then does bounded synchronous
work (predict_route.py), so a second clock there costs without protecting.

``install`` puts it where BentoML looks the class up when it builds the app
(swap.py); if the class moves in a later BentoML, BentoML's own stays, the log
says so, and ``tests/unit/test_serving_timeout.py`` fails.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable

from .swap import replace_class

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BoundedTimeout:
    """504 unless a response starts within ``timeout`` seconds; paths in ``exempt`` are not timed."""

    exempt: frozenset[str] = frozenset()

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        started = False
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                async def started_send(message: dict[str, Any]) -> None:
                    nonlocal started
                    if not started:
                        started = True
                        deadline.reschedule(None)  # the response has begun: no limit from here on
                    await send(message)

                await self.app(scope, receive, started_send)
        except TimeoutError:
            if started or not deadline.expired():
                raise  # not our clock, or too late to answer anything else
            await _timed_out(scope, receive, send, self.timeout)


async def _timed_out(scope: Scope, receive: Receive, send: Send, timeout: float) -> None:
    from starlette.responses import JSONResponse

    # BentoML's own body, so a client cannot tell which clock answered.
    response = JSONResponse({"error": f"Not able to process the request in {timeout} seconds"}, status_code=504)
    await response(scope, receive, send)


def install(exempt: Iterable[str]) -> bool:
    """Make BentoML build its app with BoundedTimeout; whether it could."""
    return replace_class("bentoml._internal.server.http.traffic", "TimeoutMiddleware",
                         lambda _: type("BoundedTimeout", (BoundedTimeout,), {"exempt": frozenset(exempt)}),
                         why="its per-request timers")
