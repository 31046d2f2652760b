"""BoundedTimeout: BentoML's request timeout without a timer left behind per request."""
from __future__ import annotations

import asyncio

from irisop_serving.timeout import BoundedTimeout


def _app(delay_before_start: float = 0.0, delay_after_start: float = 0.0):
    async def app(scope, receive, send):
        await asyncio.sleep(delay_before_start)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(delay_after_start)
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _call(middleware, path: str = "/other") -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    return sent


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    # asyncio's own loop keeps its timers in _scheduled; cancelled ones stay until popped.
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


def _requests_then_live_timers(middleware_class) -> int:
    async def run() -> int:
        middleware = middleware_class(_app(), timeout=30)
        for _ in range(50):
            await _call(middleware)
        return _live_timers(asyncio.get_running_loop())

    return asyncio.run(run())


def test_no_timer_outlives_its_request_where_bentomls_leaves_one_per_request():
    from bentoml._internal.server.http import traffic

    bentoml_own = getattr(traffic.TimeoutMiddleware, "replaces", None) or traffic.TimeoutMiddleware
    assert not issubclass(bentoml_own, BoundedTimeout), "the control needs BentoML's own class"
    assert _requests_then_live_timers(bentoml_own) == 50  # the control: one 30 s timer per request
    assert _requests_then_live_timers(BoundedTimeout) == 0


def test_no_response_within_the_timeout_is_bentomls_504():
    sent = asyncio.run(_call(BoundedTimeout(_app(delay_before_start=1.0), timeout=0.05)))
    assert sent[0]["status"] == 504
    assert b"Not able to process the request in 0.05 seconds" in sent[1]["body"]


def test_a_response_that_has_started_is_not_cut_off():
    sent = asyncio.run(_call(BoundedTimeout(_app(delay_after_start=0.2), timeout=0.05)))
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"ok"


def test_routes_that_bound_their_own_time_are_not_timed():
    exempt = type("Exempt", (BoundedTimeout,), {"exempt": frozenset({"/predict"})})
    sent = asyncio.run(_call(exempt(_app(delay_before_start=0.2), timeout=0.05), path="/predict"))
    assert sent[0]["status"] == 200


def test_the_app_bentoml_builds_for_our_service_uses_it():
    from bentoml._internal.server.http import traffic

    from irisop_serving import service

    assert issubclass(traffic.TimeoutMiddleware, BoundedTimeout)
    assert traffic.TimeoutMiddleware.exempt == frozenset(service.ROUTES)
    from _bentoml_impl.server.app import ServiceAppFactory

    service.IrisClassifier.inject_config()  # what BentoML's worker does before it builds the app
    classes = [m.cls for m in ServiceAppFactory(service.IrisClassifier, is_main=True).middlewares]
    assert traffic.TimeoutMiddleware in classes
