"""`irisop images runtime --in-cluster`: bad invocations end in one line, before any I/O."""
from __future__ import annotations

from pathlib import Path

import pytest

from irisop_operator.cli import main


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["images", "runtime", "--in-cluster", *argv])
    _, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no traceback
    return lines[0]


def test_missing_flags_are_named(capsys, monkeypatch) -> None:
    for var in ("IRISOP_BUILD_BASE_IMAGE", "IRISOP_BUILDER_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    line = one_line_error(capsys, "--push", "reg.example/irisop/runtime")
    assert line.endswith("--in-cluster needs --base-image, --builder-image")


def test_unusable_kubeconfig_is_one_line(capsys, tmp_path: Path) -> None:
    line = one_line_error(capsys, "--push", "reg.example/irisop/runtime", "--base-image", "b@sha256:" + "0" * 64,
                          "--builder-image", "x", "--kubeconfig", str(tmp_path / "absent"))
    assert "no usable kubeconfig" in line


def test_extra_ca_that_is_not_a_file_is_refused_before_any_request(tmp_path: Path) -> None:
    from irisop_deploy.images.incluster import build_runtime_in_cluster
    from irisop_deploy.images.runtime import RuntimeBuildError
    from irisop_operator.settings import Settings

    with pytest.raises(RuntimeBuildError, match="is not a file"):
        build_runtime_in_cluster(None, tmp_path, "reg.example/irisop/runtime", base_image="b", builder_image="x",
                                 namespace="irisop-build", settings=Settings(), extra_ca=tmp_path / "nope.pem")
