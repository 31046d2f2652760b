"""Wire a configuration, an AWS gateway and a command runner into one create/delete run.

The CLI and the integration tests both come through here; tests pass a runner
that records kops/kubectl instead of running them (kops cannot reach moto).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, TextIO

from . import plan, steps
from .config import ClusterConfig
from .gateway import Aws
from .images import Publisher, Recipe
from .runner import Runner

DEFAULT_MANIFESTS = Path(__file__).resolve().parents[1] / "overlays" / "aws"


def execute(
    cfg: ClusterConfig,
    action: Literal["create", "delete"],
    runner: Runner,
    *,
    dry_run: bool = False,
    purge: bool = False,
    keep_discovery_bucket: bool = False,
    publisher: Publisher | None = None,
    recipes: list[Recipe] | None = None,
    registry_host: str = "",
    sample_out: Path | None = None,
    manifests: Path = DEFAULT_MANIFESTS,
    spec_out: Path | None = None,
    spec_runner: Runner | None = None,
    out: TextIO | None = None,
) -> plan.Context:
    """Run every step of `action`; return the context (outcomes, kept resources, AWS calls)."""
    out = out or sys.stdout
    ctx = plan.Context(
        cfg=cfg, aws=Aws(cfg.region, dry_run=dry_run, out=out), runner=runner, manifests=manifests,
        dry_run=dry_run, purge=purge, spec_out=spec_out, spec_runner=spec_runner, out=out,
        keep_discovery_bucket=keep_discovery_bucket, publisher=publisher, recipes=list(recipes or []),
        registry_host=registry_host, sample_out=sample_out,
    )
    ctx.say(f"{'Dry run: would ' if dry_run else ''}{action} cluster {cfg.name} in {cfg.region} "
            f"(region from {cfg.region_source})")
    ctx.outcomes = plan.run(steps.create_steps(cfg) if action == "create" else steps.delete_steps(cfg), ctx)
    if dry_run:
        ctx.say("Dry run: nothing was created, changed or deleted.")
    elif action == "create":
        ctx.say(steps.next_steps(ctx))
    else:
        ctx.say("Kept: " + "; ".join(ctx.kept) if ctx.kept else "Nothing kept: every resource was deleted.")
    return ctx
