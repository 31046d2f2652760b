"""moto's server mode: the local stand-in for S3, ECR, Route53, EC2 and IAM."""
from __future__ import annotations

import shutil
from pathlib import Path

from .process import ManagedProcess, http_ok, state_dir

DEFAULT_PORT = 5055


def moto_server(port: int = DEFAULT_PORT, home: Path | None = None, host: str = "127.0.0.1") -> ManagedProcess:
    """moto_server on host:port: loopback for host-only tests, the stack's own
    address (deploy/local/network.py) when pods must reach it."""
    exe = shutil.which("moto_server") or "moto_server"
    return ManagedProcess(
        name=f"moto-{port}",
        argv=[exe, "-H", host, "-p", str(port)],
        home=home or state_dir() / "moto",
        ready=http_ok(f"http://{host}:{port}/moto-api/"),
        timeout=60,
    )


def endpoint_url(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}"


def aws_env(port: int = DEFAULT_PORT, region: str = "us-east-1", host: str = "127.0.0.1") -> dict[str, str]:
    """Environment that points boto3 (and the operator) at the local moto server.

    The keys are moto's well-known fakes; real credentials never go here.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint_url(port, host),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
