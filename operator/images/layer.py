"""The model layer: a deterministic tar.gz holding the artifact under models/current/.

Deterministic (sorted entries, fixed mtime/uid/gid/mode, gzip without name or
timestamp) so the same artifact always yields the same blob digest: pushing it
twice uploads nothing new, and the image digest depends only on content.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from irisop_serving.contract import MODEL_DIR

# Where the artifact lands inside the image (a tar path: no leading "/"); the
# serving container reads ENV_MODEL_DIR, which the model image's config sets to MODEL_DIR.
MODEL_DIR_IN_IMAGE = MODEL_DIR.lstrip("/")
# 2000-01-01: a fixed, non-zero mtime (some tools treat 0 as "unset").
FIXED_MTIME = 946684800


@dataclass(frozen=True)
class Layer:
    data: bytes  # the gzip blob as uploaded
    digest: str  # sha256 of data (blob/manifest digest)
    diff_id: str  # sha256 of the uncompressed tar (config rootfs.diff_ids)

    @property
    def size(self) -> int:
        return len(self.data)


def _info(name: str, *, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644  # world-readable: the server runs as uid 10001
    info.size = size
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_model_layer(artifact_dir: Path, files: list[str]) -> Layer:
    """Pack ``files`` (names inside artifact_dir) into a reproducible layer."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = MODEL_DIR_IN_IMAGE.split("/")
        for depth in range(1, len(parts) + 1):
            tar.addfile(_info("/".join(parts[:depth]) + "/", is_dir=True))
        for name in sorted(files):
            if "/" in name or name in {"", ".", ".."}:
                raise ValueError(f"artifact file name {name!r} must be a plain file name")
            payload = (artifact_dir / name).read_bytes()
            tar.addfile(_info(f"{MODEL_DIR_IN_IMAGE}/{name}", is_dir=False, size=len(payload)), io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    # mtime=0 and no filename: the gzip header carries nothing time- or path-dependent.
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6, filename="") as zf:
        zf.write(tar_bytes)
    data = gz.getvalue()
    return Layer(
        data=data,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        diff_id="sha256:" + hashlib.sha256(tar_bytes).hexdigest(),
    )
