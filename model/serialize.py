"""Turn a fitted estimator into model-file bytes that are identical run after run.

joblib's pickle of a LogisticRegression is already deterministic. skops is not:
its zip archive stamps the current time on every entry and names the array
members after ``id()`` of the arrays, so both are normalised here. Everything
else the trainer records (creation time, metrics) goes to model.json, never
into the model file, so the model's sha256 only changes when the model does.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import joblib

from irisop_serving.contract import MODEL_FILES

# The earliest timestamp a zip entry can carry; any fixed value would do.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SCHEMA = "schema.json"


class FormatError(ValueError):
    """An unknown model-file format was asked for."""


def check_format(fmt: str) -> str:
    if fmt not in MODEL_FILES:
        raise FormatError(f"unknown format {fmt!r} (choose one of: {', '.join(sorted(MODEL_FILES))})")
    return fmt


def dump_bytes(estimator: Any, fmt: str) -> bytes:
    check_format(fmt)
    if fmt == "joblib":
        buf = io.BytesIO()
        joblib.dump(estimator, buf)
        return buf.getvalue()
    import skops.io as sio

    return normalise_skops(sio.dumps(estimator))


def normalise_skops(data: bytes) -> bytes:
    """Rewrite a skops archive with stable member names, order and timestamps."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read(_SCHEMA))
        renames: dict[str, str] = {}
        # The schema is walked in a fixed order, so the n-th array and the
        # n-th memoised object always get the same new name / id.
        _renumber(schema, renames, {})
        members = {renames.get(name, name): src.read(name) for name in src.namelist() if name != _SCHEMA}
    members[_SCHEMA] = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, members[name])
    return out.getvalue()


def _renumber(node: Any, renames: dict[str, str], ids: dict[int, int]) -> None:
    """Replace id()-derived array file names and ``__id__`` memo keys in place.

    ``__id__`` only has to be equal for the same object and unequal otherwise;
    numbering starts at 1 because skops treats a falsy id as "not memoised".
    """
    if isinstance(node, dict):
        name = node.get("file")
        if isinstance(name, str) and node.get("__loader__") in {"NdArrayNode", "SparseMatrixNode"}:
            renames.setdefault(name, f"array-{len(renames) + 1:04d}{_suffix(name)}")
            node["file"] = renames[name]
        memo_id = node.get("__id__")
        if isinstance(memo_id, int):
            node["__id__"] = ids.setdefault(memo_id, len(ids) + 1)
        for key in sorted(node):
            _renumber(node[key], renames, ids)
    elif isinstance(node, list):
        for item in node:
            _renumber(item, renames, ids)


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""
