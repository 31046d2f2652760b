"""The operator's own image, built from the repository's Dockerfile.

Built with podman on the project's Debian base image (no Docker Hub), keyed
by a hash of everything that goes into it, so a second build with the same
sources is a lookup. `irisop up` pushes it to the local registry and the
kustomize install runs it; `irisop cluster create` pushes it to ECR.

An extra CA bundle (TLS-intercepting proxies) is passed as a build secret:
pip in the build trusts it, no layer carries it.
"""
from __future__ import annotations

import time
from pathlib import Path

from .content import LocalImage, content_key, source_files

OPERATOR_REPO = "localhost/irisop/operator"
# What the build context holds (mirrors .dockerignore's intent: sources and
# packaging only). A change to any of these makes a new image key.
_CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "setup.cfg", "constraints.txt", "README.md")
_CONTEXT_DIRS = ("operator", "serving", "model", "deploy")


class OperatorImageError(RuntimeError):
    """The operator image could not be built or pushed; the message carries podman's output."""


def context_key(repo_root: Path, base_image_id: str) -> str:
    """Content hash of the build context and the base image (pure)."""
    files = [repo_root / name for name in _CONTEXT_FILES if (repo_root / name).is_file()]
    for directory in _CONTEXT_DIRS:
        files += source_files(repo_root / directory)
    return content_key(f"base={base_image_id}\n", [(str(p.relative_to(repo_root)), p) for p in files])


def podman_build_argv(repo_root: Path, tag: str, base_image: str, extra_ca: Path | None = None) -> list[str]:
    """The podman command line (pure: unit-tested)."""
    argv = ["podman", "build", "--format", "docker", "--layers",
            "--build-arg", f"BASE_IMAGE={base_image}", "-f", str(repo_root / "Dockerfile"), "-t", tag]
    if extra_ca is not None:
        argv += ["--secret", f"id=pip_ca,src={extra_ca.resolve()}"]
    argv.append(str(repo_root))
    return argv


def ensure_operator_image(repo_root: Path, *, extra_ca: Path | None = None,
                          base_image: str | None = None) -> LocalImage:
    """Build the operator image unless one with the same content key exists."""
    from .baseimage import BASE_IMAGE, ImageBuildError, ensure_base_image, image_id, run

    start = time.monotonic()
    base_image = base_image or ensure_base_image(BASE_IMAGE)
    base_id = image_id(base_image)
    if base_id is None:
        raise OperatorImageError(f"base image {base_image} not in local storage")
    repo_root = repo_root.resolve()
    key = context_key(repo_root, base_id)
    ref = f"{OPERATOR_REPO}:o-{key}"
    if image_id(ref):
        return LocalImage(ref, key, built=False, seconds=time.monotonic() - start)
    if extra_ca is not None and not extra_ca.is_file():
        raise OperatorImageError(f"extra CA bundle {extra_ca} is not a file")
    try:
        run(podman_build_argv(repo_root, ref, base_image, extra_ca))
    except ImageBuildError as exc:
        raise OperatorImageError(f"operator image build failed: {exc}") from exc
    return LocalImage(ref, key, built=True, seconds=time.monotonic() - start)


def publish_operator_image(repo_root: Path, repository: str, *, extra_ca: Path | None = None,
                           username: str = "", password: str = "", tls_verify: bool = True) -> str:
    """Build unless present, push as ``repository:o-<key>``; return ``repository@digest``."""
    from irisop_deploy.images.runtime import push_local_image

    built = ensure_operator_image(repo_root, extra_ca=extra_ca)
    digest = push_local_image(built.ref, f"{repository}:o-{built.key}", username=username,
                              password=password, tls_verify=tls_verify)
    return f"{repository}@{digest}"
