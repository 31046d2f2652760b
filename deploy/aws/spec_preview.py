"""--dry-run's cluster spec: what kops itself would store, rendered without touching AWS state.

`kops create cluster ... --dry-run -o yaml` against a throwaway local state
store (the real bucket may not exist yet), the bootstrap's spec patch
applied on top, and kops' bundled stable channel when GitHub's cannot be read.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import yaml

from .. import versions
from . import iam, kops
from .plan import Context
from .runner import Result, Runner

CHANNEL_UNREADABLE = "error reading channel"


def bundled_channel() -> Path:
    """kops' stable channel as of the pinned release, copied into the cache by deploy/kops/build-kops.sh."""
    from irisop_deploy.local.process import cache_dir

    return cache_dir() / "kops" / versions.kops() / "channels" / "stable"


def _render_spec(ctx: Context, runner: Runner, channel: str | None) -> Result:
    cfg = ctx.cfg if channel is None else dataclasses.replace(ctx.cfg, kops_channel=channel)
    vpc_id = None if ctx.vpc_id == "vpc-dryrun" else ctx.vpc_id  # ours does not exist yet
    with tempfile.TemporaryDirectory(prefix="irisop-kops-state-") as state_dir:
        preview_state = f"file://{state_dir}"
        result = runner.run(kops.create_cluster(cfg, vpc_id, dry_run_yaml=True, state=preview_state), capture=True)
    # kops prints the throwaway store as file://DIR or plain DIR depending on the field.
    result.stdout = result.stdout.replace(preview_state, ctx.cfg.state_store).replace(state_dir, ctx.cfg.state_store)
    return result


def patched_spec_text(ctx: Context, text: str) -> str:
    """kops' rendered documents with the bootstrap's own spec patch applied to the Cluster."""
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    nodes_arn, operator_arn = (ctx.policy_arns.get(name, iam.placeholder_arn(name))
                               for name in (ctx.cfg.nodes_policy_name, ctx.cfg.operator_policy_name))
    docs = [kops.patch_cluster_spec(doc, ctx.cfg, nodes_arn, operator_arn) if doc.get("kind") == "Cluster" else doc
            for doc in docs]
    return yaml.safe_dump_all(docs, sort_keys=False)


def write_spec(ctx: Context, install_hint: str) -> str:
    """--dry-run: ask kops itself for the cluster spec it would create; "" when not asked to.

    kops reads the state store to refuse an existing cluster, and the state
    bucket may not exist yet, so the preview uses a throwaway local state
    store and the real store's path is put back into the result. kops itself
    makes read-only AWS calls here (zones, instance types, images, the VPC).
    When kops cannot read its channel from GitHub (offline), the spec is
    rendered again with the channel file bundled with the kops build, and the
    note says so. The bootstrap's spec patch (IRSA, node policy) is applied,
    so the file is what `kops replace` would store.
    """
    if ctx.spec_out is None:
        return ""
    spec_runner = ctx.spec_runner
    if spec_runner is None or spec_runner.which("kops") is None:
        return f"kops not installed, spec not written ({install_hint})"
    result = _render_spec(ctx, spec_runner, None)
    source = ""
    if not result.ok and CHANNEL_UNREADABLE in result.stderr and not ctx.cfg.kops_channel:
        bundled = bundled_channel()
        if not bundled.is_file():
            return (f"kops could not read its channel and no bundled channel is at {bundled} "
                    "(bash deploy/kops/build-kops.sh copies it), spec not written")
        result = _render_spec(ctx, spec_runner, f"file://{bundled}")
        source = f" (kops' channel could not be read from the network: rendered with the bundled {bundled})"
    if not result.ok:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        return f"`kops create cluster --dry-run` failed, spec not written: {tail}"
    ctx.spec_out.write_text(patched_spec_text(ctx, result.stdout))
    return f"cluster spec written to {ctx.spec_out}{source}"
