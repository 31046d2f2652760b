"""Single-binary container images built locally, with no registry pull.

The node needs a pod-sandbox ("pause") image, and its smoke test needs a tiny
HTTP server. Both are static Go programs (deploy/local/gobin) packed into a
one-layer image in the `docker save` archive format, which both
`ctr images import` and `skopeo copy docker-archive:...` read.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from .process import ProcessError, cache_dir

GOBIN_SRC = Path(__file__).with_name("gobin")

PAUSE_IMAGE = "localhost/irisop/pause:1"
HELLO_IMAGE_NAME = "irisop/hello"


class ImageBuildError(ProcessError):
    """A local image could not be built."""


def build_static(program: str) -> Path:
    """Build gobin/<program> as a static binary, cached until its source changes."""
    src = GOBIN_SRC / program / "main.go"
    out = cache_dir() / "gobin" / program
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CGO_ENABLED": "0",  # static: the image holds nothing but this file
        "GOCACHE": str(cache_dir() / "go" / "build"),
        "GOMODCACHE": str(cache_dir() / "go" / "mod"),
        "GOFLAGS": "-buildvcs=false",
    }
    try:
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), f"./{program}"],
            cwd=GOBIN_SRC, env=env, check=True, capture_output=True, text=True,
        )
    except FileNotFoundError as exc:
        raise ImageBuildError("go not found: install Go to build the local images") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"go build {program} failed:\n{exc.stderr}") from exc
    return out


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0  # reproducible: same binary -> same digest
    tar.addfile(info, io.BytesIO(data))


def single_binary_archive(binary: Path, reference: str, dest: Path,
                          entrypoint: list[str] | None = None) -> Path:
    """Write a `docker save`-style archive of an image whose only file is binary."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        _tar_member(layer, binary.name, binary.read_bytes(), mode=0o755)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint or [f"/{binary.name}"],
            # Runs as nobody: neither program needs root, and the operator's
            # pods must run non-root too.
            "User": "65534:65534",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"irisop_deploy.local.images: {binary.name}"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, mode="w") as archive:
        _tar_member(archive, config_name, config_bytes)
        _tar_member(archive, layer_name, layer_bytes)
        _tar_member(archive, "manifest.json", json.dumps(manifest).encode())
    return dest


def pause_archive() -> Path:
    binary = build_static("pause")
    return single_binary_archive(binary, PAUSE_IMAGE, cache_dir() / "images" / "pause.tar")


def hello_archive(reference: str) -> Path:
    """The smoke-test server image, tagged as reference (e.g. 127.0.0.1:5000/irisop/hello:1)."""
    binary = build_static("hello")
    return single_binary_archive(binary, reference, cache_dir() / "images" / "hello.tar")


def push_archive(archive: Path, reference: str) -> None:
    """Copy an archive into a plain-HTTP registry (the local docker-registry)."""
    try:
        subprocess.run(
            ["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
             f"docker://{reference}"],
            check=True, capture_output=True, text=True,
        )
    except FileNotFoundError as exc:
        raise ImageBuildError("skopeo not found: install the Debian package skopeo") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"skopeo copy to {reference} failed:\n{exc.stderr}") from exc
