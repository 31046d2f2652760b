"""`irisop images`: build the base, builder and runtime images, and push the runtime image.

Model images need no command: the operator assembles them. What it needs is
IRISOP_RUNTIME_IMAGE, which ``irisop images runtime --push REPO`` prints —
built here with buildah, or with ``--in-cluster`` by a buildah Job in the
cluster of the current kubeconfig.
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
    builder = sub.add_parser("builder", help="debootstrap the buildah image in-cluster runtime builds run in")
    builder.add_argument("--rebuild", action="store_true", help="ignore the cached rootfs tarball")
    builder.add_argument("--push", metavar="REGISTRY/REPO", help="push as REPO:bookworm and print REPO@digest")
    rt = sub.add_parser("runtime", help="build the BentoML runtime image (skipped when serving/ is unchanged)")
    rt.add_argument("--source-root", type=Path, default=None,
                    help="a tree holding serving/ to build from (default: the installed irisop_serving package)")
    rt.add_argument("--extra-ca", type=Path, default=os.environ.get("IRISOP_BUILD_CA_BUNDLE") or None,
                    help="CA bundle mounted for the build only (TLS-intercepting proxies); env IRISOP_BUILD_CA_BUNDLE")
    rt.add_argument("--rebuild", action="store_true")
    rt.add_argument("--no-layers", action="store_true", help="ignore buildah's layer cache")
    rt.add_argument("--push", metavar="REGISTRY/REPO",
                    help="push as REPO:r-<key> (credentials: ECR token, or IRISOP_REGISTRY_USERNAME/_PASSWORD_FILE)")
    rt.add_argument("--in-cluster", action="store_true",
                    help="build in a buildah Job in the current kubeconfig's cluster (needs --push, --base-image, "
                         "--builder-image)")
    rt.add_argument("--base-image", default=os.environ.get("IRISOP_BUILD_BASE_IMAGE") or None,
                    help="--in-cluster: the Python base image, pinned by digest; env IRISOP_BUILD_BASE_IMAGE")
    rt.add_argument("--builder-image", default=os.environ.get("IRISOP_BUILDER_IMAGE") or None,
                    help="--in-cluster: the buildah image (`irisop images builder --push`); env IRISOP_BUILDER_IMAGE")
    rt.add_argument("--namespace", default="irisop-build",
                    help="--in-cluster: where the Job runs (deploy/runtime-build/namespace.yaml)")
    rt.add_argument("--kubeconfig", default=None, help="--in-cluster: kubeconfig (default: $KUBECONFIG, ~/.kube)")
    rt.add_argument("--timeout", type=float, default=1800, help="--in-cluster: seconds to wait for the Job")


def run(args: argparse.Namespace) -> int:
    from irisop_serving.contract import CommandError
    from irisop_operator.pipeline import ImageError

    from .baseimage import BASE_IMAGE, ImageBuildError, ensure_base_image, ensure_builder_image
    from .runtime import RuntimeBuildError

    try:
        if args.images_command == "base":
            print(ensure_base_image(BASE_IMAGE, rebuild=args.rebuild))
        elif args.images_command == "builder":
            ref = ensure_builder_image(rebuild=args.rebuild)
            print(f"{_push(ref, args.push, 'bookworm')}" if args.push else ref)
        elif args.in_cluster:
            _runtime_in_cluster(args)
        else:
            _runtime_here(args)
    except (ImageBuildError, RuntimeBuildError, ImageError) as exc:
        raise CommandError(str(exc).splitlines()[0] if isinstance(exc, ImageError) else str(exc)) from exc
    return 0


def _runtime_here(args: argparse.Namespace) -> None:
    from .runtime import ensure_runtime_image

    built = ensure_runtime_image(args.source_root, extra_ca=args.extra_ca, rebuild=args.rebuild,
                                 layers=not args.no_layers)
    print(f"{built.ref} {'built' if built.built else 'reused'} in {built.seconds:.1f}s")
    if args.push:
        print(f"IRISOP_RUNTIME_IMAGE={_push(built.ref, args.push, f'r-{built.key}')}")


def _runtime_in_cluster(args: argparse.Namespace) -> None:
    from kubernetes import config

    from irisop_serving.contract import CommandError
    from irisop_operator.settings import get_settings

    from .incluster import build_runtime_in_cluster

    missing = [flag for flag, value in (("--push", args.push), ("--base-image", args.base_image),
                                         ("--builder-image", args.builder_image)) if not value]
    if missing:
        raise CommandError(f"--in-cluster needs {', '.join(missing)}")
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    try:
        api = config.new_client_from_config(config_file=args.kubeconfig)
        built = build_runtime_in_cluster(api, args.source_root, args.push, base_image=args.base_image,
                                         builder_image=args.builder_image, namespace=args.namespace,
                                         settings=get_settings(), extra_ca=args.extra_ca, timeout=args.timeout,
                                         progress=print)
    except ConfigException as exc:
        raise CommandError(f"no usable kubeconfig: {exc}") from exc
    except ApiException as exc:
        raise CommandError(f"Kubernetes API: {exc.status} {exc.reason} (needs create on jobs, configmaps and "
                           f"secrets in {args.namespace})") from exc
    print(f"runtime r-{built.key} {'built in the cluster' if built.built else 'already in the registry'} "
          f"in {built.seconds:.1f}s")
    print(f"IRISOP_RUNTIME_IMAGE={built.image}")


def _push(ref: str, repository: str, tag: str) -> str:
    """Push a local image to ``repository:tag`` (ECR repository ensured, fresh token); return repo@digest."""
    from irisop_operator.images.model import push_client
    from irisop_operator.images.registry import Reference
    from irisop_operator.settings import get_settings

    from .runtime import push_local_image

    dest = Reference.parse(repository.rstrip("/"))
    client = push_client(dest, get_settings())  # a fresh ECR token, used for this push only
    digest = push_local_image(ref, f"{dest.registry}/{dest.repository}:{tag}", username=client.username,
                              password=client.password, tls_verify=not client.insecure)
    return f"{dest.registry}/{dest.repository}@{digest}"
