"""The `irisop` command line: one entry point, sub-commands loaded lazily.

Each sub-command lives next to the code it drives, in a small module that
defines ``add_parser(parser)`` and ``run(args) -> int``. Those modules keep
heavy imports (kopf, BentoML, boto3) inside ``run`` so `irisop --help` and
`irisop train` stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# sub-command name -> module that defines add_parser() and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("irisop_deploy.local.up_cli", "start a local cluster, the operator and a served IrisModel (the demo)"),
    "down": ("irisop_deploy.local.down_cli", "stop everything `irisop up` started"),
    "train": ("irisop_model.cli", "train a seeded Iris classifier and write an artifact directory"),
    "serve": ("irisop_serving.cli", "serve a model artifact over HTTP with BentoML"),
    "operator": ("irisop_operator.main", "run the kopf operator against the current kubeconfig"),
    "control-plane": ("irisop_deploy.local.cli", "start/stop a local etcd + kube-apiserver + controller-manager"),
    "cluster": ("irisop_deploy.aws.cli", "create/delete a kops cluster on AWS"),
    "images": ("irisop_operator.images.cli", "build the base/runtime images and push the runtime image"),
}


class CommandError(Exception):
    """An expected failure: printed as one line, exit code 1, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irisop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module.split(".")[0]):
                continue  # sub-command not built yet
            raise
        sp = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(sp)
        sp.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"irisop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m irisop_operator.cli` runs this file as __main__, a second copy
    # of the module: dispatch through the real one so CommandError is the same class.
    from irisop_operator.cli import main as _main

    sys.exit(_main())
