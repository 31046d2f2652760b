"""`irisop up`: the local single-node cluster with the operator and a served IrisModel."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--extra-ca", type=Path, default=None,
                        help="extra CA bundle for image builds behind a TLS-intercepting proxy "
                             "(default: the host bundle /etc/ssl/certs/ca-certificates.crt when present)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the IrisModel to be Ready")


def run(args: argparse.Namespace) -> int:
    from irisop_serving.contract import CommandError

    from .stack import Stack, StackError

    from irisop_deploy.images.runtime import host_ca_bundle

    extra_ca = args.extra_ca or host_ca_bundle()
    try:
        result = Stack(extra_ca=extra_ca).up(timeout=args.timeout)
    except StackError as exc:
        raise CommandError(str(exc)) from exc
    print(f"\nReady. export KUBECONFIG={result['kubeconfig']}")
    print(f"In-cluster URL (status.url, answered from a pod): {result['url']}/predict")
    print(f"  -> {json.dumps(result['in_cluster_response']['predictions'])}")
    print("From this host (the ClusterIP routes here):")
    print(f"  curl -s -X POST {result['service_url']} -H 'Content-Type: application/json' "
          f"-d '{json.dumps(result['request'])}'")
    print(json.dumps(result["response"], indent=2))
    return 0

