"""The `irisop` command line: one entry point, sub-commands loaded lazily.

Each sub-command lives next to the code it drives, in a small module that
defines ``add_parser(parser)`` and ``run(args) -> int``. Those modules keep
heavy imports (kopf, BentoML, boto3) inside ``run`` so `irisop --help` and
`irisop train` stay fast.

This module imports only the stdlib and the stdlib-only contract (home of the
CommandError every sub-command raises): the base install is the command line
alone, and each program's libraries come with its extra (setup.cfg). A
sub-command whose extra is not installed ends with one line naming the extra.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from importlib import metadata
from typing import Callable, Iterable, Sequence

from irisop_serving.contract import CommandError

# sub-command name -> module that defines add_parser() and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("irisop_deploy.local.up_cli", "start a local cluster, the operator and a served IrisModel (the demo)"),
    "down": ("irisop_deploy.local.down_cli", "stop everything `irisop up` started"),
    "train": ("irisop_model.cli", "train a seeded Iris classifier and write an artifact directory"),
    "serve": ("irisop_serving.cli", "serve a model artifact over HTTP with BentoML"),
    "operator": ("irisop_operator.main", "run the kopf operator against the current kubeconfig"),
    "control-plane": ("irisop_deploy.local.cli", "start/stop a local etcd + kube-apiserver + controller-manager"),
    "cluster": ("irisop_deploy.aws.cli", "create/delete a kops cluster on AWS"),
    "images": ("irisop_deploy.images.cli", "build the base/runtime images and push the runtime image"),
}

# sub-command name -> the setup.cfg extra that installs its libraries
EXTRAS: dict[str, str] = {
    "up": "local",
    "down": "local",
    "control-plane": "local",
    "images": "local",
    "train": "trainer",
    "serve": "serving",
    "operator": "operator",
    "cluster": "aws",
}
DIST = "irismodel-operator"




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irisop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _is_library(exc):
                raise  # our own code is broken: show the traceback
            # The sub-command's extra is missing: keep it listed, and let
            # running it say which extra to install.
            sp = sub.add_parser(name, help=help_text, description=help_text)
            sp.add_argument("_ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            sp.set_defaults(_run=_raiser(exc))
            continue
        sp = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_parser(sp)
        sp.set_defaults(_run=mod.run)
    return parser


def _is_library(exc: ModuleNotFoundError) -> bool:
    """A third-party module is missing (an extra not installed), not one of ours."""
    return bool(exc.name) and not exc.name.split(".")[0].startswith("irisop_")


def _raiser(exc: ModuleNotFoundError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise exc
    return run


def missing_extra_message(command: str, missing: str) -> str:
    extra = EXTRAS.get(command, "test")
    return f"needs the '{extra}' extra (missing {missing}): pip install '{DIST}[{extra}]'"


_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]*)\])?")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def requirements_of(extra: str, requires: Iterable[str], dist: str = DIST) -> set[str]:
    """Distribution names an extra pulls in, following the extras it names of this same distribution.

    Reads the installed metadata (setup.cfg is the one source); stdlib only,
    so no `packaging`: a requirement is ``name[extras] spec; extra == "x"``.
    """
    requires = list(requires)
    wanted, names, todo = set(), set(), [extra]
    while todo:
        current = todo.pop()
        if current in wanted:
            continue
        wanted.add(current)
        for raw in requires:
            marker = _EXTRA_MARKER.search(raw.partition(";")[2])
            if marker is None or marker.group(1) != current:
                continue
            found = _NAME.match(raw)
            if found is None:
                continue
            name, extras = found.group(1), found.group(2) or ""
            if name.lower().replace("_", "-") == dist:
                todo += [e.strip() for e in extras.split(",") if e.strip()]
            else:
                names.add(name)
    return names


def missing_distributions(extra: str) -> list[str]:
    """Requirements of an extra that are not installed ([] when running from an uninstalled checkout)."""
    try:
        requires = metadata.distribution(DIST).requires or []
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for name in sorted(requirements_of(extra, requires)):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def put_own_tools_on_path() -> None:
    # Run through the /usr/local/bin/irisop link, the venv is not activated,
    # yet the tools it installed (moto_server, bentoml) must be the ones found.
    own_bin = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if own_bin and own_bin not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, (own_bin, path)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    put_own_tools_on_path()
    missing = missing_distributions(EXTRAS.get(args.command, "test"))
    if missing:
        print(f"irisop {args.command}: error: {missing_extra_message(args.command, ', '.join(missing))}",
              file=sys.stderr)
        return 1
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"irisop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if not _is_library(exc):
            raise
        print(f"irisop {args.command}: error: {missing_extra_message(args.command, f'Python module {exc.name!r}')}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
