"""Condition reasons are a public contract (alerts and scripts match on them): one table.

operator/conditions.py spells every reason a pipeline step can fail with; the
modules that raise them import the names. A literal reason at a raise site
(``ImageError("RegistryUnauthorized", ...)`` next to the constant) is how a
typo becomes a reason nobody alerts on.
"""
from __future__ import annotations

import ast
from pathlib import Path

from irisop_operator import conditions

REPO = Path(__file__).resolve().parents[2]
ERRORS = {"PipelineError", "ArtifactError", "ImageError"}


def _literal_reasons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name in ERRORS and isinstance(node.args[0], ast.Constant):
            found.append(f"{path.name}:{node.lineno}: {name}({node.args[0].value!r}, ...)")
    return found


def test_no_pipeline_error_is_raised_with_a_literal_reason() -> None:
    found = [hit for path in sorted((REPO / "operator").rglob("*.py")) for hit in _literal_reasons(path)]
    assert found == [], "use a constant from irisop_operator.conditions:\n" + "\n".join(found)


def test_the_scan_sees_a_literal_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    raise images.ImageError('RegistryUnauthorized', 'x')\n")
    assert len(_literal_reasons(bad)) == 1


def test_reasons_are_unique_camel_case_strings() -> None:
    values = [v for k, v in vars(conditions).items() if k.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values)), sorted(v for v in values if values.count(v) > 1)
    assert all(v[:1].isupper() and " " not in v for v in values), values
