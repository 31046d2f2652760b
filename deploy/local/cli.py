"""`irisop control-plane up|down|status`: the local Kubernetes control plane,
and with `--node` a real worker node (containerd, kubelet, kube-proxy)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--home", type=Path, default=None,
        help="state directory (default: $IRISOP_STATE/controlplane, i.e. ~/.cache/irisop/state/controlplane)",
    )
    parser.add_argument(
        "--no-build", action="store_true",
        help="fail instead of building missing Kubernetes binaries (a cold build takes minutes)",
    )
    parser.add_argument(
        "--node", action="store_true",
        help="with up: also start the local node (needs root; see docs/local-cluster.md)",
    )
    parser.add_argument(
        "--purge", action="store_true",
        help="with down: also delete etcd data and certificates",
    )


def run(args: argparse.Namespace) -> int:
    from irisop_serving.contract import CommandError

    from .binaries import MissingBinary
    from .node import Node
    from .process import ProcessError
    from .stack import stack_plane

    plane = stack_plane(args.home, build=not args.no_build)
    node = Node(plane)
    try:
        if args.action == "up":
            # stdout carries only the path, so `export KUBECONFIG=$(irisop control-plane up)` works.
            print(node.up() if args.node else plane.up())
        elif args.action == "down":
            node.down()  # a no-op when no node was ever started here
            plane.destroy() if args.purge else plane.down()
        else:
            status = plane.status()
            node_status = node.status()
            if any(node_status.values()):
                status.update(node_status)
            for name, pid in status.items():
                print(f"{name:<24} {'running pid ' + str(pid) if pid else 'stopped'}")
            if all(status.values()):
                print(f"kubeconfig               {plane.kubeconfig}")
            return 0 if all(status.values()) else 3  # 3: "not running", like `systemctl status`
    except MissingBinary as exc:
        raise CommandError(str(exc)) from exc
    except ProcessError as exc:
        # The message's first line is enough on the terminal; the log path says where to look.
        first = str(exc).splitlines()[0]
        raise CommandError(f"{first} (logs: {plane.logs}, {node.logs})") from exc
    return 0
