"""The install leaves the machine's own Python alone.

A system-wide ``pip install -e .`` once downgraded botocore under the
machine's awscli (checkov, a test tool, pinned boto3 exactly). bootstrap.sh
now installs into a venv the project owns and links ``irisop`` onto PATH.
This runs bootstrap's Python step for real, into a fresh venv, and compares
every distribution the system interpreter sees (its site-packages, dist-packages
and user site) before and after.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from irisop_deploy.local.process import cache_dir
from tests.fixtures.tools import run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "deploy" / "local" / "bootstrap.sh"
# The interpreter a fresh machine has, not the venv the tests run in.
SYSTEM_PYTHON = Path(getattr(sys, "_base_executable", "") or "/usr/bin/python3")
# A fresh root shell's PATH: no venv on it, so bootstrap's `python3` is the system one.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SNAPSHOT = (
    "import importlib.metadata as m, json, os\n"
    "print(json.dumps(sorted({(d.metadata['Name'] or '?', d.version, os.path.realpath(str(d._path)),"
    " os.stat(str(d._path)).st_mtime_ns) for d in m.distributions()})))"
)


def distributions(python: Path, cwd: Path) -> set[tuple]:
    """(name, version, where, mtime) of every distribution `python` can import, user site included."""
    out = run([python, "-c", _SNAPSHOT], cwd=cwd, env={"PATH": FRESH_PATH, "HOME": os.environ.get("HOME", "/root")})
    return {tuple(row) for row in json.loads(out.stdout)}


def test_the_snapshot_sees_an_install(tmp_path: Path) -> None:
    # The control: the same snapshot, on an interpreter we may change, moves
    # when something is installed, so an unchanged snapshot below means something.
    scratch = tmp_path / "scratch"
    run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", scratch])
    python = scratch / "bin" / "python"
    before = distributions(python, tmp_path)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    dist = site / "awscli_stand_in-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: awscli-stand-in\nVersion: 1.0\n")
    after = distributions(python, tmp_path)
    assert {row[0] for row in after - before} == {"awscli-stand-in"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bootstrap_python_step_changes_nothing_outside_its_venv(tmp_path: Path) -> None:
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    before = distributions(SYSTEM_PYTHON, tmp_path)
    env = {"PATH": FRESH_PATH, "HOME": os.environ.get("HOME", "/root"),
           # the shared pip cache keeps this to a minute; nothing else under it is touched
           "IRISOP_CACHE": str(cache_dir()), "IRISOP_VENV": str(venv), "IRISOP_BIN_DIR": str(bin_dir)}
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                 "http_proxy", "NO_PROXY", "no_proxy", "PIP_INDEX_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    run(["bash", BOOTSTRAP, "--python-only"], env=env, timeout=840)

    assert distributions(SYSTEM_PYTHON, tmp_path) == before
    # The project went where it should: the venv, with irisop linked onto PATH.
    link = bin_dir / "irisop"
    assert link.is_symlink() and link.resolve() == (venv / "bin" / "irisop").resolve()
    assert "irismodel-operator" in {row[0] for row in distributions(venv / "bin" / "python", tmp_path)}
    assert run([link, "--help"], env={"PATH": FRESH_PATH}).stdout.startswith("usage: irisop")
