"""`irisop operator run`: start the kopf operator with our settings."""
from __future__ import annotations

import argparse
import logging

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="run the operator against the current kubeconfig (or in-cluster config)")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch only this namespace (repeatable); default: IRISOP_WATCH_NAMESPACES or cluster-wide")
    run.add_argument("--liveness", default=None,
                     help=f"liveness endpoint URL, e.g. {DEFAULT_LIVENESS} (off by default outside a pod)")
    run.add_argument("--verbose", action="store_true", help="debug logging")


def _fewer_malloc_arenas() -> None:
    """Two glibc malloc arenas instead of up to 8 per core for 40-odd threads.

    Each worker thread would otherwise get an arena of its own, and memory
    freed after the start-up listing of 2,000 objects stays spread over them
    (RSS ~2.5x the live heap after a restart, measured with
    benchmarks/operator_scale.py). Same as MALLOC_ARENA_MAX=2; a no-op
    without glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).mallopt(-8, 2)  # M_ARENA_MAX
        except (OSError, AttributeError):
            pass  # not glibc


def _peering_identity() -> str:
    """Unique per process, and says where it runs: the pod name in a pod (POD_ID, as kopf uses), else the host."""
    import os
    import secrets
    import socket

    return f"{os.environ.get('POD_ID') or socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def run(args: argparse.Namespace) -> int:
    _fewer_malloc_arenas()  # before kopf starts any thread
    import kopf

    from . import handlers  # noqa: F401  (importing registers the kopf handlers)
    from . import kube
    from .settings import get_settings

    # kopf's formatter with the object prefix: every handler line says which
    # object it is about ("[ns/name] Handler 'reconcile_model' succeeded.").
    kopf.configure(verbose=args.verbose, log_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                   log_prefix=True)
    if not args.verbose:
        # kopf logs every handler run at INFO ("Handler 'on_deployment_event'
        # succeeded.": thousands of lines at 500 IrisModels). The operator logs
        # one INFO line per decision itself (reconcile.Reconciler.announce);
        # kopf's failures and retries are WARNING and above and still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # One line per liveness/readiness probe (every few seconds) says nothing.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings = get_settings()
    kube.load_config()
    namespaces = args.namespace or list(settings.watch_namespaces)
    identity = _peering_identity()
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        # Ours, not kopf's own guess, so the handlers can find this replica's
        # record in the peering object (leadership.py); in the memo for them.
        identity=identity,
        memo=kopf.Memo(namespaces=tuple(namespaces), identity=identity),
    )
    return 0
