"""A real OCI registry on loopback: Debian's ``docker-registry`` (CNCF distribution 2.8).

It stands in for ECR's registry endpoint (moto has none). Optional htpasswd
auth makes clients walk the same 401 → WWW-Authenticate → credentials path
that ECR's tokens take. Delete is enabled so tests and benchmarks can remove
tags and measure cold pushes.
"""
from __future__ import annotations

import shutil
import secrets
from pathlib import Path
from typing import Callable, Mapping

import requests
import yaml

from .process import ManagedProcess, state_dir

DEFAULT_PORT = 5000


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd entry; distribution only accepts bcrypt hashes."""
    import bcrypt  # only needed when auth is on

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}"


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
    path.chmod(0o600)
    return path


def registry_config(port: int, storage: Path, htpasswd: Path | None = None,
                    token_auth: Mapping[str, str] | None = None, host: str = "127.0.0.1") -> dict:
    """distribution's config; ``token_auth`` = {realm, service, issuer, rootcertbundle} for Bearer tokens."""
    config: dict = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
        },
        "http": {
            "addr": f"{host}:{port}",
            # Signs upload-session state; random per start is enough for one process.
            "secret": secrets.token_hex(16),
        },
    }
    if htpasswd is not None and token_auth is not None:
        raise ValueError("choose htpasswd or token auth, not both")
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "irisop-local", "path": str(htpasswd)}}
    if token_auth is not None:
        config["auth"] = {"token": dict(token_auth)}
    return config


def _answers(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready once /v2/ answers at all: 401 (auth on) counts as up."""

    def probe() -> bool:
        try:
            return requests.get(f"http://{host}:{port}/v2/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False

    return probe


def local_registry(port: int = DEFAULT_PORT, home: Path | None = None,
                   users: Mapping[str, str] | None = None,
                   token_auth: Mapping[str, str] | None = None, host: str = "127.0.0.1") -> ManagedProcess:
    """A ManagedProcess for docker-registry on host:port (storage under home).

    ``users`` turns on htpasswd (Basic) auth; ``token_auth`` delegates to a
    token server (Bearer), as Docker Hub-style registries do. ``host`` is
    loopback unless pods must reach the registry themselves (an in-cluster
    build pushes from a pod, whose loopback is its own).
    """
    home = home or state_dir() / f"registry-{port}"
    home.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(home / "htpasswd", users) if users else None
    config = home / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(port, home / "storage", htpasswd, token_auth, host), sort_keys=False))
    exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    return ManagedProcess(
        name=f"registry-{port}",
        argv=[exe, "serve", str(config)],
        home=home,
        ready=_answers(port, host),
        timeout=30,
    )
