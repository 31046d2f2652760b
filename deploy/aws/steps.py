"""The create and delete plans: which steps, in which order, doing what.

AWS resources come first (kops needs the bucket, VPC and zone to exist),
then kops, then the operator. `delete_steps` walks the same list backwards
and says what it keeps.
"""
from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from typing import Callable

import yaml
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .. import versions
from . import (admin, discovery_bucket, dns, iam, images, irsa, kops, network, registry, sample_model, spec_preview,
               state_bucket, validate)
from .config import ClusterConfig
from .plan import Context, Step, StepError
from .runner import CommandFailed, require

# Exact commands, so a missing tool costs one copy-paste; versions from deploy/versions.env.
INSTALL_HINTS = {
    "kops": f"install kops: curl -fsSLo /usr/local/bin/kops "
    f"https://github.com/kubernetes/kops/releases/download/{versions.kops()}/kops-linux-amd64 "
    "&& chmod +x /usr/local/bin/kops (or build it: bash deploy/kops/build-kops.sh)",
    "kubectl": f"install kubectl: curl -fsSLo /usr/local/bin/kubectl "
    f"https://dl.k8s.io/release/{versions.kubernetes()}/bin/linux/amd64/kubectl "
    "&& chmod +x /usr/local/bin/kubectl (or build it: bash deploy/local/build-kube.sh kubectl)",
}
CREDENTIALS_HINT = (
    "no usable AWS credentials: run `aws configure` (or export AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), then check with `aws sts get-caller-identity`"
)


def _aws_error(exc: Exception) -> StepError:
    return StepError(f"AWS said: {exc}")


def installed_kops_problems(ctx: Context, runner) -> list[str]:
    """Does the kops on PATH support the configured Kubernetes version? Asked before any AWS call."""
    result = runner.run(kops.version(), capture=True)
    found = result.stdout.strip().lstrip("v") if result.ok else ""
    if not validate.KUBE_VERSION_RE.match(found):
        return [f"`kops version --short` answered {found or result.stderr.strip()!r}, not a kops release"]
    return validate.kubernetes_version_problems(ctx.cfg.kubernetes_version, found, what="installed kops")


def check_tools(ctx: Context) -> str:
    # A dry run's runner only prints; the spec runner is the one that finds real tools (cache included).
    finder = ctx.spec_runner if ctx.dry_run and ctx.spec_runner is not None else ctx.runner
    missing = [INSTALL_HINTS[tool] for tool in ("kops", "kubectl") if finder.which(tool) is None]
    if ctx.dry_run:
        # A dry run only prints: missing tools are worth a warning, not a stop.
        for hint in missing:
            ctx.say(f"      warning: {hint}")
        if ctx.spec_runner is not None and ctx.spec_runner.which("kops") is not None:
            for problem in installed_kops_problems(ctx, ctx.spec_runner):
                ctx.say(f"      warning: {problem}")
        ctx.aws.read("sts", "get_caller_identity")
        return "checked (credentials not asked in dry-run)"
    if missing:
        raise StepError("; ".join(missing))
    problems = installed_kops_problems(ctx, ctx.runner)
    if problems:
        raise StepError("; ".join(problems))
    try:
        identity = ctx.aws.read("sts", "get_caller_identity") or {}
    except NoCredentialsError as exc:
        raise StepError(CREDENTIALS_HINT) from exc
    except (ClientError, BotoCoreError) as exc:
        raise StepError(f"{CREDENTIALS_HINT} ({exc})") from exc
    ctx.account = identity["Account"]
    return f"kops, kubectl, AWS account {ctx.account} ({identity.get('Arn', '?')})"


def _guard(action: Callable[[Context], str]) -> Callable[[Context], str]:
    """Turn AWS failures into StepErrors (one line for the admin, chained for debugging)."""

    def wrapped(ctx: Context) -> str:
        try:
            return action(ctx)
        except (ClientError, BotoCoreError, state_bucket.BucketError) as exc:
            raise _aws_error(exc) from exc
        except CommandFailed as exc:
            raise StepError(str(exc)) from exc

    return wrapped


def _vpc(ctx: Context) -> str:
    status, ctx.vpc_id = network.ensure(ctx.aws, ctx.cfg)
    return status


def _policies(ctx: Context) -> str:
    status, ctx.policy_arns = iam.ensure(ctx.aws, ctx.cfg, ctx.account)
    return status


def _cluster_exists(ctx: Context) -> bool:
    if ctx.dry_run:
        return False
    return ctx.runner.run(kops.get_cluster(ctx.cfg), capture=True).ok


def _kops_create(ctx: Context) -> str:
    if _cluster_exists(ctx):
        status = "already exists"
    else:
        require(ctx.runner, kops.create_cluster(ctx.cfg, ctx.vpc_id))
        status = "created"
    if ctx.dry_run:
        spec = spec_preview.write_spec(ctx, INSTALL_HINTS["kops"])
        if spec:
            ctx.note(spec)
        return status
    # IRSA and the node policy: read, patch, replace only if something changed.
    current = yaml.safe_load(require(ctx.runner, kops.get_cluster(ctx.cfg, as_yaml=True), capture=True).stdout) or {}
    patched = kops.patch_cluster_spec(current, ctx.cfg, ctx.policy_arns[ctx.cfg.nodes_policy_name],
                                      ctx.policy_arns[ctx.cfg.operator_policy_name])
    if patched != current:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(patched, handle, sort_keys=False)
        try:
            require(ctx.runner, kops.replace_cluster(ctx.cfg, handle.name))
        finally:
            os.unlink(handle.name)
        status += "; spec patched (IRSA for the operator, ECR pull for nodes)"
    return status


def _kops_update(ctx: Context) -> str:
    require(ctx.runner, kops.update_cluster(ctx.cfg))
    return "applied (kops changes only what differs)"


def _operator_role(ctx: Context) -> str:
    """The role kops made for the operator's ServiceAccount; its ARN is what the install annotates."""
    name = irsa.operator_role_name(ctx.cfg)
    arn = irsa.find_role_arn(ctx.aws, ctx.cfg)
    if arn is None and not ctx.dry_run:
        raise StepError(f"kops did not create IAM role {name} (spec.iam.serviceAccountExternalPermissions); "
                        f"check `kops get cluster {ctx.cfg.name} -o yaml` and run `kops update cluster --yes`")
    ctx.operator_role_arn = arn or f"arn:aws:iam::{ctx.account}:role/{name}"
    return f"{name} ({ctx.operator_role_arn})"


def _sample(ctx: Context) -> str:
    from irisop_model.upload import UploadError

    try:
        status, ctx.sample_sha256 = sample_model.ensure(ctx.aws, ctx.cfg)
    except UploadError as exc:
        raise StepError(str(exc)) from exc
    if ctx.sample_out is not None and not ctx.dry_run:
        ctx.sample_out.write_text(sample_model.irismodel_manifest(ctx.cfg, ctx.sample_sha256))
        status += f"; {ctx.sample_out} points at it"
    return status


def image_repositories(cfg: ClusterConfig) -> dict[str, str]:
    """Where each image kind goes (see images.py for why the runtime shares the model repository)."""
    return {"operator": cfg.operator_repository, "runtime": cfg.model_repository}


def _images(ctx: Context) -> str:
    from irisop_deploy.images.baseimage import ImageBuildError
    from irisop_deploy.images.operatorimage import OperatorImageError
    from irisop_deploy.images.runtime import RuntimeBuildError
    from irisop_operator.pipeline import ImageError

    if ctx.dry_run or ctx.publisher is None:
        return "skipped (dry run)" if ctx.dry_run else "skipped (no image publisher)"
    done = []
    for recipe in ctx.recipes:
        repository = f"{ctx.registry}/{image_repositories(ctx.cfg)[recipe.kind]}"
        try:
            published = ctx.publisher.publish(recipe, repository)
        except (ImageError, RuntimeBuildError, OperatorImageError, ImageBuildError) as exc:
            raise StepError(f"{recipe.kind} image ({recipe.builder}): {str(exc).splitlines()[0]}") from exc
        ctx.images[recipe.kind] = published
        how = "already in the registry, reused" if published.reused else "built and pushed"
        done.append(f"{recipe.kind} {published.tag}: {how} ({published.ref})")
    return "; ".join(done)


def _kops_validate(ctx: Context) -> str:
    require(ctx.runner, kops.validate_cluster(ctx.cfg))
    return "cluster is healthy"


# The image name the aws overlay sets (deploy/overlays/aws/kustomization.yaml); the
# install layer renames it to this account's registry. A test keeps the two in step.
AWS_OVERLAY_IMAGE = "000000000000.dkr.ecr.us-east-1.amazonaws.com/irisop/operator"


def install_kustomization(ctx: Context, where: Path) -> dict:
    """A kustomization (to be written into directory `where`) layered on the aws overlay.

    It sets this account's ECR image, model repository and the operator's
    IRSA identity (the role kops created). kustomize refuses absolute
    resource paths, hence the path relative to `where`.
    """
    namespace, account = irsa.operator_service_account()
    image = {"name": AWS_OVERLAY_IMAGE, "newName": f"{ctx.registry}/{ctx.cfg.operator_repository}"}
    literals = [f"IRISOP_DEFAULT_REPOSITORY={ctx.registry}/{ctx.cfg.model_repository}", f"AWS_REGION={ctx.cfg.region}",
                # The operator re-asserts the lifecycle policy on every push: the same count as step 8's.
                f"IRISOP_ECR_KEEP_IMAGES={ctx.cfg.keep_images}"]
    # By digest, as published by the images step (without it, e.g. rendered in a
    # dry run, the overlay's tag stays and no runtime image is set).
    if "operator" in ctx.images:
        image["digest"] = ctx.images["operator"].digest
    if "runtime" in ctx.images:
        literals.append(f"{images.RUNTIME_IMAGE_ENV}={ctx.images['runtime'].ref}")
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ctx.manifests.resolve(), Path(where).resolve())],
        "images": [image],
        "configMapGenerator": [{"name": "irisop-operator-config", "behavior": "merge", "literals": literals}],
        "patches": [
            {"target": {"kind": "ServiceAccount", "name": account, "namespace": namespace},
             "patch": yaml.safe_dump(irsa.service_account_patch(ctx.operator_role_arn))},
            {"target": {"kind": "Deployment", "name": "irisop-operator", "namespace": namespace},
             "patch": yaml.safe_dump(irsa.deployment_patch(ctx.operator_role_arn))},
        ],
    }


REPO = Path(__file__).resolve().parents[2]
# Applied (and waited for) before everything else: kubectl cannot map the
# ClusterKopfPeering object in the same apply that creates its CRD.
CRD_FILES = [REPO / "crds" / "irismodel.yaml", REPO / "deploy" / "base" / "kopf-peering-crds.yaml"]
CRD_NAMES = ["irismodels.ml.irisop.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]


def _install(ctx: Context) -> str:
    require(ctx.runner, kops.kubectl_apply_crds(ctx.cfg, [str(p) for p in CRD_FILES]))
    require(ctx.runner, kops.kubectl_wait_crds(ctx.cfg, CRD_NAMES))
    with tempfile.TemporaryDirectory(prefix="irisop-install-") as tmp:
        (Path(tmp) / "kustomization.yaml").write_text(
            yaml.safe_dump(install_kustomization(ctx, Path(tmp)), sort_keys=False))
        require(ctx.runner, kops.kubectl_apply(ctx.cfg, tmp))
    return "CRDs, then the operator applied (server-side apply: re-running changes nothing)"


def _zone_title(cfg: ClusterConfig) -> str:
    if cfg.private_dns:
        return f"private hosted zone {cfg.effective_dns_zone}"
    return "DNS: none (no hosted zone; kops puts the API behind a Network Load Balancer)"


def _zone_intent(cfg: ClusterConfig, verb: str) -> str:
    if not cfg.private_dns:
        return "would skip: dns: none needs no zone"
    if verb == "create":
        return f"would create private zone {cfg.effective_dns_zone} attached to the VPC, unless it exists"
    return f"would delete zone {cfg.effective_dns_zone} and its records, if irisop created it"


CHECK_INTENT = "would check kops, kubectl and the installed kops' Kubernetes range (AWS credentials not asked)"


def create_steps(cfg: ClusterConfig) -> list[Step]:
    return [
        Step("checking kops, kubectl and AWS credentials", check_tools, CHECK_INTENT),
        Step(f"state bucket {cfg.state_store}", _guard(lambda c: state_bucket.ensure(c.aws, c.cfg)),
             "would create it unless it exists, then make sure versioning, encryption and the public access "
             "block are on"),
        Step(f"discovery bucket {cfg.discovery_store} (IRSA)",
             _guard(lambda c: discovery_bucket.ensure(c.aws, c.cfg)),
             "would create it unless it exists: encrypted, ACLs disabled, anonymous read of "
             f"{' and '.join(discovery_bucket.public_keys(cfg))} only"),
        Step(f"model bucket s3://{cfg.effective_model_bucket}",
             _guard(lambda c: state_bucket.ensure_private(c.aws, c.cfg, c.cfg.effective_model_bucket)),
             "would create it unless it exists (private, versioned, encrypted): the operator may read only this "
             "bucket"),
        Step(f"sample model {sample_model.uri(cfg)}", _guard(_sample),
             "would train the Iris model and upload it unless a model.json is there, and write an IrisModel "
             "manifest for it"),
        Step(f"VPC {cfg.vpc_cidr}", _guard(_vpc),
             f"would create the VPC and its internet gateway unless a VPC tagged irisop.dev/cluster={cfg.name} exists"),
        Step(_zone_title(cfg), _guard(lambda c: dns.ensure(c.aws, c.cfg, c.vpc_id)), _zone_intent(cfg, "create")),
        Step("ECR repositories", _guard(lambda c: registry.ensure(c.aws, c.cfg)),
             f"would create {', '.join(registry.repositories(cfg))} unless they exist, with scan on push and the "
             "lifecycle policy"),
        Step("operator and runtime images", _guard(_images),
             "would build the operator image (podman) and the BentoML runtime image (buildah) here unless "
             f"{cfg.operator_repository}:o-<key> and {cfg.model_repository}:r-<key> are in the registry, and push "
             "each with a fresh ECR token"),
        Step("IAM policies (nodes: ECR pull; operator via IRSA: S3 read + ECR push)", _guard(_policies),
             "would create the policies, or a new default version where a document changed"),
        Step("admin instance", _guard(lambda c: admin.ensure(c.aws, c.cfg, c.vpc_id)),
             "would launch it unless it runs" if cfg.admin_instance else "would skip (admin_instance: false)"),
        Step(f"kops cluster {cfg.name}", _guard(_kops_create),
             "would run `kops create cluster` unless `kops get cluster` finds it, then `kops replace` the spec "
             "if IRSA (serviceAccountIssuerDiscovery, serviceAccountExternalPermissions) or the node policy "
             "is missing"),
        Step("kops update cluster --yes", _guard(_kops_update),
             "would run `kops update cluster --yes --admin` (kops applies only what differs; it creates the "
             "OIDC provider and the operator's role)"),
        Step("operator IAM role (IRSA, made by kops)", _guard(_operator_role),
             f"would look up role {irsa.operator_role_name(cfg)} in IAM and fail if kops did not create it"),
        Step(f"kops validate cluster (up to {cfg.validate_timeout})", _guard(_kops_validate),
             f"would wait up to {cfg.validate_timeout} for `kops validate cluster` to report the cluster healthy"),
        Step("installing the CRD and the operator", _guard(_install),
             "would apply the CRDs, wait until they are established, then apply the operator (server-side)"),
    ]


def _kops_delete(ctx: Context) -> str:
    if not ctx.dry_run and not _cluster_exists(ctx):
        return "not found"
    require(ctx.runner, kops.delete_cluster(ctx.cfg))
    return "deleted"


def _keep(ctx: Context, outcome: str) -> str:
    if outcome.startswith("kept"):
        ctx.kept.append(outcome)
    return outcome


def delete_steps(cfg: ClusterConfig) -> list[Step]:
    return [
        Step("checking kops, kubectl and AWS credentials", check_tools, CHECK_INTENT),
        # kops delete needs the state bucket, so it runs before the bucket step.
        Step(f"kops cluster {cfg.name}", _guard(_kops_delete),
             "would run `kops delete cluster --yes` if `kops get cluster` finds it"),
        Step(f"discovery bucket {cfg.discovery_store}",
             _guard(lambda c: _keep(c, discovery_bucket.delete(c.aws, c.cfg, c.keep_discovery_bucket))),
             "would delete it with the OIDC documents (or keep it with --keep-discovery-bucket)"),
        Step("admin instance", _guard(lambda c: admin.delete(c.aws, c.cfg)),
             "would terminate it and wait until it is gone, if it exists"),
        Step("IAM policies", _guard(lambda c: iam.delete(c.aws, c.cfg)),
             "would detach and delete the policies and their old versions, if they exist"),
        Step("ECR repositories", _guard(lambda c: _keep(c, registry.delete(c.aws, c.cfg, c.purge))),
             "would keep them (without --purge), or delete them with their images (--purge)"),
        Step(_zone_title(cfg), _guard(lambda c: dns.delete(c.aws, c.cfg)), _zone_intent(cfg, "delete")),
        Step(f"VPC {cfg.vpc_cidr}", _guard(lambda c: network.delete(c.aws, c.cfg)),
             "would delete its gateway, route tables, subnets, security groups and the VPC, if it exists"),
        Step(f"model bucket s3://{cfg.effective_model_bucket}",
             _guard(lambda c: _keep(c, state_bucket.delete_private(c.aws, c.cfg.effective_model_bucket, c.purge,
                                                                   "the models"))),
             "would keep it (without --purge), or delete every object version and the bucket (--purge)"),
        Step(f"state bucket {cfg.state_store}",
             _guard(lambda c: _keep(c, state_bucket.delete(c.aws, c.cfg, c.purge))),
             "would keep it (without --purge), or delete every object version and the bucket (--purge)"),
    ]


def next_steps(ctx: Context) -> str:
    manifest = ctx.sample_out or sample_model.EXAMPLE
    lines = ["Next: apply the sample IrisModel (the sample model is already in the model bucket) and watch it "
             "become Ready:",
             f"  {shlex.join(['kubectl', '--context', ctx.cfg.name, 'apply', '-f', str(manifest)])}",
             f"  kubectl --context {shlex.quote(ctx.cfg.name)} get irismodels -A -w"]
    if ctx.sample_out is None:
        lines.append(f"  (set spec.model.uri to {sample_model.uri(ctx.cfg)} first)")
    lines.append(f"Model artifacts go to s3://{ctx.cfg.effective_model_bucket}/ (the operator may only read that "
                 "bucket).")
    return "\n".join(lines)
