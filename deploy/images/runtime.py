"""The runtime image: BentoML + the serving code, built once per serving version.

Heavy and rare (a pip install of scikit-learn and BentoML), so it is keyed by
a hash of everything that goes into it — the ``serving/`` sources, the
Containerfile template, the base image id and the BentoML version — and a
build is skipped when ``localhost/irisop/runtime:r-<key>`` already exists.

Steps: ``bentoml build -f serving/bentofile.yaml .`` into a throw-away
BENTOML_HOME, then ``buildah bud`` of deploy/images/runtime.Containerfile with
the Bento as context, on the Debian base image. An *extra CA bundle* (for
TLS-intercepting proxies) is mounted for the build only, never baked in.

Nothing is read from a checkout: the Containerfile is this package's data and
the serving sources are the installed ``irisop_serving`` package (staged into
a temporary build context as ``serving/``), so ``irisop images runtime`` works
from a wheel install too. A ``source_root`` argument (a tree holding
``serving/``) overrides the serving sources, e.g. for a benchmark's variant.

The model is not in this image; ``irisop_operator.images.model`` layers it on
top through the registry API, in seconds.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .content import LocalImage, content_key, source_files

RUNTIME_REPO = "localhost/irisop/runtime"
KEEP_RUNTIME_IMAGES = 3  # local builds kept after a new one (see prune_runtime_images)
# Package data of irisop_deploy.images (absolute, so `root / CONTAINERFILE` is it too).
CONTAINERFILE = Path(__file__).resolve().with_name("runtime.Containerfile")
# The names the content key hashes the files under (stable across install layouts).
_CONTAINERFILE_KEY_NAME = "deploy/images/runtime.Containerfile"
SERVING = "serving"  # the serving package's folder name inside the Bento build context
BENTOFILE = Path(SERVING) / "bentofile.yaml"
# Where the extra CA bundle appears inside build containers (RUN steps only).
EXTRA_CA_MOUNT = "/run/irisop-extra-ca.pem"


class RuntimeBuildError(RuntimeError):
    """bentoml or buildah failed; the message carries the tail of their output."""


def serving_sources(source_root: Path | None = None) -> Path:
    """The serving package's folder: ``source_root/serving``, or the installed irisop_serving."""
    if source_root is not None:
        return source_root.resolve() / SERVING
    spec = importlib.util.find_spec("irisop_serving")  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeBuildError("the irisop_serving package is not installed")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def source_key(source_root: Path | None, base_image_id: str, bentoml_version: str) -> str:
    """Content hash of everything the runtime image is built from."""
    serving = serving_sources(source_root)
    named = [(_CONTAINERFILE_KEY_NAME, CONTAINERFILE)]
    named += [(f"{SERVING}/{p.relative_to(serving)}", p) for p in source_files(serving)]
    return content_key(f"base={base_image_id}\nbentoml={bentoml_version}\n", named)


def buildah_argv(context: Path, containerfile: Path, tag: str, base_image: str,
                 extra_ca: Path | None = None, *, layers: bool = True) -> list[str]:
    """The buildah command line (pure: unit-tested)."""
    argv = [
        "buildah", "bud",
        "--isolation", "chroot",  # no user namespaces or nested cgroups needed
        "--runtime", "runc",  # crun refuses hybrid cgroups on these VMs
        f"--layers={'true' if layers else 'false'}",
        "--build-arg", f"BASE_IMAGE={base_image}",
        "-f", str(containerfile),
        "-t", tag,
    ]
    if extra_ca is not None:
        # Mounted for RUN steps only and referenced through a build arg, so the
        # bundle never lands in a layer and the image stays proxy-agnostic.
        argv += ["-v", f"{extra_ca.resolve()}:{EXTRA_CA_MOUNT}:ro", "--build-arg", f"EXTRA_CA={EXTRA_CA_MOUNT}"]
    argv.append(str(context))
    return argv


def _run(argv: Sequence[str], *, env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeBuildError(f"{argv[0]} {argv[1]} exited with {proc.returncode}\n{tail}")
    return proc.stdout


def build_bento(source_root: Path | None, home: Path, env: dict[str, str]) -> Path:
    """``bentoml build`` of the serving sources into ``home``; return the Bento directory.

    The build context is a copy of the serving package as ``serving/`` (what
    bentofile.yaml's ``include`` and ``service`` name), made under ``home``.
    """
    serving = serving_sources(source_root)
    if not (serving / BENTOFILE.name).exists():
        raise RuntimeBuildError(f"{serving / BENTOFILE.name} not found")
    context = home / "context"
    for path in source_files(serving):
        target = context / SERVING / path.relative_to(serving)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    bentoml = shutil.which("bentoml") or "bentoml"
    _run([bentoml, "build", "-f", str(BENTOFILE), "."], env={**env, "BENTOML_HOME": str(home)}, cwd=context)
    bentos = [p.parent for p in (home / "bentos").glob("*/*/bento.yaml")]
    if len(bentos) != 1:
        raise RuntimeBuildError(f"expected one Bento under {home}, found {len(bentos)}")
    return bentos[0]


def ensure_runtime_image(source_root: Path | None = None, *, base_image: str | None = None,
                         extra_ca: Path | None = None, rebuild: bool = False, layers: bool = True,
                         tag: str | None = None) -> LocalImage:
    """Build the runtime image unless one with the same content key exists."""
    from importlib.metadata import version

    from .baseimage import BASE_IMAGE, container_env, ensure_base_image, image_id

    start = time.monotonic()
    env = container_env()
    base_image = base_image or ensure_base_image(BASE_IMAGE)
    base_id = image_id(base_image)
    if base_id is None:
        raise RuntimeBuildError(f"base image {base_image} not in local storage")
    key = source_key(source_root, base_id, version("bentoml"))
    ref = tag or f"{RUNTIME_REPO}:r-{key}"
    if not rebuild and image_id(ref):
        return LocalImage(ref, key, built=False, seconds=time.monotonic() - start)
    if extra_ca is not None and not extra_ca.is_file():
        raise RuntimeBuildError(f"extra CA bundle {extra_ca} is not a file")
    with tempfile.TemporaryDirectory(prefix="irisop-bento-") as tmp:
        bento = build_bento(source_root, Path(tmp), env)
        argv = buildah_argv(bento, CONTAINERFILE, ref, base_image, extra_ca, layers=layers)
        _run(argv, env=env)
    if tag is None:
        prune_runtime_images(KEEP_RUNTIME_IMAGES, env)
    return LocalImage(ref, key, built=True, seconds=time.monotonic() - start)


def prune_runtime_images(keep: int, env: dict[str, str], repo: str = RUNTIME_REPO) -> list[str]:
    """Remove all but the newest ``keep`` runtime images: every serving change makes
    a new ~500 MB image (mostly shared layers), and local disks are small."""
    proc = subprocess.run(
        ["podman", "images", "--filter", f"reference={repo}", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}"],
        env=env, capture_output=True, text=True, check=False)
    rows = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    refs = [ref for ref, _ in sorted(rows, key=lambda r: r[1], reverse=True)]
    removed = []
    for ref in refs[keep:]:
        # Fails harmlessly when a container still uses the image.
        if subprocess.run(["podman", "rmi", ref], env=env, capture_output=True, check=False).returncode == 0:
            removed.append(ref)
    return removed


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def host_ca_bundle() -> Path | None:
    """The host's CA bundle, the default extra CA for builds behind a TLS-intercepting proxy."""
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None


def publish_runtime_image(source_root: Path | None, repository: str, *, extra_ca: Path | None = None,
                          username: str = "", password: str = "", tls_verify: bool = True) -> str:
    """Build the runtime image unless it exists, push it as ``repository:r-<key>``; return ``repository@digest``."""
    built = ensure_runtime_image(source_root, extra_ca=extra_ca)
    digest = push_local_image(built.ref, f"{repository}:r-{built.key}", username=username, password=password,
                              tls_verify=tls_verify)
    return f"{repository}@{digest}"


def registry_auth_file(registry: str, username: str, password: str) -> bytes:
    """A containers-auth.json (skopeo, buildah) for one registry; no entry without a username."""
    auths = {registry: {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}} if username else {}
    return json.dumps({"auths": auths}).encode()


def push_local_image(ref: str, destination: str, *, username: str = "", password: str = "",
                     tls_verify: bool = True) -> str:
    """Copy a local image to ``registry/repo:tag`` with skopeo; return its manifest digest."""
    from .baseimage import container_env

    registry = destination.split("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="irisop-push-") as tmp:
        digest_file = Path(tmp) / "digest"
        argv = ["skopeo", "copy", "--quiet", f"--dest-tls-verify={'true' if tls_verify else 'false'}",
                "--digestfile", str(digest_file)]
        if username:
            # An auth file (0600, deleted with tmp) rather than --dest-creds, which
            # would put the password (an ECR token, say) in every `ps` listing.
            authfile = Path(tmp) / "auth.json"
            authfile.touch(mode=0o600)
            authfile.write_bytes(registry_auth_file(registry, username, password))
            argv += ["--dest-authfile", str(authfile)]
        argv += [f"containers-storage:{ref}", f"docker://{destination}"]
        _run(argv, env=container_env())
        return digest_file.read_text().strip()
