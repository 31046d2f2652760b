"""The operator <-> serving-pod contract is spelled once: irisop_serving.contract.

What is checked here, because nothing imports it:
- the runtime Containerfile (it cannot import Python) repeats the model
  directory, its environment variable and the port: they must agree;
- serving/bentofile.yaml pins the libraries the runtime image installs, and
  constraints.txt pins what the trainer and the tests run: the server refuses
  a model trained with another scikit-learn minor, so the two must be the same;
- no Python module of the operator or the server spells a contract value as a
  literal of its own.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from irisop_serving import contract

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "images" / "runtime.Containerfile"
VALUES = {
    "MODEL_DIR": contract.MODEL_DIR,
    "READY_PATH": contract.READY_PATH,
    "LIVE_PATH": contract.LIVE_PATH,
    "ENV_MODEL_DIR": contract.ENV_MODEL_DIR,
    "ENV_EXPECTED_SHA256": contract.ENV_EXPECTED_SHA256,
    "ENV_MAX_BATCH_ROWS": contract.ENV_MAX_BATCH_ROWS,
    "ENV_WORKERS": contract.ENV_WORKERS,
    "ENV_MIN_ACCURACY": contract.ENV_MIN_ACCURACY,
}


def _containerfile() -> str:
    # Continuation lines joined, comments dropped: what buildah reads.
    lines = [line for line in CONTAINERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    return re.sub(r"\\\n", " ", "\n".join(lines))


def test_the_containerfile_sets_the_model_dir_of_the_contract() -> None:
    text = _containerfile()
    found = re.findall(rf"\b{contract.ENV_MODEL_DIR}=(\S+)", text)
    assert found, f"{CONTAINERFILE.name} sets no {contract.ENV_MODEL_DIR}"
    assert set(found) == {contract.MODEL_DIR}


def test_the_containerfile_serves_on_the_contract_port() -> None:
    text = _containerfile()
    assert re.findall(r"^EXPOSE\s+(\d+)", text, re.M) == [str(contract.SERVING_PORT)]
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])", text, re.M)
    assert entrypoint, "no ENTRYPOINT"
    argv = yaml.safe_load(entrypoint.group(1))
    assert argv[argv.index("--port") + 1] == str(contract.SERVING_PORT)


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_bentofile_pins_match_constraints() -> None:
    bento = yaml.safe_load((REPO / "serving" / "bentofile.yaml").read_text())
    image_pins = _pins(bento["python"]["packages"])
    frozen = _pins((REPO / "constraints.txt").read_text().splitlines())
    assert "scikit-learn" in image_pins, "bentofile.yaml must pin scikit-learn (the server checks the minor)"
    drift = {name: (version, frozen.get(name)) for name, version in image_pins.items() if frozen.get(name) != version}
    assert drift == {}, f"bentofile.yaml vs constraints.txt (image, tests): {drift}"


def test_the_drift_check_sees_drift() -> None:
    # The control: a differing pin is found by the same parsing.
    assert _pins(["scikit-learn==1.9.1"]) != _pins(["scikit-learn==1.8.0"])
    assert _pins(["scikit_learn == 1.9.1  # why"]) == {"scikit-learn": "1.9.1"}


def _literals(path: Path) -> list[tuple[int, object]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings]


def test_no_module_spells_a_contract_value_of_its_own() -> None:
    values = set(VALUES.values()) | {contract.MODEL_DIR.lstrip("/")}
    found = []
    for folder in ("operator", "serving"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "serving" / "contract.py":
                continue
            for line, value in _literals(path):
                if value in values or (value == contract.SERVING_PORT and not isinstance(value, bool)):
                    found.append(f"{path.relative_to(REPO)}:{line}: {value!r}")
    assert found == [], "use irisop_serving.contract instead:\n" + "\n".join(found)
