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

from tests.fixtures.tools import run

REPO = Path(__file__).resolve().parents[2]


def test_operator_folder_has_no_init_so_it_cannot_be_a_regular_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_python_started_in_the_repo_root_gets_the_stdlib_operator() -> None:
    # -I drops site-packages and .pth files, which can import the stdlib module
    # early and hide the problem; "" is then added back the way -m/-c add it.
    out = run([sys.executable, "-I", "-c",
               "import sys; sys.path.insert(0, ''); sys.modules.pop('operator', None);"
               "import operator; print(operator.__file__); from operator import eq"],
              cwd=REPO).stdout.strip()
    assert Path(out).parent != REPO / "operator"
    assert Path(out).name == "operator.py"


def test_installed_import_name_maps_to_the_operator_folder() -> None:
    import irisop_operator.cli

    assert Path(irisop_operator.cli.__file__).resolve().parent == REPO / "operator"


# Makes the named distributions (and their top-level modules) look
# uninstalled, as in an image that installed another program's extra only.
_BLOCK = """
import sys, importlib.abc, importlib.metadata as md
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
real = md.distribution
def distribution(name):
    if name in BLOCKED:
        raise md.PackageNotFoundError(name)
    return real(name)
md.distribution = distribution
from irisop_operator.cli import main
sys.exit(main(ARGV))
"""


def _cli_without(blocked: set[str], argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    code = f"BLOCKED = {sorted(blocked)!r}\nARGV = {argv!r}\n" + _BLOCK
    return run([sys.executable, "-c", code], cwd=tmp_path, check=False, timeout=120)


def test_a_missing_extra_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    proc = _cli_without({"bentoml"}, ["serve", "--model", str(tmp_path)], tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("irisop serve: error: needs the 'serving' extra")
    assert "pip install 'irismodel-operator[serving]'" in lines[0]


def test_the_operator_command_names_the_operator_extra(tmp_path: Path) -> None:
    proc = _cli_without({"kopf"}, ["operator", "run"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == ("irisop operator: error: needs the 'operator' extra (missing kopf): "
                                   "pip install 'irismodel-operator[operator]'")


def test_an_import_error_past_the_metadata_check_is_one_line_too(tmp_path: Path) -> None:
    # Installed metadata says present, the import says otherwise (a broken
    # install): still one line, naming the module and the extra.
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'kopf': raise ModuleNotFoundError('no kopf', name='kopf')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from irisop_operator.cli import main\n"
            "sys.exit(main(['operator', 'run']))\n")
    proc = run([sys.executable, "-c", code], cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "irisop operator: error: needs the 'operator' extra (missing Python module 'kopf'): "
        "pip install 'irismodel-operator[operator]'"]


def test_extras_follow_the_extras_they_name() -> None:
    from irisop_operator.cli import requirements_of

    requires = ['kopf>=1.38; extra == "operator"', 'bentoml<1.5,>=1.4; extra == "serving"',
                'irismodel-operator[operator,serving]; extra == "local"', 'moto[server]>=5.0; extra == "local"',
                'pytest>=8; extra == "test"', 'irismodel_operator[local]; extra == "test"']
    assert requirements_of("operator", requires) == {"kopf"}
    assert requirements_of("local", requires) == {"kopf", "bentoml", "moto"}
    assert requirements_of("test", requires) == {"kopf", "bentoml", "moto", "pytest"}


def test_help_lists_every_command_even_when_extras_are_missing(tmp_path: Path) -> None:
    from irisop_operator.cli import COMMANDS, EXTRAS

    assert set(EXTRAS) == set(COMMANDS)
    proc = _cli_without({"kopf", "kubernetes", "bentoml", "sklearn", "boto3", "botocore", "yaml", "requests",
                         "matplotlib", "moto", "cryptography"}, ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


def test_every_extra_the_cli_names_exists_in_setup_cfg() -> None:
    import configparser

    from irisop_operator.cli import EXTRAS

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    assert set(EXTRAS.values()) <= extras
    assert {"operator", "serving", "trainer", "local", "aws", "test"} <= extras
    operator_deps = cfg["options.extras_require"]["operator"]
    for heavy in ("bentoml", "scikit-learn", "matplotlib"):
        assert heavy not in operator_deps


def test_constraints_pin_every_requirement_of_every_extra() -> None:
    # A dependency added to setup.cfg without regenerating constraints.txt
    # would install unpinned on a fresh machine (freeze_constraints.py).
    import configparser
    import re

    from irisop_operator.cli import requirements_of

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requires = [f'{line.strip()}; extra == "{extra}"' for extra, block in cfg["options.extras_require"].items()
                for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    wanted = {re.sub(r"[-_.]+", "-", name).lower() for name in requirements_of("test", requires)}
    pinned = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
              for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    assert wanted - pinned == set(), "run irisop_deploy.local.freeze_constraints (see its docstring)"
    assert "checkov" not in pinned, "checkov has its own venv and pins (deploy/local/tools/checkov.txt)"
