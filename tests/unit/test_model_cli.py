"""`irisop train` end to end in-process, and every error it reports as one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from irisop_operator.cli import main
from irisop_serving.contract import parse_metadata, sha256_file


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_valid_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--out", str(tmp_path / "art"), "--seed", "3")
    assert code == 0, err
    meta = parse_metadata(json.loads((tmp_path / "art" / "model.json").read_text()))
    assert meta.sha256 == sha256_file(str(tmp_path / "art" / "model.joblib"))
    assert meta.sha256 in out
    assert meta.raw["params"]["seed"] == 3


def test_train_skops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--out", str(tmp_path), "--format", "skops")
    assert code == 0, err
    assert (tmp_path / "model.skops").is_file()
    assert json.loads((tmp_path / "model.json").read_text())["format"] == "skops"


def one_line_error(code: int, err: str) -> str:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("irisop train: error: ")
    return lines[0]


def test_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--out", str(tmp_path), "--format", "onnx")
    assert "unknown format 'onnx'" in one_line_error(code, err)
    assert not any(tmp_path.iterdir())  # failed before training


def test_out_path_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "file" / "art"))
    assert "cannot write artifact" in one_line_error(code, err)


def test_out_path_on_a_read_only_filesystem(capsys: pytest.CaptureFixture[str]) -> None:
    # /proc refuses new directories even for root: the unwritable case that
    # also holds when the tests run as root.
    code, _, err = run_cli(capsys, "--out", "/proc/irisop-test/art")
    assert "cannot write artifact to /proc/irisop-test/art" in one_line_error(code, err)


@pytest.mark.parametrize("uri", ["http://bucket/prefix/", "s3://", "bucket/prefix"])
def test_bad_upload_uri_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str) -> None:
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "art"), "--upload", uri)
    one_line_error(code, err)
    assert not (tmp_path / "art").exists()
