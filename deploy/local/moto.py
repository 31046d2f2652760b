"""moto's server mode: the local stand-in for S3, ECR, Route53, EC2 and IAM."""
from __future__ import annotations

import shutil
from pathlib import Path

from .process import ManagedProcess, http_ok, state_dir

DEFAULT_PORT = 5055


def moto_server(port: int = DEFAULT_PORT, home: Path | None = None) -> ManagedProcess:
    exe = shutil.which("moto_server") or "moto_server"
    return ManagedProcess(
        name=f"moto-{port}",
        argv=[exe, "-H", "127.0.0.1", "-p", str(port)],
        home=home or state_dir() / "moto",
        ready=http_ok(f"http://127.0.0.1:{port}/moto-api/"),
        timeout=60,
    )


def endpoint_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def aws_env(port: int = DEFAULT_PORT, region: str = "us-east-1") -> dict[str, str]:
    """Environment that points boto3 (and the operator) at the local moto server.

    The keys are moto's well-known fakes; real credentials never go here.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url(port),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
