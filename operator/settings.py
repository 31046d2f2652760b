"""One settings object, read from the environment once at start-up.

Every knob the operator has lives here with its environment variable, default
and meaning, so `docs/configuration.md` and the code cannot drift apart.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Mapping

from irisop_serving.contract import MAX_MODEL_BYTES

# Model images the ECR lifecycle policy keeps per repository; the AWS
# bootstrap's keep_images defaults to it too (deploy/aws/config.py).
DEFAULT_ECR_KEEP_IMAGES = 20


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())



@dataclass(frozen=True)
class Settings:
    # Namespaces to watch; empty means the whole cluster (needs a ClusterRole).
    watch_namespaces: tuple[str, ...] = field(default=(), metadata={"env": "IRISOP_WATCH_NAMESPACES", "parse": _split})
    # The BentoML runtime image (by digest) that model images are layered on.
    runtime_image: str = field(default="", metadata={"env": "IRISOP_RUNTIME_IMAGE"})
    # Where model images go when an IrisModel names no spec.repository (e.g. an ECR repository URI).
    default_repository: str = field(default="", metadata={"env": "IRISOP_DEFAULT_REPOSITORY"})
    # Registries reached over plain HTTP (the local registry only; never ECR).
    insecure_registries: tuple[str, ...] = field(default=(), metadata={"env": "IRISOP_INSECURE_REGISTRIES", "parse": _split})
    # Basic-auth for non-ECR registries; the password comes from a mounted file, never a CR or a log line.
    registry_username: str = field(default="", metadata={"env": "IRISOP_REGISTRY_USERNAME"})
    registry_password_file: str = field(default="", metadata={"env": "IRISOP_REGISTRY_PASSWORD_FILE"})
    # How many model images the ECR lifecycle policy keeps per repository.
    ecr_keep_images: int = field(default=DEFAULT_ECR_KEEP_IMAGES, metadata={"env": "IRISOP_ECR_KEEP_IMAGES", "parse": int})
    # Registry hosts to treat as ECR although their name is not *.dkr.ecr.*.amazonaws.com:
    # "host=registryId/region,..." (e.g. "127.0.0.1:5000=123456789012/us-east-1").
    # The ECR API (repository, lifecycle policy, auth token) is called for that
    # registry id/region while blobs and manifests go to the host: this pairs
    # moto's ECR API with a local registry in tests, or fronts ECR with a pull-through proxy.
    ecr_registry_map: tuple[str, ...] = field(default=(), metadata={"env": "IRISOP_ECR_REGISTRY_MAP", "parse": _split})
    # Scratch space for downloaded artifacts (an emptyDir in the operator pod).
    work_dir: str = field(default="/tmp/irisop", metadata={"env": "IRISOP_WORK_DIR"})
    # Largest model file the operator will download.
    max_artifact_bytes: int = field(default=MAX_MODEL_BYTES, metadata={"env": "IRISOP_MAX_ARTIFACT_BYTES", "parse": int})
    # Seconds to gather a burst of child events (a new Deployment makes several
    # within a second) into one drift check and at most one status write.
    settle_seconds: float = field(default=1.0, metadata={"env": "IRISOP_SETTLE_SECONDS", "parse": float})
    # Port of the Prometheus metrics endpoint (0 disables it); kopf's liveness endpoint uses 8080.
    metrics_port: int = field(default=9090, metadata={"env": "IRISOP_METRICS_PORT", "parse": int})
    # kopf peering (leader election) so that two operator replicas are safe; off for local runs.
    peering: str = field(default="", metadata={"env": "IRISOP_PEERING"})
    # The cluster domain used to build in-cluster URLs.
    cluster_domain: str = field(default="cluster.local", metadata={"env": "IRISOP_CLUSTER_DOMAIN"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            parse = f.metadata.get("parse", str)
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"{f.metadata['env']}={raw!r}: {exc}") from exc
        return cls(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
