"""Debian bookworm images built without Docker Hub: the Python base image
every runtime image starts from, and the buildah builder image that in-cluster
runtime builds run in (see irisop_deploy.images.buildjob).

Why debootstrap: this project must build on machines with no Docker engine and
no access to Docker Hub, only to a Debian mirror. ``debootstrap`` gives a
minimal, reproducible Debian root filesystem; ``podman import`` turns its tar
into a one-layer image. The rootfs tarball is cached under ``cache_dir()`` so
only the first build on a machine pays the ~2 minutes.

Also here: the containers.conf that podman/buildah need on these VMs
(``runc`` because ``crun`` refuses hybrid cgroups, and ``default_ulimits = []``
because the VM withholds CAP_SYS_RESOURCE), shared by every image command.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from irisop_deploy.local.process import cache_dir

SUITE = "bookworm"
MIRROR = os.environ.get("IRISOP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class DebianImage:
    """A one-layer image made from a debootstrapped rootfs (tarball cached)."""

    ref: str
    tarball_name: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]  # podman import --change lines

    def tarball(self) -> Path:
        return cache_dir() / "images" / self.tarball_name


# python3-venv/pip: the runtime Containerfile creates a venv and pip-installs into it.
PYTHON_BASE = DebianImage(
    "localhost/irisop/python-base:bookworm", f"python-base-{SUITE}.tar",
    ("python3", "python3-venv", "python3-pip", "ca-certificates"),
    (f"ENV PATH={_PATH}", "ENV LANG=C.UTF-8", 'CMD ["/usr/bin/python3"]'))
# Debian's buildah (1.28) for in-cluster runtime builds: a maintained builder
# we can produce from a Debian mirror alone. How it runs (vfs storage, chroot
# isolation, HOME/TMPDIR on the writable volume) is set by the Job's
# environment (images.buildjob), so any buildah image works there.
BUILDER = DebianImage(
    "localhost/irisop/buildah:bookworm", f"buildah-{SUITE}.tar",
    # containernetworking-plugins: buildah depends on the virtual package
    # container-network-stack, which debootstrap cannot resolve by itself.
    ("buildah", "containernetworking-plugins", "ca-certificates"),
    (f"ENV PATH={_PATH}", "ENV LANG=C.UTF-8", 'CMD ["buildah", "--version"]'))
BASE_IMAGE = PYTHON_BASE.ref

_CONTAINERS_CONF = """\
# Written by irisop_deploy.images.baseimage.
[containers]
# The VM withholds CAP_SYS_RESOURCE: raising RLIMIT_NOFILE fails inside runc.
default_ulimits = []

[engine]
# crun fails with "cgroups in hybrid mode not supported" on these VMs.
runtime = "runc"
"""


class ImageBuildError(RuntimeError):
    """A base or runtime image build failed; the message ends with the tool output."""


def containers_conf() -> Path:
    """Path of the containers.conf every podman/buildah/skopeo call should use."""
    return _written(cache_dir() / "containers" / "containers.conf", _CONTAINERS_CONF)


def storage_conf() -> Path:
    """Path of the storage.conf that keeps every image we build under the cache directory.

    Without it podman, buildah and skopeo share /var/lib/containers with
    anything else on the machine: images would live outside the project's one
    cache directory, survive deleting it, and make a "cold" run warm.
    """
    cache = cache_dir() / "containers"
    # Locks and mount state belong on a tmpfs; a rootless user has no /run/irisop.
    runroot = Path("/run/irisop/containers") if os.geteuid() == 0 else cache / "run"
    text = ("# Written by irisop_deploy.images.baseimage: images under the project's cache directory.\n"
            "[storage]\n"
            'driver = "overlay"\n'  # the default for root on these kernels; it must be named
            f'graphroot = "{cache / "storage"}"\n'
            f'runroot = "{runroot}"\n')
    return _written(cache / "storage.conf", text)


def _written(path: Path, text: str) -> Path:
    """path, holding text: rewritten only when it differs (every tool call asks for it)."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def container_env() -> dict[str, str]:
    """os.environ plus CONTAINERS_CONF and CONTAINERS_STORAGE_CONF (an explicit caller setting wins)."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(containers_conf()))
    env.setdefault("CONTAINERS_STORAGE_CONF", str(storage_conf()))
    return env


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        capture: bool = True) -> str:
    """Run a build tool; raise ImageBuildError with the tail of its output on failure."""
    proc = subprocess.run(
        argv,
        env=env or container_env(),
        cwd=cwd,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-30:])
        raise ImageBuildError(f"{' '.join(argv[:3])} ... exited with {proc.returncode}\n{tail}")
    return proc.stdout or ""


def image_id(ref: str) -> str | None:
    """Local image id of ref, or None (``podman image exists`` is ~1 s slower here)."""
    proc = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref],
                          env=container_env(), capture_output=True, text=True, check=False)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def image_exists(ref: str) -> bool:
    return image_id(ref) is not None


def rootfs_tarball() -> Path:
    return PYTHON_BASE.tarball()


def build_rootfs_tarball(tarball: Path, packages: tuple[str, ...] = PYTHON_BASE.packages) -> None:
    """debootstrap a minimal bookworm with ``packages`` and tar it (needs root)."""
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} not found: apt-get install debootstrap")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="irisop-rootfs-", dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
             SUITE, str(rootfs), MIRROR])
        # PEP 668 marker: the image is single-purpose, so the marker only gets in the way.
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        # Keep the image small and free of host-specific state.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/info", "var/log"):
            target = rootfs / junk
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(tarball)


def ensure_debian_image(image: DebianImage, *, rebuild: bool = False) -> str:
    """Make sure ``image`` exists in local podman storage; return its ref."""
    if not rebuild and image_exists(image.ref):
        return image.ref
    tarball = image.tarball()
    if rebuild or not tarball.exists():
        build_rootfs_tarball(tarball, image.packages)
    argv = ["podman", "import"]
    for change in image.changes:
        argv += ["--change", change]
    run([*argv, str(tarball), image.ref])
    return image.ref


def ensure_base_image(ref: str = BASE_IMAGE, *, rebuild: bool = False) -> str:
    """The Python base image (``ref`` renames it)."""
    image = PYTHON_BASE if ref == PYTHON_BASE.ref else DebianImage(
        ref, PYTHON_BASE.tarball_name, PYTHON_BASE.packages, PYTHON_BASE.changes)
    return ensure_debian_image(image, rebuild=rebuild)


def ensure_builder_image(*, rebuild: bool = False) -> str:
    """The buildah builder image for in-cluster runtime builds."""
    return ensure_debian_image(BUILDER, rebuild=rebuild)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the Debian bookworm Python base image")
    parser.add_argument("--ref", default=BASE_IMAGE)
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached rootfs tarball")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        ref = ensure_base_image(args.ref, rebuild=args.rebuild)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{ref} ready in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
