"""Model image = runtime image + one layer with the artifact, assembled via the registry API.

No build tool, no privileged pod, no base-layer bytes moved: the steps are

1. resolve the runtime image to a manifest digest;
2. tag = ``m-`` + sha256(runtime digest, model sha256)[:20]; if the tag
   exists, return it (``reused=True``) — nothing is uploaded;
3. mount the runtime's layers into the target repository (or check they are
   there; copy them only when the runtime lives in another registry);
4. upload the deterministic model layer and a config derived from the
   runtime's (IRISOP_MODEL_DIR, labels);
5. put the manifest under the content tag; the Deployment runs it by digest.

ECR repositories get a fresh authorization token for every call of
``ensure_model_image`` (see ``ecr.py``).
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from irisop_serving.contract import ENV_MODEL_DIR, METADATA_FILE, MODEL_DIR, artifact_files

from ..conditions import ARTIFACT_UNAVAILABLE, REGISTRY_ERROR, REGISTRY_UNAUTHORIZED
from ..conditions import RUNTIME_NOT_CONFIGURED as NO_RUNTIME
from ..pipeline import ImageError, ImageResult, VerifiedArtifact
from ..settings import Settings
from . import ecr
from .layer import build_model_layer
from .registry import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Reference, RegistryClient

TAG_PREFIX = ecr.MODEL_TAG_PREFIX
LABEL_MODEL_SHA = "dev.irisop.model.sha256"
LABEL_MODEL_FORMAT = "dev.irisop.model.format"
LABEL_RUNTIME = "dev.irisop.runtime.digest"
_LAYER_TYPES = {
    OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def content_tag(runtime_digest: str, model_sha256: str) -> str:
    """The model image tag: a pure function of what the image contains."""
    return TAG_PREFIX + hashlib.sha256(f"{runtime_digest}\n{model_sha256}".encode()).hexdigest()[:20]


def client_for(registry: str, settings: Settings) -> RegistryClient:
    """A client with credentials fresh for this push (ECR token) or from settings."""
    insecure = registry in settings.insecure_registries
    reg = ecr.ecr_registry(registry, settings)
    if reg is not None:
        username, password = ecr.fresh_credentials(ecr.ecr_client(reg), reg)
    else:
        username = settings.registry_username
        password = ""
        if settings.registry_password_file:
            try:
                password = Path(settings.registry_password_file).read_text().strip()
            except OSError as exc:
                raise ImageError(REGISTRY_UNAUTHORIZED, f"cannot read registry password file: {exc}") from exc
    return RegistryClient(registry, username=username, password=password, insecure=insecure)


def push_client(target: Reference, settings: Settings) -> RegistryClient:
    """A client for pushing to ``target.repository``: on ECR the repository is
    ensured first (scan on push, lifecycle policy), and the token is fresh."""
    reg = ecr.ecr_registry(target.registry, settings)
    if reg is not None:
        ecr.ensure_repository(ecr.ecr_client(reg), reg, target.repository, settings.ecr_keep_images)
    return client_for(target.registry, settings)


@dataclass(frozen=True)
class _Runtime:
    ref: Reference
    digest: str
    manifest: dict
    media_type: str
    config: dict


def _resolve_runtime(client: RegistryClient, ref: Reference) -> _Runtime:
    manifest, media_type, digest = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
    if media_type in (OCI_INDEX, DOCKER_LIST):
        # Multi-arch runtime: the operator's nodes are linux/amd64 (kops default).
        wanted = next((m for m in manifest.get("manifests", [])
                       if m.get("platform", {}).get("os") == "linux"
                       and m.get("platform", {}).get("architecture") == "amd64"), None)
        if wanted is None:
            raise ImageError(REGISTRY_ERROR, f"{ref} has no linux/amd64 image")
        manifest, media_type, digest = client.get_manifest(ref.repository, wanted["digest"])
    if media_type not in _LAYER_TYPES:
        raise ImageError(REGISTRY_ERROR, f"{ref}: unsupported manifest type {media_type!r}")
    config = json.loads(client.get_blob(ref.repository, manifest["config"]["digest"]))
    return _Runtime(ref, digest, manifest, media_type, config)


def _model_config(runtime: _Runtime, artifact: VerifiedArtifact, diff_id: str) -> dict:
    config = copy.deepcopy(runtime.config)
    inner = config.setdefault("config", {})
    env = [e for e in inner.get("Env") or [] if not e.startswith(f"{ENV_MODEL_DIR}=")]
    inner["Env"] = env + [f"{ENV_MODEL_DIR}={MODEL_DIR}"]
    inner["Labels"] = {
        **(inner.get("Labels") or {}),
        LABEL_MODEL_SHA: artifact.sha256,
        LABEL_MODEL_FORMAT: artifact.metadata.format,
        LABEL_RUNTIME: runtime.digest,
    }
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
    # Keep "created" from the runtime so the config (and digest) depend on content only.
    config.setdefault("history", []).append(
        {"created": config.get("created", "1970-01-01T00:00:00Z"),
         "created_by": f"irisop: model {artifact.sha256[:12]} at {MODEL_DIR}"}
    )
    return config


def _ensure_base_layers(target: RegistryClient, repo: str, runtime: _Runtime, source: RegistryClient) -> None:
    same_registry = source.registry == target.registry
    for layer in runtime.manifest["layers"] + [runtime.manifest["config"]]:
        digest = layer["digest"]
        if same_registry and runtime.ref.repository == repo:
            continue  # already in this repository by construction
        if same_registry and target.mount_blob(repo, digest, runtime.ref.repository):
            continue
        if target.blob_exists(repo, digest):
            continue
        # Different registry (or mount declined): copy once; later pushes find it present.
        target.upload_blob(repo, source.get_blob(runtime.ref.repository, digest), digest)


def ensure_model_image(artifact: VerifiedArtifact, repository: str, settings: Settings) -> ImageResult:
    """Return the model image for ``artifact`` in ``repository``, pushing it only if missing."""
    if not settings.runtime_image:
        raise ImageError(NO_RUNTIME, "IRISOP_RUNTIME_IMAGE is not set: build and push the runtime image first")
    target_ref = Reference.parse(repository.rstrip("/"))
    if target_ref.tag or target_ref.digest:
        raise ImageError(REGISTRY_ERROR, f"repository {repository!r} must not carry a tag or digest")
    runtime_ref = Reference.parse(settings.runtime_image)

    target = push_client(target_ref, settings)
    source = target if runtime_ref.registry == target_ref.registry else client_for(runtime_ref.registry, settings)

    runtime = _resolve_runtime(source, runtime_ref)
    tag = content_tag(runtime.digest, artifact.content_key)
    existing = target.manifest_digest(target_ref.repository, tag)
    if existing:
        return ImageResult(image=f"{target_ref.registry}/{target_ref.repository}@{existing}",
                           tag=tag, digest=existing, reused=True)

    files = [*artifact_files(artifact.metadata), METADATA_FILE]  # model file, check set (if any), model.json
    try:
        layer = build_model_layer(artifact.local_dir, files)
    except OSError as exc:
        # The work dir is scratch space (an emptyDir): fetching again restores it.
        raise ImageError(ARTIFACT_UNAVAILABLE, f"verified artifact vanished from {artifact.local_dir}: {exc}",
                         transient=True) from exc
    config_bytes = json.dumps(_model_config(runtime, artifact, layer.diff_id), sort_keys=True,
                              separators=(",", ":")).encode()

    _ensure_base_layers(target, target_ref.repository, runtime, source)
    target.upload_blob(target_ref.repository, layer.data, layer.digest)
    config_digest = target.upload_blob(target_ref.repository, config_bytes)

    manifest = copy.deepcopy(runtime.manifest)
    manifest["config"] = {**manifest["config"], "digest": config_digest, "size": len(config_bytes)}
    manifest["layers"] = manifest["layers"] + [
        {"mediaType": _LAYER_TYPES[runtime.media_type], "digest": layer.digest, "size": layer.size}
    ]
    manifest.pop("annotations", None)  # the runtime's annotations describe the runtime build, not this image
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = target.put_manifest(target_ref.repository, tag, body, runtime.media_type)
    return ImageResult(image=f"{target_ref.registry}/{target_ref.repository}@{digest}",
                       tag=tag, digest=digest, reused=False)
