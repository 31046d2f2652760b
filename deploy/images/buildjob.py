"""The in-cluster runtime build: manifests for one buildah Job (pure, unit-tested).

A runtime build runs once per serving-code version, so one Job per build is
enough; its name hashes the content key and the destination, which makes "is
this build already running?" a GET. Everything the Job needs arrives as volumes the Job owns, so
deleting the Job (or its TTL expiring) removes them too:

* ConfigMap ``<job>-context``: ``context.tar.gz`` (the Bento plus the
  Containerfile, well under the 1 MiB ConfigMap limit) and, when given, the
  extra CA bundle for TLS-intercepting proxies (mounted for RUN steps only,
  exactly as in local builds);
* Secret ``<job>-push``: a registry auth file made from a fresh credential
  (an ECR token lives 12 h; a build takes minutes, and nothing keeps it after).

Why buildah (see docs/image-pipeline.md §7): the same tool and Containerfile as
local builds, packaged by Debian, and in chroot isolation with vfs storage it
needs neither ``privileged: true``, CAP_SYS_ADMIN nor /dev/fuse. Without
CAP_SYS_ADMIN, buildah runs RUN steps in a user namespace of its own, and the
runtime's default seccomp profile forbids creating one — so seccomp (and
AppArmor, whose default profile denies the mounts inside it) are Unconfined.
That is the one relaxation; otherwise the pod runs as root (a build extracts
layers owned by many users) with the ordinary container capability set, a
read-only root filesystem and no service-account token.

The pushed digest comes back through the container's termination message
(``buildah push --digestfile /dev/termination-log``), so the caller needs
no log scraping to learn what was built.
"""
from __future__ import annotations

import base64
import gzip
import io
import tarfile
from pathlib import Path
from typing import Mapping

from irisop_operator import names

from .runtime import EXTRA_CA_MOUNT, RuntimeBuildError

CONTEXT_ARCHIVE = "context.tar.gz"
CA_KEY = "extra-ca.pem"
CONTAINERFILE_NAME = "runtime.Containerfile"
# buildah hands RUN steps its default capability set (containers.conf
# default_capabilities), so exactly those must be in the pod's bounding set:
# without SETPCAP/NET_BIND_SERVICE, RUN fails with "setting capabilities:
# operation not permitted". Measured: no SYS_ADMIN or MKNOD needed. The rest is dropped.
BUILD_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP",
                      "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
LABEL_BUILD_KEY = f"{names.GROUP}/runtime-key"
# A ConfigMap holds at most 1 MiB; base64 grows the payload by a third.
MAX_CONTEXT_BYTES = 700 * 1024


def build_job_name(key: str, destination: str) -> str:
    """One Job per (content key, destination): the same build for another
    registry is another Job, the same one twice is a GET."""
    import hashlib

    return "irisop-runtime-" + hashlib.sha256(f"{key}\n{destination}".encode()).hexdigest()[:20]


def context_archive(bento_dir: Path, containerfile: Path) -> bytes:
    """The build context as a reproducible tar.gz: ``bento/`` plus the Containerfile."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(containerfile, CONTAINERFILE_NAME)]
        entries += [(p, f"bento/{p.relative_to(bento_dir).as_posix()}") for p in sorted(bento_dir.rglob("*"))]
        for path, arcname in entries:
            info = tar.gettarinfo(str(path), arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def build_script(*, tls_verify: bool, extra_ca: bool) -> str:
    """The shell the builder container runs. Image names arrive through the
    environment ($BASE_IMAGE, $DESTINATION), never spliced into the script."""
    tls = "" if tls_verify else " --tls-verify=false"
    ca = f' -v /context/{CA_KEY}:{EXTRA_CA_MOUNT}:ro --build-arg EXTRA_CA={EXTRA_CA_MOUNT}' if extra_ca else ""
    return "\n".join([
        "set -eu",
        "mkdir -p /work/tmp /work/ctx",
        f"tar -xzf /context/{CONTEXT_ARCHIVE} -C /work/ctx",
        f'buildah bud{tls} --layers=false --build-arg "BASE_IMAGE=$BASE_IMAGE"{ca} \\',
        f'  -f /work/ctx/{CONTAINERFILE_NAME} -t "$DESTINATION" /work/ctx/bento',
        f'buildah push{tls} --digestfile /dev/termination-log "$DESTINATION" "docker://$DESTINATION"',
    ])


def build_job(*, key: str, namespace: str, builder_image: str, base_image: str, destination: str,
              tls_verify: bool = True, extra_ca: bool = False, deadline_seconds: int = 1800,
              ttl_seconds: int = 86400) -> dict:
    """The Job that builds ``destination`` (``registry/repo:tag``) from the context ConfigMap."""
    name = build_job_name(key, destination)
    labels = {names.LABEL_NAME: "irismodel-runtime-build", names.LABEL_MANAGED_BY: names.OPERATOR_NAME,
              LABEL_BUILD_KEY: key[:63]}
    container = {
        "name": "buildah",
        "image": builder_image,
        "command": ["/bin/sh", "-c", build_script(tls_verify=tls_verify, extra_ca=extra_ca)],
        "env": [
            {"name": "BASE_IMAGE", "value": base_image},
            {"name": "DESTINATION", "value": destination},
            {"name": "REGISTRY_AUTH_FILE", "value": "/auth/auth.json"},
            {"name": "STORAGE_DRIVER", "value": "vfs"},
            {"name": "BUILDAH_ISOLATION", "value": "chroot"},
            {"name": "HOME", "value": "/work"},
            {"name": "TMPDIR", "value": "/work/tmp"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": list(BUILD_CAPABILITIES)},
            # Measured on the local node: RuntimeDefault fails the build with
            # "Error during unshare(CLONE_NEWUSER): Operation not permitted".
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
        "volumeMounts": [
            {"name": "work", "mountPath": "/work"},
            # buildah keeps containers-storage at /var/lib/containers as root.
            {"name": "storage", "mountPath": "/var/lib/containers"},
            {"name": "run", "mountPath": "/run"},
            {"name": "context", "mountPath": "/context", "readOnly": True},
            {"name": "auth", "mountPath": "/auth", "readOnly": True},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            # A build is deterministic: a retry would fail the same way, so report at once.
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": ttl_seconds,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [
                        {"name": "work", "emptyDir": {}},
                        {"name": "storage", "emptyDir": {}},
                        {"name": "run", "emptyDir": {"medium": "Memory"}},
                        {"name": "context", "configMap": {"name": f"{name}-context"}},
                        {"name": "auth", "secret": {"secretName": f"{name}-push", "defaultMode": 0o400}},
                    ],
                },
            },
        },
    }


def owned_by_job(job: Mapping) -> list[dict]:
    """ownerReferences that make the Job's garbage collection take its inputs along."""
    meta = job["metadata"]
    return [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": False}]


def context_config_map(job: Mapping, context: bytes, extra_ca: bytes | None = None) -> dict:
    size = len(context) + len(extra_ca or b"")
    if size > MAX_CONTEXT_BYTES:
        raise RuntimeBuildError(f"build context is {size} bytes; a ConfigMap "
                                f"carries at most {MAX_CONTEXT_BYTES} (is a model or data file under serving/?)")
    data = {CONTEXT_ARCHIVE: base64.b64encode(context).decode()}
    if extra_ca is not None:
        data[CA_KEY] = base64.b64encode(extra_ca).decode()
    meta = job["metadata"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
            "metadata": {"name": f"{meta['name']}-context", "namespace": meta["namespace"],
                         "labels": dict(meta["labels"]), "ownerReferences": owned_by_job(job)},
            "binaryData": data}


def push_secret(job: Mapping, auth_file: bytes) -> dict:
    meta = job["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
            "metadata": {"name": f"{meta['name']}-push", "namespace": meta["namespace"],
                         "labels": dict(meta["labels"]), "ownerReferences": owned_by_job(job)},
            "data": {"auth.json": base64.b64encode(auth_file).decode()}}
