"""The model layer is reproducible and lays the artifact out where the server looks."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time

import pytest

from irisop_operator.images.layer import FIXED_MTIME, build_model_layer


@pytest.fixture
def artifact(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"\x80model-bytes")
    (tmp_path / "model.json").write_text('{"sha256": "x"}')
    (tmp_path / "card.md").write_text("not shipped")
    return tmp_path


def test_layout_and_ownership(artifact):
    layer = build_model_layer(artifact, ["model.json", "model.joblib"])
    with tarfile.open(fileobj=io.BytesIO(layer.data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["models", "models/current", "models/current/model.joblib",
                                             "models/current/model.json"]
        for m in members:
            assert (m.uid, m.gid, m.mtime) == (0, 0, FIXED_MTIME)
            assert m.mode == (0o755 if m.isdir() else 0o644)
        assert tar.extractfile("models/current/model.joblib").read() == b"\x80model-bytes"


def test_digests_describe_the_bytes(artifact):
    layer = build_model_layer(artifact, ["model.joblib", "model.json"])
    assert layer.digest == "sha256:" + hashlib.sha256(layer.data).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()
    assert layer.size == len(layer.data)


def test_reproducible_across_time_and_order(artifact, monkeypatch):
    first = build_model_layer(artifact, ["model.joblib", "model.json"])
    os.utime(artifact / "model.joblib", (1, 1))  # another mtime on disk must not matter
    # nor the wall clock, a day later (gzip writes it into its header unless told not to)
    later = time.time() + 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert gzip.compress(b"x")[4:8] != gzip.compress(b"x", mtime=0)[4:8], "the fake clock reaches gzip"
    second = build_model_layer(artifact, ["model.json", "model.joblib"])
    assert first.digest == second.digest and first.diff_id == second.diff_id


def test_content_change_changes_digest(artifact):
    first = build_model_layer(artifact, ["model.joblib", "model.json"])
    (artifact / "model.joblib").write_bytes(b"other")
    assert build_model_layer(artifact, ["model.joblib", "model.json"]).digest != first.digest


@pytest.mark.parametrize("name", ["../etc/passwd", "sub/model.joblib", ""])
def test_rejects_paths(artifact, name):
    with pytest.raises(ValueError):
        build_model_layer(artifact, [name])
