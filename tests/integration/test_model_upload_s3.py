"""`irisop train --upload` against a real moto_server over HTTP, and its failures."""
from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import yaml

from irisop_deploy.local.moto import aws_env
from irisop_deploy.local.process import free_port
from irisop_operator.cli import main
from tests.fixtures.serving import isolated_aws_env

pytestmark = pytest.mark.integration


@pytest.fixture
def moto_env(moto_port: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {**isolated_aws_env(tmp_path), **aws_env(moto_port)}
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def s3(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def train(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["train", "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(code: int, err: str) -> str:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_upload_writes_every_file_and_prints_the_spec_block(moto_env, tmp_path: Path, capsys) -> None:
    client = s3(moto_env)
    client.create_bucket(Bucket="models")
    code, out, err = train(capsys, tmp_path / "art", "--upload", "s3://models/iris/v1/")
    assert code == 0, err
    meta = json.loads((tmp_path / "art" / "model.json").read_text())
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="models")["Contents"])
    assert keys == sorted(f"iris/v1/{n}" for n in [
        "model.joblib", "holdout.json", "model.json", "MODEL_CARD.md", "confusion_matrix.png"])
    body = client.get_object(Bucket="models", Key="iris/v1/model.joblib")["Body"].read()
    assert body == (tmp_path / "art" / "model.joblib").read_bytes()
    block = yaml.safe_load(out[out.index("spec:"):])
    assert block == {"spec": {"model": {"uri": "s3://models/iris/v1/", "sha256": meta["sha256"], "format": "joblib"}}}


def test_no_such_bucket(moto_env, tmp_path: Path, capsys) -> None:
    code, _, err = train(capsys, tmp_path / "art", "--upload", "s3://no-such-bucket-here/x/")
    assert "bucket 'no-such-bucket-here' does not exist" in one_line(code, err)


def test_unreachable_endpoint(moto_env, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    code, _, err = train(capsys, tmp_path / "art", "--upload", "s3://models/x/")
    assert "cannot reach the S3 endpoint" in one_line(code, err)


def test_missing_credentials(moto_env, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = train(capsys, tmp_path / "art", "--upload", "s3://models/x/")
    assert "no usable AWS credentials" in one_line(code, err)
