"""Schemathesis holds /docs.json to what the real server does, with every check on.

The fuzzer reads the document, generates valid and invalid requests for every
operation (including methods the document does not list) and checks each
answer: status documented, body matching its schema, invalid data refused,
valid data accepted, Allow headers, no 5xx. It must find nothing, and it must
have had room to work: a document that allowed almost anything gave it 3
distinct /predict bodies (issue 10); this one gives it hundreds.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.fixtures.serving import Server, running_server, train_into, wait_ready
from tests.fixtures.tools import run

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_ROWS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = tmp_path_factory.mktemp("model")
    train_into(model)
    for srv in running_server(model, tmp_path_factory.mktemp("serve"), env={"IRISOP_MAX_BATCH_ROWS": str(MAX_ROWS)}):
        wait_ready(srv)
        yield srv


def distinct_bodies(cassette: Path) -> dict[tuple[str, str], int]:
    interactions = yaml.safe_load(cassette.read_text())["http_interactions"]
    seen: dict[tuple[str, str], set[str]] = {}
    for interaction in interactions:
        request = interaction["request"]
        path = "/" + request["uri"].split("/", 3)[3].split("?")[0]
        body = request.get("body") or {}
        seen.setdefault((request["method"], path), set()).add(str(body.get("string", body.get("base64_string", ""))))
    return {key: len(bodies) for key, bodies in seen.items()}


def test_schemathesis_finds_nothing(server: Server, tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.yaml"
    proc = run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
            "run", f"{server.url}/docs.json", "--checks", "all", "--max-examples", "300", "--seed", "1",
            "--report", "vcr", "--report-vcr-path", str(cassette), "--no-color",
        ],
        check=False, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout
    counts = distinct_bodies(cassette)
    print(f"schemathesis: {sum(counts.values())} distinct requests; POST /predict bodies: {counts[('POST', '/predict')]}")
    assert counts[("POST", "/predict")] >= 200
    assert ("GET", "/metadata") in counts and ("POST", "/metadata") in counts
    assert "Traceback" not in server.log() and "[ERROR]" not in server.log()
