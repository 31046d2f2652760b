from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from irisop_operator.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented():
    text = DOC.read_text()
    for f in fields(Settings):
        assert f"`{f.metadata['env']}`" in text, f"{f.metadata['env']} missing from docs/configuration.md"


def test_environment_is_parsed_once_into_typed_values():
    s = Settings.from_env({"IRISOP_WATCH_NAMESPACES": "a, b,", "IRISOP_ECR_KEEP_IMAGES": "5",
                           "IRISOP_SETTLE_SECONDS": "0.25", "IRISOP_METRICS_PORT": ""})
    assert s.watch_namespaces == ("a", "b")
    assert s.ecr_keep_images == 5 and s.settle_seconds == 0.25
    assert s.metrics_port == 9090  # empty means default


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="IRISOP_ECR_KEEP_IMAGES"):
        Settings.from_env({"IRISOP_ECR_KEEP_IMAGES": "many"})
