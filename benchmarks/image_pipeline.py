"""New model version → pushed image: the layer approach vs a full buildah build, same run.

Starts its own moto_server (S3 + ECR API) and docker-registry (htpasswd) on
free loopback ports, makes sure the runtime image exists (cached) and is in
the registry, trains a fresh model (new seed each run), then times:

  layer        fetch_artifact + ensure_model_image for the new model (a push)
  cache hit    the same two calls again (tag exists: no push)
  full build   bentoml build + buildah bud --layers=false of the same Bento with
               the model copied in + skopeo push (what a naive pipeline does)

Run from the repo root:  python benchmarks/image_pipeline.py [--skip-full]
Smoke mode (CI: seconds once the runtime image is cached, no targets):
                         python benchmarks/image_pipeline.py --smoke
Needs: podman, buildah, skopeo, docker-registry, moto_server, bentoml.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"layer_s": 5.0, "ratio": 20.0, "cache_hit_s": 1.0}


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def _upload(s3, directory: Path, bucket: str, prefix: str) -> str:
    for path in sorted(directory.iterdir()):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}/"


def full_build(art_dir: Path, model_file: str, registry: str, user: str, password: str,
               extra_ca: Path | None) -> float:
    """bentoml build + buildah bud (no layer cache) with the model baked in + push; seconds."""
    from irisop_deploy.images.baseimage import BASE_IMAGE, container_env
    from irisop_deploy.images.runtime import CONTAINERFILE, _run, build_bento, buildah_argv, push_local_image

    env = container_env()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="irisop-bench-") as tmp:
        bento = build_bento(REPO_ROOT, Path(tmp) / "home", env)
        models = bento / "model-artifact"
        models.mkdir()
        for name in (model_file, "model.json"):
            shutil.copy2(art_dir / name, models / name)
        containerfile = Path(tmp) / "Containerfile"
        containerfile.write_text((REPO_ROOT / CONTAINERFILE).read_text()
                                 + "\nCOPY model-artifact/ /models/current/\n")
        tag = f"localhost/irisop/bench-full:{secrets.token_hex(4)}"
        _run(buildah_argv(bento, containerfile, tag, BASE_IMAGE, extra_ca, layers=False), env=env)
    push_local_image(tag, f"{registry}/iris/bench-full:{tag.rsplit(':', 1)[1]}", username=user,
                     password=password, tls_verify=False)
    elapsed = time.monotonic() - start
    _run(["podman", "rmi", "-f", tag], env=env)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="only time the layer approach")
    parser.add_argument("--smoke", action="store_true", help="layer + cache hit only, no targets (CI)")
    parser.add_argument("--extra-ca", type=Path,
                        default=Path(os.environ.get("IRISOP_BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")))
    args = parser.parse_args(argv)
    extra_ca = args.extra_ca if args.extra_ca.is_file() else None

    import boto3

    from irisop_deploy.local.moto import aws_env, moto_server
    from irisop_deploy.local.process import exit_on_sigterm, free_port
    from irisop_deploy.local.registry import local_registry
    from irisop_model.artifact import write_artifact
    from irisop_model.training import TrainParams, train
    from irisop_operator.artifact import fetch_artifact
    from irisop_operator.images.model import ensure_model_image
    from irisop_deploy.images.runtime import ensure_runtime_image, push_local_image
    from irisop_operator.pipeline import ModelSource
    from irisop_operator.settings import Settings

    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="irisop-bench-"))
    moto_port, reg_port = free_port(), free_port()
    password = secrets.token_hex(12)
    moto = moto_server(moto_port, home=work / "moto")
    registry = local_registry(reg_port, home=work / "registry", users={"bench": password})
    host = f"127.0.0.1:{reg_port}"
    os.environ.update(aws_env(moto_port))
    try:
        moto.start()
        registry.start()
        runtime, runtime_s = _timed(ensure_runtime_image, REPO_ROOT, extra_ca=extra_ca)
        print(f"runtime image  {runtime.ref} {'built' if runtime.built else 'cached'} in {runtime_s:.1f}s")
        digest = push_local_image(runtime.ref, f"{host}/irisop/runtime:{runtime.key}", username="bench",
                                  password=password, tls_verify=False)
        (work / "pw").write_text(password)
        settings = Settings(work_dir=str(work / "artifacts"), runtime_image=f"{host}/irisop/runtime@{digest}",
                            insecure_registries=(host,), registry_username="bench",
                            registry_password_file=str(work / "pw"))

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        seed = int.from_bytes(secrets.token_bytes(2), "big")
        meta = write_artifact(work / "trained", train(TrainParams(seed=seed)), "joblib")
        source = ModelSource(uri=_upload(s3, work / "trained", "bench", f"models/{seed}"), sha256=meta["sha256"])

        def pipeline():
            art, fetch_s = _timed(fetch_artifact, source, settings)
            image, image_s = _timed(ensure_model_image, art, f"{host}/iris/bench", settings)
            return image, fetch_s, image_s

        (pushed, fetch_s, image_s), layer_s = _timed(pipeline)
        assert not pushed.reused
        print(f"layer approach {layer_s:8.2f}s  artifact -> pushed {pushed.image}"
              f" (fetch {fetch_s:.2f}s + image {image_s:.2f}s)")
        (hit, fetch_s, image_s), hit_s = _timed(pipeline)
        assert hit.reused and hit.digest == pushed.digest
        print(f"cache hit      {hit_s:8.2f}s  (tag {hit.tag} exists, nothing pushed;"
              f" fetch {fetch_s:.2f}s + image {image_s:.2f}s)")
        if args.skip_full or args.smoke:
            print(f"summary: layer {layer_s:.2f}s, cache hit {hit_s:.2f}s (full build skipped)")
            return 0
        full_s = full_build(work / "trained", meta["model_file"], host, "bench", password, extra_ca)
        print(f"full build     {full_s:8.2f}s  bentoml build + buildah bud --layers=false + push")
        ratio = full_s / layer_s
        ok = layer_s < TARGETS["layer_s"] and ratio >= TARGETS["ratio"] and hit_s < TARGETS["cache_hit_s"]
        print(f"summary: layer {layer_s:.2f}s vs full build {full_s:.1f}s = {ratio:.0f}x faster; "
              f"cache hit {hit_s:.2f}s; targets <5s, >=20x, <1s: {'met' if ok else 'MISSED'}")
        return 0
    finally:
        registry.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
