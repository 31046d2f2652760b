"""Find (or build, once) the executables the local cluster runs.

Kubernetes components come from deploy/local/build-kube.sh, which builds them
from the Go module proxy at a pinned release and caches them under
cache_dir(); everything else (etcd, containerd, runc, CNI plugins) comes from
Debian packages.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .. import versions
from .process import ProcessError, cache_dir

KUBE_VERSION = versions.kubernetes()
BUILD_SCRIPT = Path(__file__).with_name("build-kube.sh")

CONTROL_PLANE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
NODE_BINARIES = ("kubelet", "kube-proxy")


class MissingBinary(ProcessError):
    """A required executable is neither built nor installed."""


def kube_bin_dir() -> Path:
    return cache_dir() / "kube" / KUBE_VERSION / "bin"


def missing_kube_binaries(names: tuple[str, ...] = CONTROL_PLANE_BINARIES) -> list[str]:
    return [n for n in names if not os.access(kube_bin_dir() / n, os.X_OK)]


def ensure_kube_binaries(names: tuple[str, ...] = CONTROL_PLANE_BINARIES, build: bool = True) -> Path:
    """Return the bin dir holding every name, building the missing ones.

    A cold build takes many minutes (see docs/local-cluster.md), so callers
    that must stay fast (unit tests, `status`) pass build=False.
    """
    missing = missing_kube_binaries(names)
    if not missing:
        return kube_bin_dir()
    if not build:
        raise MissingBinary(
            f"missing {', '.join(missing)} in {kube_bin_dir()}; run {BUILD_SCRIPT} {' '.join(names)}"
        )
    try:
        subprocess.run(
            ["bash", str(BUILD_SCRIPT), *names],
            check=True,
            env={**os.environ, "KUBERNETES_VERSION": KUBE_VERSION, "IRISOP_CACHE": str(cache_dir())},
        )
    except subprocess.CalledProcessError as exc:
        raise MissingBinary(f"{BUILD_SCRIPT} failed with exit code {exc.returncode}") from exc
    return kube_bin_dir()


def system_binary(name: str, *, package: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """Path of a Debian-provided executable, or a one-line hint to install it."""
    found = shutil.which(name, path=os.pathsep.join((*extra_dirs, os.environ.get("PATH", ""))))
    if found is None:
        raise MissingBinary(f"{name} not found; install the Debian package {package}")
    return found


NODE_RUNTIME_SCRIPT = Path(__file__).with_name("build-node-runtime.sh")


def containerd_bin_dir() -> Path:
    return cache_dir() / "containerd" / versions.containerd() / "bin"


def coredns_binary() -> Path:
    return cache_dir() / "coredns" / versions.coredns() / "bin" / "coredns"


def ensure_node_runtime(build: bool = True) -> Path:
    """containerd 2.x (with its runc shim and ctr) and CoreDNS, built from their
    Go modules once (deploy/local/build-node-runtime.sh); return containerd's
    bin directory. Debian bookworm's containerd is 1.6: a kops 1.36 node runs 2.2."""
    needed = [containerd_bin_dir() / n for n in ("containerd", "containerd-shim-runc-v2", "ctr")]
    needed.append(coredns_binary())
    if all(os.access(p, os.X_OK) for p in needed):
        return containerd_bin_dir()
    if not build:
        raise MissingBinary(f"containerd/CoreDNS not built; run {NODE_RUNTIME_SCRIPT}")
    run_build_script(NODE_RUNTIME_SCRIPT)
    return containerd_bin_dir()


def run_build_script(script: Path) -> None:
    """Run one of the build-*.sh scripts (each builds once into cache_dir());
    a failure is a MissingBinary ending with the script's stderr."""
    try:
        subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True,
                       env={**os.environ, "IRISOP_CACHE": str(cache_dir())})
    except subprocess.CalledProcessError as exc:
        raise MissingBinary(f"{script} failed: {exc.stderr.strip()[-2000:]}") from exc
