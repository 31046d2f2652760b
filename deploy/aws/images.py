"""The operator's two images, published to the cluster's ECR repositories by `create`.

- the operator image (repository Dockerfile, built by podman:
  irisop_deploy.images.operatorimage), pushed to `operator_repository` as `o-<key>`;
- the BentoML runtime image the operator layers models onto (built by
  buildah: irisop_deploy.images.runtime), pushed to `model_repository` as
  `r-<key>`, where the operator's own model images live (its ECR lifecycle
  policy never expires `r-*`, and the operator's IRSA policy reads that
  repository only).

Both are built here, on the admin's machine, not by the in-cluster build Job:
the operator image must exist before the operator can be installed, and an
in-cluster build needs a builder image in a registry first, so a cluster
would have to come up, pull a builder and build before the first model could
be served. Building on the host also runs while nothing costs money yet if it
fails (this step comes before kops).

Each key is a content hash of what goes into the image (sources, build file,
base image id), computed without building: when the registry already has
that tag, the image is reused and nothing is built or pushed. Every push
asks ECR for a fresh authorization token.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
# The operator reads its runtime image from this variable (irisop_operator.settings).
RUNTIME_IMAGE_ENV = "IRISOP_RUNTIME_IMAGE"


@dataclass(frozen=True)
class Recipe:
    """How to name one image's content and how to build it."""

    kind: str  # "operator" or "runtime"
    tag_prefix: str  # "o-" / "r-": the tag is prefix + key
    key: Callable[[], str]  # content key, computed without building
    build: Callable[[], str]  # builds unless present; returns a local containers-storage reference
    builder: str  # what builds it, for the progress line


@dataclass(frozen=True)
class Published:
    ref: str  # registry/repository@sha256:...
    tag: str
    reused: bool  # the tag was already in the registry: nothing built or pushed

    @property
    def digest(self) -> str:
        return self.ref.rpartition("@")[2]


class Publisher(Protocol):
    def publish(self, recipe: Recipe, repository: str) -> Published: ...


class RegistryPublisher:
    """Publishes through the operator's registry code: ECR repository ensured, a fresh token per push.

    keep_images is the cluster's `keep_images`: the repository's lifecycle
    policy is re-asserted on every push, and must be the bootstrap's document.
    """

    def __init__(self, keep_images: int | None = None) -> None:
        self.keep_images = keep_images

    def publish(self, recipe: Recipe, repository: str) -> Published:
        from irisop_operator.images.model import push_client
        from irisop_operator.images.registry import Reference
        from irisop_deploy.images.runtime import push_local_image
        from irisop_operator.settings import Settings

        settings = Settings.from_env(os.environ)
        if self.keep_images is not None:
            settings = dataclasses.replace(settings, ecr_keep_images=self.keep_images)
        dest = Reference.parse(repository)
        tag = recipe.tag_prefix + recipe.key()
        # push_client ensures the repository and fetches a token for this call only.
        existing = push_client(dest, settings).manifest_digest(dest.repository, tag)
        if existing:
            return Published(f"{repository}@{existing}", tag, reused=True)
        local = recipe.build()
        client = push_client(dest, settings)  # a fresh token: the build may have outlived the last one
        digest = push_local_image(local, f"{repository}:{tag}", username=client.username,
                                  password=client.password, tls_verify=not client.insecure)
        return Published(f"{repository}@{digest}", tag, reused=False)


def _extra_ca() -> Path | None:
    """CA bundle for TLS-intercepting proxies, mounted for builds only (never in a layer)."""
    from irisop_deploy.images.runtime import host_ca_bundle

    configured = os.environ.get("IRISOP_BUILD_CA_BUNDLE")
    return Path(configured) if configured else host_ca_bundle()


def _base_image_id() -> str:
    from irisop_deploy.images.baseimage import BASE_IMAGE, ensure_base_image, image_id

    found = image_id(ensure_base_image(BASE_IMAGE))
    if found is None:
        raise RuntimeError(f"base image {BASE_IMAGE} is not in local storage after building it")
    return found


def operator_recipe(repo_root: Path = REPO_ROOT) -> Recipe:
    from irisop_deploy.images import operatorimage

    return Recipe(
        kind="operator", tag_prefix="o-",
        key=lambda: operatorimage.context_key(repo_root.resolve(), _base_image_id()),
        build=lambda: operatorimage.ensure_operator_image(repo_root, extra_ca=_extra_ca()).ref,
        builder="podman build of the Dockerfile",
    )


def runtime_recipe(repo_root: Path = REPO_ROOT) -> Recipe:
    from importlib.metadata import version

    from irisop_deploy.images import runtime

    return Recipe(
        kind="runtime", tag_prefix="r-",
        key=lambda: runtime.source_key(repo_root.resolve(), _base_image_id(), version("bentoml")),
        build=lambda: runtime.ensure_runtime_image(repo_root, extra_ca=_extra_ca()).ref,
        builder="bentoml build + buildah bud of deploy/images/runtime.Containerfile",
    )


def default_recipes() -> list[Recipe]:
    return [operator_recipe(), runtime_recipe()]
