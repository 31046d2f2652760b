"""Run a list of named steps with a progress line each: `[3/11] state bucket ... created`.

Steps share one Context (the values one step finds and a later one needs:
account id, VPC id, policy ARNs). A failing step stops the run with the step
named; every step checks before it acts, so re-running resumes where the
last run stopped.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from .config import ClusterConfig
from .gateway import Aws
from .runner import Runner

if TYPE_CHECKING:
    from .images import Published, Publisher, Recipe


@dataclass
class Context:
    cfg: ClusterConfig
    aws: Aws
    runner: Runner
    manifests: Path  # the kustomize overlay to install (deploy/overlays/aws)
    dry_run: bool = False
    purge: bool = False
    spec_out: Path | None = None  # where --dry-run writes the kops cluster spec
    spec_runner: Runner | None = None  # runs the harmless `kops create cluster --dry-run` for real
    out: TextIO = field(default_factory=lambda: sys.stdout)
    account: str = "000000000000"  # the STS answer replaces it; dry-run keeps the placeholder
    vpc_id: str = "vpc-dryrun"
    policy_arns: dict[str, str] = field(default_factory=dict)  # policy name -> ARN
    operator_role_arn: str = ""  # the role kops made for the operator's ServiceAccount (IRSA)
    keep_discovery_bucket: bool = False
    publisher: "Publisher | None" = None  # builds/pushes the operator's images (tests pass their own)
    recipes: list["Recipe"] = field(default_factory=list)
    images: dict[str, "Published"] = field(default_factory=dict)  # kind -> what was published
    sample_out: Path | None = None  # where create writes the IrisModel for the sample model
    sample_sha256: str = ""
    registry_host: str = ""  # empty: this account's ECR registry (tests: a local registry mapped to moto's ECR)
    kept: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a dry-run step really did (e.g. wrote the spec)

    @property
    def registry(self) -> str:
        return self.registry_host or f"{self.account}.dkr.ecr.{self.cfg.region}.amazonaws.com"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        """Something observed, not planned: shown after the step's plan in a dry run."""
        self.notes.append(text)


class StepError(RuntimeError):
    """A step could not finish; the message tells the admin what to do."""


@dataclass
class Step:
    title: str
    action: Callable[[Context], str]  # returns the outcome shown after "..."
    # What the step would do, worded as a plan: a dry run prints this instead of
    # the action's outcome, which in a dry run was never observed.
    intent: str = ""


def run(steps: list[Step], ctx: Context) -> list[str]:
    """Run steps in order; return their outcomes. Raise StepError naming the failed step."""
    outcomes = []
    width = len(str(len(steps)))
    for number, step in enumerate(steps, 1):
        prefix = f"[{number:>{width}}/{len(steps)}] {step.title}"
        # The title first (flushed), so a slow step shows what it is waiting on.
        print(f"{prefix} ...", end="\n" if ctx.dry_run else " ", file=ctx.out, flush=True)
        try:
            outcome = step.action(ctx)
        except StepError as exc:
            print("failed", file=ctx.out, flush=True)
            raise StepError(f"{step.title}: {exc}") from exc
        if ctx.dry_run:
            outcome = "; ".join([step.intent or f"would {step.title}", *ctx.notes])
            ctx.notes.clear()
            print(f"      -> {outcome}", file=ctx.out, flush=True)
        else:
            print(outcome, file=ctx.out, flush=True)
        outcomes.append(outcome)
    return outcomes
