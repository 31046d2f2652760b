"""`irisop images`: build the base and runtime images, and push the runtime image.

Model images need no command: the operator assembles them. What it needs is
IRISOP_RUNTIME_IMAGE, which ``irisop images runtime --push REPO`` prints.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="images_command", metavar="STEP")
    sub.required = True
    base = sub.add_parser("base", help="debootstrap the Debian bookworm Python base image (cached)")
    base.add_argument("--rebuild", action="store_true", help="ignore the cached rootfs tarball")
    rt = sub.add_parser("runtime", help="build the BentoML runtime image (skipped when serving/ is unchanged)")
    rt.add_argument("--repo-root", type=Path, default=Path.cwd())
    rt.add_argument("--extra-ca", type=Path, default=os.environ.get("IRISOP_BUILD_CA_BUNDLE") or None,
                    help="CA bundle mounted for the build only (TLS-intercepting proxies); env IRISOP_BUILD_CA_BUNDLE")
    rt.add_argument("--rebuild", action="store_true")
    rt.add_argument("--no-layers", action="store_true", help="ignore buildah's layer cache")
    rt.add_argument("--push", metavar="REGISTRY/REPO",
                    help="push as REPO:r-<key> (credentials: ECR token, or IRISOP_REGISTRY_USERNAME/_PASSWORD_FILE)")


def run(args: argparse.Namespace) -> int:
    from irisop_deploy.local.baseimage import BASE_IMAGE, ImageBuildError, ensure_base_image
    from irisop_operator.cli import CommandError

    from ..pipeline import ImageError
    from ..settings import get_settings
    from .runtime import RuntimeBuildError, ensure_runtime_image, push_local_image

    try:
        if args.images_command == "base":
            print(ensure_base_image(BASE_IMAGE, rebuild=args.rebuild))
            return 0
        built = ensure_runtime_image(args.repo_root, extra_ca=args.extra_ca, rebuild=args.rebuild,
                                     layers=not args.no_layers)
        print(f"{built.ref} {'built' if built.built else 'reused'} in {built.seconds:.1f}s")
        if args.push:
            from . import ecr
            from .model import client_for
            from .registry import Reference

            settings = get_settings()
            dest = Reference.parse(args.push.rstrip("/"))
            reg = ecr.ecr_registry(dest.registry, settings)
            if reg is not None:
                ecr.ensure_repository(ecr.ecr_client(reg), reg, dest.repository, settings.ecr_keep_images)
            client = client_for(dest.registry, settings)  # a fresh ECR token, used for this push only
            digest = push_local_image(built.ref, f"{dest.registry}/{dest.repository}:r-{built.key}",
                                      username=client.username, password=client.password,
                                      tls_verify=not client.insecure)
            print(f"IRISOP_RUNTIME_IMAGE={dest.registry}/{dest.repository}@{digest}")
    except (ImageBuildError, RuntimeBuildError, ImageError) as exc:
        raise CommandError(str(exc).splitlines()[0] if isinstance(exc, ImageError) else str(exc)) from exc
    return 0
