"""Imports run one way: stack and bootstrap -> image tooling -> operator -> contract.

The programs are: the operator (irisop_operator), the serving container
(irisop_serving), the trainer (irisop_model), the image build tooling
(irisop_deploy.images), and the local stack and AWS bootstrap
(irisop_deploy.local, irisop_deploy.aws). Below them all sits the contract,
irisop_serving.contract: stdlib only, shared by every program.

Two checks, because each misses what the other sees:
- a static scan of every import statement, including the ones inside
  functions that a plain import would never execute;
- each program's modules imported alone in a fresh interpreter, which also
  catches what comes in transitively (an operator module that drags in BentoML).
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from tests.fixtures.tools import run

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"irisop_operator": "operator", "irisop_serving": "serving", "irisop_model": "model",
           "irisop_deploy": "deploy"}
CONTRACT = "irisop_serving.contract"

# module prefix -> project modules it may import (prefix match); the first matching rule wins
RULES: list[tuple[str, tuple[str, ...]]] = [
    (CONTRACT, ()),
    ("irisop_serving", ("irisop_serving",)),
    ("irisop_model", ("irisop_model", CONTRACT)),
    ("irisop_operator", ("irisop_operator", CONTRACT)),
    # cache_dir() is the one thing the image tooling takes from the local stack's
    # process module (which imports nothing of the tooling back).
    ("irisop_deploy.images", ("irisop_deploy.images", "irisop_deploy.local.process", "irisop_deploy.versions",
                              "irisop_operator", CONTRACT)),
    ("irisop_deploy", ("irisop_deploy", "irisop_operator", "irisop_model", CONTRACT)),
]
# third-party libraries a program must not pull in when imported alone
HEAVY = {
    "irisop_operator": ("bentoml", "sklearn", "matplotlib", "irisop_deploy", "irisop_model"),
    "irisop_serving": ("kopf", "kubernetes", "boto3", "matplotlib", "irisop_operator", "irisop_deploy",
                       "irisop_model"),
    "irisop_model": ("kopf", "kubernetes", "bentoml", "irisop_operator", "irisop_deploy"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Every project module an import statement in the file names (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in out if m.split(".")[0] in FOLDERS}


def _allowed(module: str) -> tuple[str, ...]:
    for prefix, allowed in RULES:
        if module == prefix or module.startswith(prefix + "."):
            return allowed
    raise AssertionError(f"no rule for {module}")


def _matches(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_every_module_has_a_rule() -> None:
    for module in modules():
        _allowed(module)


def test_imports_run_one_way() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        allowed = _allowed(module)
        for target in sorted(imports_of(module, path)):
            # `from irisop_serving.contract import X` also yields "irisop_serving.contract.X": judge the module
            real = target if target in known else target.rsplit(".", 1)[0]
            if not _matches(real, allowed):
                wrong.append(f"{module} imports {real}")
    assert wrong == [], "\n".join(wrong)


def test_the_contract_imports_only_the_standard_library() -> None:
    tree = ast.parse((REPO / "serving" / "contract.py").read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(sys.stdlib_module_names)


def test_the_scan_sees_a_wrong_import(tmp_path: Path) -> None:
    # The control: a function-level import of the deploy package from an
    # operator module is what the scan exists to catch.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from irisop_deploy.images import runtime\n    from ..images import model\n")
    found = imports_of("irisop_operator.x.bad", bad)
    assert "irisop_deploy.images" in found and "irisop_operator.images" in found
    assert not _matches("irisop_deploy.images", _allowed("irisop_operator.x.bad"))


_IMPORT_ALONE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package", sorted(HEAVY))
def test_each_program_imported_alone_pulls_in_nothing_it_must_not(package: str, tmp_path: Path) -> None:
    names = [m for m in modules() if m == package or m.startswith(package + ".")]
    proc = run([sys.executable, "-c", _IMPORT_ALONE, *names], cwd=tmp_path, timeout=300)
    loaded = json.loads(proc.stdout)
    pulled = sorted(m for m in loaded if _matches(m, HEAVY[package]))
    assert pulled == [], f"importing {package} alone loaded {pulled}"
    if package == "irisop_operator":
        serving = sorted(m for m in loaded if m.startswith("irisop_serving."))
        assert serving == [CONTRACT], serving


def test_benchmarks_do_not_depend_on_the_test_tree() -> None:
    wrong = []
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "tests"]
    assert wrong == [], wrong
