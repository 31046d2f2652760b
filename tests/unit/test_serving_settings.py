"""Serving settings from the environment; bad values become a not-ready reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from irisop_serving.errors import ModelLoadError
from irisop_serving.settings import DEFAULT_MAX_BATCH_ROWS, ServingSettings, bentoml_config


def test_defaults() -> None:
    s = ServingSettings.from_env({})
    assert s.model_dir == Path("/models/current")
    assert s.expected_sha256 is None
    assert s.max_batch_rows == DEFAULT_MAX_BATCH_ROWS == 1000
    assert not s.access_log and not s.trace_requests


def test_values() -> None:
    s = ServingSettings.from_env(
        {"IRISOP_MODEL_DIR": "/m", "IRISOP_EXPECTED_SHA256": "AB" * 32, "IRISOP_MAX_BATCH_ROWS": "64", "IRISOP_ACCESS_LOG": "true"}
    )
    assert s.model_dir == Path("/m")
    assert s.expected_sha256 == "ab" * 32  # normalised
    assert s.max_batch_rows == 64
    assert s.access_log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IRISOP_EXPECTED_SHA256": "abc"}, "is not a sha256"),
        ({"IRISOP_MAX_BATCH_ROWS": "many"}, "is not an integer"),
        ({"IRISOP_MAX_BATCH_ROWS": "0"}, "must be at least 1"),
    ],
)
def test_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        ServingSettings.from_env(env)


def test_bentoml_config_quiet_by_default() -> None:
    config = bentoml_config({})
    assert config["logging"] == {"access": {"enabled": False}}
    excluded = config["tracing"]["excluded_urls"]  # type: ignore[index]
    from opentelemetry.util.http import ExcludeList

    urls = ExcludeList(excluded)
    assert urls.url_disabled("http://127.0.0.1:3000/predict")
    assert urls.url_disabled("http://pod:3000/readyz?x=1")
    assert not urls.url_disabled("http://127.0.0.1:3000/predictions")


def test_bentoml_config_switches() -> None:
    config = bentoml_config({"IRISOP_ACCESS_LOG": "1", "IRISOP_TRACE_REQUESTS": "yes"})
    assert config["logging"] == {"access": {"enabled": True}}
    assert "tracing" not in config


@pytest.mark.parametrize(("raw", "expected"), [("", 1.0), ("2.5", 2.5), ("0", 1.0), ("-1", 1.0), ("soon", 1.0), ("nan", 1.0), ("inf", 1.0)])
def test_timeouts_and_the_bentoml_backstop_past_both(raw: str, expected: float) -> None:
    from irisop_serving.settings import DEFAULT_BODY_TIMEOUT, timeouts

    assert timeouts({"IRISOP_REQUEST_TIMEOUT": raw}) == (DEFAULT_BODY_TIMEOUT, expected)
    assert timeouts({"IRISOP_BODY_TIMEOUT": raw})[0] == (expected if raw == "2.5" else DEFAULT_BODY_TIMEOUT)
    assert bentoml_config({"IRISOP_REQUEST_TIMEOUT": raw})["traffic"] == {"timeout": DEFAULT_BODY_TIMEOUT + expected}


def test_body_limit_follows_the_row_limit() -> None:
    from irisop_serving.settings import max_body_bytes

    assert max_body_bytes(1000) == 1024 + 512 * 1000
    assert max_body_bytes(1) < max_body_bytes(2)


def test_workers_come_from_the_operator_and_bad_values_fall_back():
    from irisop_serving.settings import workers

    assert workers({}) == 1
    assert workers({"IRISOP_WORKERS": "3"}) == 3
    assert workers({"IRISOP_WORKERS": "lots"}) == 1
    assert workers({"IRISOP_WORKERS": "0"}) == 1
