"""BentoML's request metrics and tracing middlewares, without their per-request lookups.

Every request passes both before it reaches /predict, and a profile of the
app driven in process put them at ~32 % (metrics) and ~14 % (tracing) of a
one-row request (docs/serving.md, "Run E"):

- BentoML's ``RunnerTrafficMetricsMiddleware`` calls ``labels(**kwargs)``
  four times per request, and each call sorts the names, builds the values
  and takes a lock to find a child it found the request before.
  ``CachedTrafficMetrics`` records the same series (same metrics, same
  labels, same moments) through children looked up once per endpoint and
  status code. WebSockets, lifespan and /metrics keep BentoML's own code.
- OpenTelemetry's ``OpenTelemetryMiddleware`` builds the full URL and runs
  the exclusion regexes for every request, /predict included, to then pass
  it through untraced. ``UntracedPaths`` passes the paths we exclude
  ourselves (settings.QUIET_PATHS, unless IRISOP_TRACE_REQUESTS is on)
  through on an exact path match first; every other request is traced, or
  excluded, by OpenTelemetry as before.

Both are subclasses of the library's class, put where BentoML looks it up
(swap.py), so BentoML's ``_setup`` and configuration stay its own.
"""
from __future__ import annotations

from timeit import default_timer
from typing import Any, Awaitable, Callable, Iterable

from .swap import replace_class

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# To BentoML every path a client sends is an endpoint label (its own
# cardinality, unchanged here); the cache keeps the first ones only, so a
# scan of random paths costs lookups, not memory.
MAX_CACHED_ENDPOINTS = 64


class _Series:
    """One endpoint's children of BentoML's request metrics, looked up once."""

    def __init__(self, metrics: Any, endpoint: str) -> None:
        from bentoml._internal.context import server_context

        self._labels = {"endpoint": endpoint, "service_name": server_context.bento_name,
                        "service_version": server_context.bento_version, "runner_name": server_context.service_name}
        self._total = metrics.metrics_request_total
        self._duration = metrics.metrics_request_duration
        self._by_status: dict[int, tuple[Any, Any]] = {}  # a status code is one of a few hundred
        self.in_progress = metrics.metrics_request_in_progress.labels(**self._labels)
        # BentoML stamps the last request time except for its skip paths (the probes).
        self.last_request = None if endpoint.startswith(tuple(metrics.skip_paths)) else \
            metrics.metrics_last_request_timestamp.labels(
                service_name=server_context.bento_name, service_version=server_context.bento_version,
                runner_name=server_context.service_name)

    def finished(self, status: int) -> tuple[Any, Any]:
        """The request counter's and the duration histogram's children for this status code."""
        pair = self._by_status.get(status)
        if pair is None:
            labels = {**self._labels, "http_response_code": status}
            pair = self._by_status[status] = (self._total.labels(**labels), self._duration.labels(**labels))
        return pair


class CachedTrafficMetrics:
    """Mixed in before BentoML's RunnerTrafficMetricsMiddleware: HTTP requests through cached children."""

    app: Any
    _is_setup: bool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await super().__call__(scope, receive, send)  # type: ignore[misc]
            return
        if not self._is_setup:
            self._setup()  # type: ignore[attr-defined]
        series = self._series(scope["path"])
        if series.last_request is not None:
            series.last_request.set_to_current_time()
        start = default_timer()
        status = 0

        async def timed_send(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                total, duration = series.finished(status)
                total.inc()
                duration.observe(max(default_timer() - start, 0))
            await send(message)

        series.in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            series.in_progress.dec()

    def _series(self, endpoint: str) -> _Series:
        cache: dict[str, _Series] = self.__dict__.setdefault("_irisop_series", {})
        series = cache.get(endpoint)
        if series is None:
            series = _Series(self, endpoint)
            if len(cache) < MAX_CACHED_ENDPOINTS:
                cache[endpoint] = series
        return series


class UntracedPaths:
    """Mixed in before OpenTelemetry's ASGI middleware: ``untraced`` paths pass straight through."""

    app: Any
    untraced: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.untraced:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)  # type: ignore[misc]


def install(untraced: Iterable[str]) -> bool:
    """Make BentoML build its app with both; whether it could (each one is tried)."""
    quiet = frozenset(untraced)
    metrics = replace_class("bentoml._internal.server.http.instruments", "RunnerTrafficMetricsMiddleware",
                            lambda original: type("CachedTrafficMetrics", (CachedTrafficMetrics, original), {}),
                            why="its per-request metric lookups")
    tracing = replace_class("opentelemetry.instrumentation.asgi", "OpenTelemetryMiddleware",
                            lambda original: type("UntracedPaths", (UntracedPaths, original), {"untraced": quiet}),
                            why="its per-request URL matching")
    return metrics and tracing
