"""The kops state bucket: created once, versioned, encrypted, never public.

kops keeps the whole cluster definition (and its PKI) in this bucket, so it is
the one resource `delete` keeps by default: versioning lets an admin recover
a spec that a bad `kops replace` overwrote.
"""
from __future__ import annotations

from botocore.exceptions import ClientError

from .config import ClusterConfig
from .gateway import Aws, error_code

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]}


class BucketError(RuntimeError):
    """The bucket name is unusable (e.g. owned by another account)."""


def create_bucket_params(name: str, region: str) -> dict:
    """us-east-1 is the one region that rejects an explicit LocationConstraint."""
    params: dict = {"Bucket": name}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return params


def exists(aws: Aws, name: str) -> bool:
    try:
        return aws.read("s3", "head_bucket", Bucket=name) is not None
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        if error_code(exc) in ("403", "Forbidden"):
            raise BucketError(f"bucket {name!r} exists but belongs to another account; set state_bucket") from exc
        raise


def read_or_none(aws: Aws, op: str, name: str, missing: str) -> dict | None:
    try:
        return aws.read("s3", op, Bucket=name)
    except ClientError as exc:
        if error_code(exc) == missing:
            return None
        raise


def create_tagged(aws: Aws, cfg: ClusterConfig, name: str) -> bool:
    """Create bucket `name` in the cluster's region with our tags unless it exists; True if it existed."""
    if exists(aws, name):
        return True
    aws.write("s3", "create_bucket", **create_bucket_params(name, cfg.region))
    tags = [{"Key": k, "Value": v} for k, v in sorted(cfg.aws_tags().items())]
    aws.write("s3", "put_bucket_tagging", Bucket=name, Tagging={"TagSet": tags})
    return False


def ensure_private(aws: Aws, cfg: ClusterConfig, name: str) -> str:
    """A private bucket: created unless it exists, versioning, encryption and all four public blocks on."""
    existed = create_tagged(aws, cfg, name)
    fixed = []
    versioning = read_or_none(aws, "get_bucket_versioning", name, "NoSuchBucket") if existed else None
    if not versioning or versioning.get("Status") != "Enabled":
        aws.write("s3", "put_bucket_versioning", Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        fixed.append("versioning")
    encryption = (
        read_or_none(aws, "get_bucket_encryption", name, "ServerSideEncryptionConfigurationNotFoundError")
        if existed
        else None
    )
    if not encryption:
        aws.write("s3", "put_bucket_encryption", Bucket=name, ServerSideEncryptionConfiguration=ENCRYPTION)
        fixed.append("encryption")
    block = read_or_none(aws, "get_public_access_block", name, "NoSuchPublicAccessBlockConfiguration") if existed else None
    if not block or block.get("PublicAccessBlockConfiguration") != PUBLIC_ACCESS_BLOCK:
        aws.write("s3", "put_public_access_block", Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        fixed.append("public access block")
    if not existed:
        return "created"
    return f"already exists; turned on {', '.join(fixed)}" if fixed else "already exists"


def ensure(aws: Aws, cfg: ClusterConfig) -> str:
    return ensure_private(aws, cfg, cfg.effective_state_bucket)


def delete_private(aws: Aws, name: str, purge: bool, what: str) -> str:
    if not purge:
        return f"kept s3://{name} ({what}; --purge deletes it)"
    if not aws.dry_run and not exists(aws, name):
        return "not found"
    empty_and_delete(aws, name)
    return "deleted (with every object version)"


def delete(aws: Aws, cfg: ClusterConfig, purge: bool) -> str:
    return delete_private(aws, cfg.effective_state_bucket, purge, "versioned kops state")


def empty_and_delete(aws: Aws, name: str) -> None:
    """Delete every object version and delete marker, then the bucket."""
    # A versioned bucket is only empty once every version and delete marker is gone.
    pages = aws.read("s3", "list_object_versions", Bucket=name) or {}
    while True:
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in pages.get("Versions", []) + pages.get("DeleteMarkers", [])
        ]
        if doomed:
            aws.write("s3", "delete_objects", Bucket=name, Delete={"Objects": doomed, "Quiet": True})
        if not pages.get("IsTruncated"):
            break
        pages = aws.read(
            "s3", "list_object_versions", Bucket=name,
            KeyMarker=pages["NextKeyMarker"], VersionIdMarker=pages["NextVersionIdMarker"],
        ) or {}
    aws.write("s3", "delete_bucket", Bucket=name)
