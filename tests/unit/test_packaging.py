"""The repository layout must never shadow the standard library's `operator`.

`python -m ...` and `python -c ...` put the working directory first on
sys.path, so a regular package in ./operator would replace the stdlib module
for every command run from the repository root (pip, pytest, the CLI). The
folder is a PEP 420 portion mapped to `irisop_operator` instead: a namespace
portion never wins over a regular module found later on the path.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_operator_folder_has_no_init_so_it_cannot_be_a_regular_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_python_started_in_the_repo_root_gets_the_stdlib_operator() -> None:
    # -I drops site-packages and .pth files, which can import the stdlib module
    # early and hide the problem; "" is then added back the way -m/-c add it.
    out = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, ''); sys.modules.pop('operator', None);"
         "import operator; print(operator.__file__); from operator import eq"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).parent != REPO / "operator"
    assert Path(out).name == "operator.py"


def test_installed_import_name_maps_to_the_operator_folder() -> None:
    import irisop_operator.cli

    assert Path(irisop_operator.cli.__file__).resolve().parent == REPO / "operator"
