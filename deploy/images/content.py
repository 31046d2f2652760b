"""What a locally built image is, and the content key that decides whether to build it.

Both image builds here (the BentoML runtime, the operator) skip the build when
an image tagged with the hash of everything that goes into it already exists.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

# Never part of an image's content: caches Python and pytest write beside the sources.
SKIP_PARTS = frozenset({"__pycache__", ".pytest_cache"})


@dataclass(frozen=True)
class LocalImage:
    ref: str  # local containers-storage reference
    key: str
    built: bool  # False when an image with this key already existed
    seconds: float


def source_files(directory: Path) -> list[Path]:
    """Every file below ``directory`` that is source (no caches, no bytecode), sorted."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not SKIP_PARTS.intersection(p.relative_to(directory).parts)
                  and p.suffix != ".pyc")


def content_key(header: str, files: Iterable[tuple[str, Path]]) -> str:
    """20 hex characters over ``header`` and each (name, file): names and bytes both count."""
    digest = hashlib.sha256(header.encode())
    for name, path in files:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]
