"""CachedTrafficMetrics and UntracedPaths: the same series and spans as BentoML's and OpenTelemetry's own, fewer lookups.

Each replacement is driven side by side with the library's original class,
through real prometheus_client metrics and a real OpenTelemetry tracer, and
what they record is compared.
"""
from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.http import ExcludeList

from irisop_serving import instruments
from irisop_serving.instruments import CachedTrafficMetrics, UntracedPaths
from irisop_serving.settings import QUIET_PATHS, bentoml_config


class _Metrics:
    """What BentoML's metrics client gives ``_setup``: metrics, here in a registry of the test's own."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()

    def _make(self, kind: type, kwargs: dict[str, Any]) -> Any:
        if kind is not prometheus_client.Gauge:
            kwargs.pop("multiprocess_mode", None)
        return kind(registry=self.registry, **kwargs)

    def Histogram(self, **kw: Any) -> Any:  # noqa: N802 - BentoML's client's names
        return self._make(prometheus_client.Histogram, kw)

    def Counter(self, **kw: Any) -> Any:  # noqa: N802
        return self._make(prometheus_client.Counter, kw)

    def Gauge(self, **kw: Any) -> Any:  # noqa: N802
        return self._make(prometheus_client.Gauge, kw)

    def Summary(self, **kw: Any) -> Any:  # noqa: N802
        return self._make(prometheus_client.Summary, kw)


def _original(replaced: type) -> type:
    """The library's own class, whether or not ours has been installed in its place."""
    return getattr(replaced, "replaces", replaced)


async def _app(scope: dict, receive: Any, send: Any) -> None:
    status = {"/predict": 200, "/bad": 400, "/healthz": 200}.get(scope["path"], 404)
    await send({"type": "http.response.start", "status": status, "headers": []})
    if scope["path"] == "/predict":
        await send({"type": "http.response.body", "body": b"part", "more_body": True})  # counted once, at the end
    await send({"type": "http.response.body", "body": b"done"})


async def _request(app: Any, path: str) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        pass

    scope = {"type": "http", "path": path, "method": "POST", "headers": [(b"host", b"127.0.0.1:3000")],
             "scheme": "http", "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 5000),
             "http_version": "1.1", "query_string": b"", "root_path": ""}
    await app(scope, receive, send)


def _recorded(middleware_class: type, paths: list[str], built: list | None = None) -> set[tuple[str, tuple, float]]:
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = _original(RunnerTrafficMetricsMiddleware)
    cls = middleware_class if middleware_class is original else type("Cached", (middleware_class, original), {})
    metrics = _Metrics()
    middleware = cls(_app, namespace="bentoml_service", skip_paths=["/healthz"])
    middleware._setup(metrics_client=metrics, duration_buckets=(0.1, 1.0))
    if built is not None:
        built.append(middleware)

    async def run() -> None:
        for path in paths:
            await _request(middleware, path)

    asyncio.run(run())
    # Every sample but the clock's own values: the timestamp and the durations' sums.
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for metric in metrics.registry.collect()
            for s in metric.samples if not s.name.endswith(("_timestamp_seconds", "_sum", "_created"))}


def test_cached_metrics_record_what_bentomls_middleware_records() -> None:
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = _original(RunnerTrafficMetricsMiddleware)
    paths = ["/predict"] * 3 + ["/bad", "/healthz", "/nowhere", "/predict", "/bad"]
    ours, bentomls = _recorded(CachedTrafficMetrics, paths), _recorded(original, paths)
    assert ours == bentomls
    assert ("bentoml_service_request_total", (("endpoint", "/predict"), ("http_response_code", "200"),
            ("runner_name", "None"), ("service_name", ""), ("service_version", "not available")), 4.0) in ours


def test_the_endpoint_cache_is_bounded_and_every_request_still_counts() -> None:
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    original = _original(RunnerTrafficMetricsMiddleware)
    paths = [f"/scan/{i}" for i in range(instruments.MAX_CACHED_ENDPOINTS + 36)]
    built: list = []
    recorded = _recorded(CachedTrafficMetrics, paths, built)
    assert recorded == _recorded(original, paths)
    assert len(built[0]._irisop_series) == instruments.MAX_CACHED_ENDPOINTS
    counted = {dict(labels)["endpoint"] for name, labels, value in recorded if name.endswith("request_total") and value == 1}
    assert counted == set(paths)


def _spans(middleware_class: type, excluded: list[str], paths: list[str]) -> list[str]:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    original = _original(OpenTelemetryMiddleware)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = middleware_class(_app, excluded_urls=ExcludeList(excluded), tracer_provider=provider)

    async def run() -> None:
        for path in paths:
            await _request(middleware, path)

    asyncio.run(run())
    return sorted(span.attributes.get("url.path") or span.attributes.get("http.target") or span.name
                  for span in exporter.get_finished_spans() if span.kind.name == "SERVER")


def test_untraced_paths_pass_through_and_others_are_traced_as_before() -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    original = _original(OpenTelemetryMiddleware)
    excluded = bentoml_config({})["tracing"]["excluded_urls"]
    ours = type("Untraced", (UntracedPaths, original), {"untraced": frozenset(QUIET_PATHS)})
    paths = ["/predict", "/nowhere", "/healthz", "/predict/x", "/bad"]
    traced = _spans(ours, excluded, paths)
    assert traced == _spans(original, excluded, paths)
    assert len(traced) == 3  # /nowhere, /predict/x and /bad: the exporter saw spans, and none for the quiet paths


def test_the_app_bentoml_builds_for_our_service_uses_both() -> None:
    from bentoml._internal.server.http import instruments as bentoml_instruments
    from opentelemetry.instrumentation import asgi

    from irisop_serving import service

    assert issubclass(bentoml_instruments.RunnerTrafficMetricsMiddleware, CachedTrafficMetrics)
    assert issubclass(asgi.OpenTelemetryMiddleware, UntracedPaths)
    assert asgi.OpenTelemetryMiddleware.untraced == frozenset(QUIET_PATHS)
    from _bentoml_impl.server.app import ServiceAppFactory

    service.IrisClassifier.inject_config()  # what BentoML's worker does before it builds the app
    classes = [m.cls for m in ServiceAppFactory(service.IrisClassifier, is_main=True).middlewares]
    assert bentoml_instruments.RunnerTrafficMetricsMiddleware in classes
    assert asgi.OpenTelemetryMiddleware in classes
