"""Serving configuration, read from the environment once per process.

The operator sets these on the model Deployment; `irisop serve` sets them for
a local run. Bad values do not crash the process: they become the reason the
service is not ready, like any other start-up check.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .contract import (
    ENV_EXPECTED_SHA256,
    ENV_MAX_BATCH_ROWS,
    ENV_MODEL_DIR,
    ENV_WORKERS,
    LIVE_PATH,
    MODEL_DIR,
    READY_PATH,
    is_sha256,
)
from .errors import ModelLoadError

DEFAULT_MODEL_DIR = MODEL_DIR  # where the model image puts the artifact (the pod contract)
DEFAULT_MAX_BATCH_ROWS = 1000


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEFAULT_REQUEST_TIMEOUT = 1.0
# Seconds a client has to deliver the whole /predict body (408 after). The
# largest body allowed (max_body_bytes) is ~0.5 MB: 2 s is ~2 Mbit/s, slow for
# a client in the cluster. Not longer by default because BentoML's backstop
# timer (below) is set past it and every request's timer lives that long:
# with 5 + 1 s the worker grew 106 -> 133 MiB under load.
DEFAULT_BODY_TIMEOUT = 2.0

# The byte limit of a /predict body, derived from the row limit: a row written
# as an object with the four names, 17-digit values and some indentation is
# under 250 bytes; 512 leaves room for any reasonable formatting, and the
# envelope ({"rows": [...]}, whitespace) gets 1 KiB. Anything larger is refused
# with 413 before it is read to the end, let alone parsed.
BODY_BYTES_PER_ROW = 512
BODY_ENVELOPE_BYTES = 1024


def max_body_bytes(max_rows: int) -> int:
    return BODY_ENVELOPE_BYTES + BODY_BYTES_PER_ROW * max_rows


def _timeout(raw: str, default: float = DEFAULT_REQUEST_TIMEOUT) -> float:
    # Read at import time, where raising would kill the worker: fall back to
    # the default rather than crash on a typo (see docs/serving.md).
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        return default
    return value if value > 0 and value == value and value != float("inf") else default


def timeouts(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(body, processing) seconds: IRISOP_BODY_TIMEOUT and IRISOP_REQUEST_TIMEOUT."""
    env = os.environ if env is None else env
    return (
        _timeout(env.get("IRISOP_BODY_TIMEOUT", ""), DEFAULT_BODY_TIMEOUT),
        _timeout(env.get("IRISOP_REQUEST_TIMEOUT", ""), DEFAULT_REQUEST_TIMEOUT),
    )


def access_log_enabled(env: Mapping[str, str] | None = None) -> bool:
    """IRISOP_ACCESS_LOG: BentoML's access-log line per request (off by default)."""
    return _flag((os.environ if env is None else env).get("IRISOP_ACCESS_LOG", ""))


def workers(env: Mapping[str, str] | None = None) -> int:
    """IRISOP_WORKERS (spec.serving.workers): worker processes; 1 to 16, default 1.

    Read at import time like the timeout: a bad value falls back to 1 rather
    than crash the worker.
    """
    raw = (os.environ if env is None else env).get(ENV_WORKERS, "").strip()
    try:
        value = int(raw) if raw else 1
    except ValueError:
        return 1
    return value if 1 <= value <= 16 else 1


QUIET_PATHS = ["/predict", READY_PATH, LIVE_PATH, "/healthz", "/metrics", "/metadata"]


def bentoml_config(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """Service-level BentoML settings; read at import time, when the decorator runs.

    Only the two observability switches come from here; a malformed model
    setting must not stop the module from importing (it is reported through
    readiness instead), so this reads the flags directly.
    """
    env = os.environ if env is None else env
    config: dict[str, object] = {
        "logging": {"access": {"enabled": access_log_enabled(env)}},
        # BentoML's request timeout (BoundedTimeout, timeout.py, in place of
        # BentoML's own, which left a timer per request) times every route
        # but /predict and /docs.json: /predict runs its own body clock (408)
        # and then bounded synchronous work. Its clock starts with the request
        # line, so for any route that reads a body it is set past body +
        # processing time: a backstop that never cuts off an upload first.
        "traffic": {"timeout": sum(timeouts(env))},
    }
    untraced = untraced_paths(env)
    if untraced:
        # A full URL is matched by regex search: anchor on the path.
        config["tracing"] = {"excluded_urls": [rf"^https?://[^/]+{path}(\?|$)" for path in untraced]}
    return config


def untraced_paths(env: Mapping[str, str] | None = None) -> list[str]:
    """The paths no OpenTelemetry span is made for: the quiet ones, unless IRISOP_TRACE_REQUESTS is on."""
    env = os.environ if env is None else env
    return [] if _flag(env.get("IRISOP_TRACE_REQUESTS", "")) else list(QUIET_PATHS)


@dataclass(frozen=True)
class ServingSettings:
    # IRISOP_MODEL_DIR: artifact directory holding model.json and the model file.
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    # IRISOP_EXPECTED_SHA256: the sha256 the operator verified; any other model file is refused.
    expected_sha256: str | None = None
    # IRISOP_MAX_BATCH_ROWS: rows per /predict request; larger batches get 413.
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    # IRISOP_ACCESS_LOG: one log line per request. Off by default: at ~1,000+
    # requests/s per core the line costs a measurable share of each request.
    access_log: bool = False
    # IRISOP_TRACE_REQUESTS: OpenTelemetry spans for /predict and the probes.
    # Off by default: with no exporter configured BentoML still builds and
    # drops ~4 spans per request (~0.2 ms, the largest cost after profiling).
    trace_requests: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServingSettings":
        env = os.environ if env is None else env
        expected = env.get(ENV_EXPECTED_SHA256, "").strip().lower() or None
        if expected is not None and not is_sha256(expected):
            raise ModelLoadError(f"{ENV_EXPECTED_SHA256}={expected!r} is not a sha256 hex digest")
        raw_rows = env.get(ENV_MAX_BATCH_ROWS, "").strip()
        try:
            max_rows = int(raw_rows) if raw_rows else DEFAULT_MAX_BATCH_ROWS
        except ValueError as exc:
            raise ModelLoadError(f"{ENV_MAX_BATCH_ROWS}={raw_rows!r} is not an integer") from exc
        if max_rows < 1:
            raise ModelLoadError(f"{ENV_MAX_BATCH_ROWS}={max_rows} must be at least 1")
        return cls(
            access_log=access_log_enabled(env),
            trace_requests=_flag(env.get("IRISOP_TRACE_REQUESTS", "")),
            model_dir=Path(env.get(ENV_MODEL_DIR, "").strip() or DEFAULT_MODEL_DIR),
            expected_sha256=expected,
            max_batch_rows=max_rows,
        )
