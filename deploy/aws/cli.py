"""`irisop cluster create|delete|config`: the AWS bootstrap from the command line.

Every ClusterConfig field is also a flag (`node_count` -> `--node-count`), so
a YAML file holds the shared settings and flags override them per run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .bootstrap import DEFAULT_MANIFESTS
from .config import ClusterConfig, ConfigError, defaults_yaml, fields, load



def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings (see `config --print-defaults`)")
    group = parser.add_argument_group("settings (override the file)")
    for f in fields():
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['description']} (default: {getattr(ClusterConfig(), f.name)!r})"
        if f.type == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = "A,B" if f.type == "list[str]" else "K=V,..." if f.type.startswith("dict") else None
            group.add_argument(flag, dest=f.name, default=None, metavar=metavar, help=help_text)


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION")
    sub.required = True
    create = sub.add_parser("create", help="create (or resume creating) the cluster and install the operator")
    _add_config_flags(create)
    create.add_argument("--dry-run", action="store_true", help="print every AWS call and command; change nothing")
    create.add_argument("--spec-out", type=Path, metavar="FILE",
                        help="with --dry-run: where to write kops' cluster spec (default: <name>.kops.yaml)")
    create.add_argument("--manifests", type=Path, default=DEFAULT_MANIFESTS, metavar="DIR",
                        help=f"kustomize overlay to install (default: {DEFAULT_MANIFESTS})")
    delete = sub.add_parser("delete", help="delete the cluster and what create made, in reverse order")
    _add_config_flags(delete)
    delete.add_argument("--dry-run", action="store_true", help="print every AWS call and command; change nothing")
    delete.add_argument("--keep-discovery-bucket", action="store_true",
                        help="keep the IRSA discovery bucket (its OIDC documents), e.g. to re-create the cluster "
                             "under the same issuer")
    delete.add_argument("--purge", action="store_true",
                        help="also delete the versioned state bucket and the ECR repositories with their images")
    config = sub.add_parser("config", help="print the defaults, or check a configuration file without touching AWS")
    _add_config_flags(config)
    config.add_argument("--print-defaults", action="store_true", help="print every setting with its default")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name, None) for f in fields()}


def _load(args: argparse.Namespace) -> ClusterConfig:
    from irisop_serving.contract import CommandError

    from . import validate

    try:
        return validate.check(load(args.config, _overrides(args)))
    except ConfigError as exc:
        # Every problem on its own line; nothing has been asked of AWS yet.
        raise CommandError("invalid configuration:\n  " + "\n  ".join(exc.problems)) from exc


def run(args: argparse.Namespace) -> int:
    if args.cluster_command == "config":
        if args.print_defaults:
            sys.stdout.write(defaults_yaml())
            return 0
        import yaml

        from .config import settings

        cfg = _load(args)
        print(f"# region {cfg.region} from {cfg.region_source}", file=sys.stderr)
        sys.stdout.write(yaml.safe_dump(settings(cfg), sort_keys=False))
        return 0
    cfg = _load(args)
    return _run_plan(cfg, args)


def _run_plan(cfg: ClusterConfig, args: argparse.Namespace) -> int:
    from irisop_serving.contract import CommandError

    from irisop_deploy.local.process import cache_dir

    from .bootstrap import execute
    from .images import RegistryPublisher, default_recipes
    from .plan import StepError
    from .runner import DryRunRunner, SubprocessRunner

    # Tools built by deploy/kops/build-kops.sh and deploy/local/build-kube.sh count as installed.
    tool_dirs = [str(p) for p in sorted(cache_dir().glob("kops/*/bin")) + sorted(cache_dir().glob("kube/*/bin"))]
    real = SubprocessRunner(tool_dirs)
    try:
        execute(
            cfg, args.cluster_command, DryRunRunner() if args.dry_run else real,
            dry_run=args.dry_run, purge=getattr(args, "purge", False),
            keep_discovery_bucket=getattr(args, "keep_discovery_bucket", False),
            publisher=RegistryPublisher(keep_images=cfg.keep_images), recipes=default_recipes() if args.cluster_command == "create" else [],
            sample_out=Path(f"{cfg.name}.irismodel.yaml") if args.cluster_command == "create" else None,
            manifests=getattr(args, "manifests", DEFAULT_MANIFESTS),
            spec_out=(args.spec_out or Path(f"{cfg.name}.kops.yaml")) if args.cluster_command == "create" and args.dry_run else None,
            spec_runner=real,
        )
    except StepError as exc:
        raise CommandError(f"{exc} (fix it and run the same command again: finished steps are skipped)") from exc
    return 0
