"""An install of one program's extra carries that program and nothing heavier.

The operator image installs ``.[operator]`` only; a user who only trains
installs ``.[trainer]``. This installs ``.[operator]`` for real into a fresh
venv (pinned by constraints.txt, pip cache under $IRISOP_CACHE) and checks what
landed, that every operator module imports, and that the other programs'
commands say which extra they need in one line.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from irisop_deploy.local.process import cache_dir
from tests.fixtures.tools import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BASE_PYTHON = Path(getattr(sys, "_base_executable", "") or sys.executable)
HEAVY = {"bentoml", "scikit-learn", "matplotlib", "scipy", "moto", "pytest"}


@pytest.fixture(scope="module")
def operator_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("operator-extra") / "venv"
    run([BASE_PYTHON, "-m", "venv", venv])
    env = {**os.environ, "PIP_CACHE_DIR": str(cache_dir() / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt",
         "-e", f"{REPO}[operator]"], env=env, timeout=840)
    return venv


@pytest.mark.timeout(900)
def test_the_operator_extra_installs_no_serving_or_training_stack(operator_venv: Path) -> None:
    listed = run([operator_venv / "bin" / "python", "-m", "pip", "list", "--format", "json"]).stdout
    installed = {row["name"].lower().replace("_", "-") for row in json.loads(listed)}
    assert {"kopf", "kubernetes", "boto3", "prometheus-client"} <= installed
    assert installed & HEAVY == set()


@pytest.mark.timeout(900)
def test_every_operator_module_imports_from_the_operator_extra(operator_venv: Path, tmp_path: Path) -> None:
    modules = sorted(
        "irisop_operator." + ".".join(p.relative_to(REPO / "operator").with_suffix("").parts)
        for p in (REPO / "operator").rglob("*.py") if p.name != "__init__.py")
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')"
    assert run([operator_venv / "bin" / "python", "-c", code, *modules], cwd=tmp_path).stdout.strip() == "ok"


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("argv", "extra"), [(["serve", "--model", "."], "serving"), (["train", "--out", "x"], "trainer"),
                                             (["up"], "local")])
def test_other_programs_name_their_extra(operator_venv: Path, tmp_path: Path, argv: list[str], extra: str) -> None:
    proc = run([operator_venv / "bin" / "irisop", *argv], check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"needs the '{extra}' extra" in lines[0], proc.stderr
    assert f"pip install 'irismodel-operator[{extra}]'" in lines[0]
