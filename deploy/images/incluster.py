"""Build the runtime image inside the cluster: one buildah Job per serving version.

For clusters where nobody runs buildah by hand (the AWS path): ``irisop
images runtime --in-cluster --push REPO`` builds the Bento here (seconds, no
container tooling), then hands the heavy part — the pip install of the
serving stack on the base image — to a Job, and prints the pushed
``repo@digest`` for IRISOP_RUNTIME_IMAGE.

Content-addressed like everything else in the pipeline: the tag is ``r-<key>``
where the key hashes the serving sources, the Containerfile, the base image
reference and the BentoML version. If the registry already has the tag, no
Job is created; if a Job for the key exists (a build in flight, or a second
caller), this waits for it instead of starting another.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from irisop_operator.images.model import push_client
from irisop_operator.images.registry import Reference
from irisop_operator.pipeline import ImageError
from irisop_operator.settings import Settings

from . import buildjob
from .runtime import CONTAINERFILE, RuntimeBuildError, build_bento, registry_auth_file, source_key

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class ClusterBuild:
    image: str  # registry/repo@sha256:...
    key: str
    built: bool  # False when the registry already had the tag
    seconds: float


def build_runtime_in_cluster(api: Any, source_root: Path | None, repository: str, *, base_image: str, builder_image: str,
                             namespace: str, settings: Settings, extra_ca: Path | None = None,
                             timeout: float = 1800, progress: Callable[[str], None] = lambda _msg: None,
                             ) -> ClusterBuild:
    """Make sure ``repository:r-<key>`` exists, building it in a Job if needed."""
    from importlib.metadata import version

    start = time.monotonic()
    dest = Reference.parse(repository.rstrip("/"))
    if extra_ca is not None and not extra_ca.is_file():
        raise RuntimeBuildError(f"extra CA bundle {extra_ca} is not a file")
    # The base image is part of the key by reference: pin it by digest, or a
    # moved tag would not trigger a rebuild.
    key = source_key(source_root, base_image, version("bentoml"))
    tag = f"r-{key}"
    registry = push_client(dest, settings)
    existing = registry.manifest_digest(dest.repository, tag)
    if existing:
        return ClusterBuild(f"{dest.registry}/{dest.repository}@{existing}", key, False, time.monotonic() - start)

    with tempfile.TemporaryDirectory(prefix="irisop-bento-") as tmp:
        bento = build_bento(source_root, Path(tmp), dict(os.environ))
        context = buildjob.context_archive(bento, CONTAINERFILE)
    job = buildjob.build_job(key=key, namespace=namespace, builder_image=builder_image, base_image=base_image,
                             destination=f"{dest.registry}/{dest.repository}:{tag}",
                             tls_verify=not registry.insecure, extra_ca=extra_ca is not None)
    created = _submit(api, job, context, registry_auth_file(dest.registry, registry.username, registry.password),
                      extra_ca.read_bytes() if extra_ca is not None else None)
    progress(f"{'started' if created else 'joined'} Job {namespace}/{job['metadata']['name']}")
    digest = _wait(api, namespace, job["metadata"]["name"], timeout)
    return ClusterBuild(f"{dest.registry}/{dest.repository}@{digest}", key, True, time.monotonic() - start)


def _submit(api: Any, job: dict, context: bytes, auth_file: bytes, extra_ca: bytes | None) -> bool:
    """Create the Job and its inputs; False when a running Job for this build already exists."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    try:
        live = batch.create_namespaced_job(ns, job)
    except ApiException as exc:
        if exc.status == 404:
            raise RuntimeBuildError(f"namespace {ns} not found: kubectl apply -f deploy/runtime-build/namespace.yaml "
                                    f"(or pass --namespace)") from exc
        if exc.status != 409:
            raise
        existing = batch.read_namespaced_job_status(name, ns)
        if not (existing.status.succeeded or existing.status.failed):
            return False  # in flight: wait for it rather than build twice
        # Finished, yet the registry lacks the tag (deleted by a lifecycle
        # policy, or the earlier build failed): this call is the retry.
        batch.delete_namespaced_job(name, ns, propagation_policy="Foreground")
        _wait_gone(batch, ns, name)
        live = batch.create_namespaced_job(ns, job)
    # The inputs are owned by the Job so they go when it does; the pod waits
    # for its volumes, so creating them after the Job is safe.
    owner = {"metadata": {**job["metadata"], "uid": live.metadata.uid}}
    core.create_namespaced_config_map(ns, buildjob.context_config_map(owner, context, extra_ca))
    core.create_namespaced_secret(ns, buildjob.push_secret(owner, auth_file))
    return True


def _wait_gone(batch: Any, namespace: str, name: str, timeout: float = 120) -> None:
    from kubernetes.client.rest import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            batch.read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1.0)
    raise RuntimeBuildError(f"old build Job {namespace}/{name} was not deleted within {timeout:.0f}s")


def _wait(api: Any, namespace: str, name: str, timeout: float) -> str:
    """Poll the Job until it finishes; return the pushed digest or raise with the build log's tail."""
    from kubernetes import client

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        job = batch.read_namespaced_job_status(name, namespace)
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        if job.status.succeeded:
            digest = _termination_message(pods)
            if not digest.startswith("sha256:"):
                raise ImageError("RuntimeBuildFailed", f"Job {namespace}/{name} succeeded without a digest: {digest!r}")
            return digest
        if job.status.failed or time.monotonic() > deadline:
            why = "failed" if job.status.failed else f"did not finish in {timeout:.0f}s"
            raise RuntimeBuildError(f"runtime build Job {namespace}/{name} {why}\n{_log_tail(core, namespace, pods)}")
        time.sleep(2.0)  # a CLI waiting on a build of minutes, not a handler


def _termination_message(pods: list) -> str:
    for pod in pods:
        for status in pod.status.container_statuses or []:
            term = status.state.terminated if status.state else None
            if term is not None and term.exit_code == 0 and term.message:
                return term.message.strip()
    return ""


def _log_tail(core: Any, namespace: str, pods: list) -> str:
    for pod in pods:
        try:
            return core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=LOG_TAIL_LINES)
        except Exception as exc:  # noqa: BLE001 - the log is a courtesy; the failure is already known
            return f"(no build log: {exc})"
    return "(no build pod was created: check the Job's events)"
