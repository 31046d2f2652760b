"""The service-account issuer's discovery bucket: public, but only for two documents.

IRSA needs AWS STS to fetch the cluster's OIDC discovery document and signing
keys over plain HTTPS, so kops publishes them (`serviceAccountIssuerDiscovery
.discoveryStore`) to `<bucket>/<cluster name>/.well-known/openid-configuration`
and `<bucket>/<cluster name>/openid/v1/jwks`. This bucket is not the state
store (which holds the cluster's PKI and must never be public): its policy
grants anonymous `s3:GetObject` on exactly those two keys and nothing else.
ACLs stay blocked and disabled; kops sees a public bucket policy
(GetBucketPolicyStatus) and writes the files without ACLs.
"""
from __future__ import annotations

import json

from .config import ClusterConfig
from .gateway import Aws
from .state_bucket import ENCRYPTION, create_tagged, empty_and_delete, exists, read_or_none

# Public policies allowed (the two documents need one); public ACLs never.
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}
OWNERSHIP = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}  # ACLs disabled altogether
DOCUMENTS = (".well-known/openid-configuration", "openid/v1/jwks")


def public_keys(cfg: ClusterConfig) -> list[str]:
    """The only object keys anyone may read (kops writes under the cluster's name)."""
    return [f"{cfg.name}/{document}" for document in DOCUMENTS]


def policy(cfg: ClusterConfig) -> dict:
    bucket = cfg.effective_discovery_bucket
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicOIDCDiscoveryDocumentsOnly",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": [f"arn:aws:s3:::{bucket}/{key}" for key in public_keys(cfg)],
        }],
    }


def _current_policy(aws: Aws, name: str) -> dict | None:
    found = read_or_none(aws, "get_bucket_policy", name, "NoSuchBucketPolicy")
    return json.loads(found["Policy"]) if found else None


def ensure(aws: Aws, cfg: ClusterConfig) -> str:
    name = cfg.effective_discovery_bucket
    existed = create_tagged(aws, cfg, name)
    fixed = []
    if not existed or not read_or_none(aws, "get_bucket_encryption", name,
                                       "ServerSideEncryptionConfigurationNotFoundError"):
        aws.write("s3", "put_bucket_encryption", Bucket=name, ServerSideEncryptionConfiguration=ENCRYPTION)
        fixed.append("encryption")
    ownership = read_or_none(aws, "get_bucket_ownership_controls", name, "OwnershipControlsNotFoundError") \
        if existed else None
    if not ownership or ownership.get("OwnershipControls") != OWNERSHIP:
        aws.write("s3", "put_bucket_ownership_controls", Bucket=name, OwnershipControls=OWNERSHIP)
        fixed.append("ACLs disabled")
    block = read_or_none(aws, "get_public_access_block", name, "NoSuchPublicAccessBlockConfiguration") \
        if existed else None
    # The block goes first: with BlockPublicPolicy still on, S3 refuses the policy.
    if not block or block.get("PublicAccessBlockConfiguration") != PUBLIC_ACCESS_BLOCK:
        aws.write("s3", "put_public_access_block", Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        fixed.append("public access block (ACLs blocked, this policy allowed)")
    if not existed or _current_policy(aws, name) != policy(cfg):
        aws.write("s3", "put_bucket_policy", Bucket=name, Policy=json.dumps(policy(cfg)))
        fixed.append("public read of the two OIDC documents only")
    if not existed:
        return f"created (s3://{name}; anyone may read {', '.join(public_keys(cfg))}, nothing else)"
    return f"already exists; set {', '.join(fixed)}" if fixed else "already exists"


def _ours(aws: Aws, cfg: ClusterConfig, name: str) -> bool:
    if aws.dry_run:
        return True  # nothing is asked in a dry run: show the deletion it would make
    tags = read_or_none(aws, "get_bucket_tagging", name, "NoSuchTagSet")
    key, value = cfg.ownership_tag
    return tags is not None and {"Key": key, "Value": value} in tags.get("TagSet", [])


def delete(aws: Aws, cfg: ClusterConfig, keep: bool) -> str:
    name = cfg.effective_discovery_bucket
    if keep:
        return f"kept s3://{name} (--keep-discovery-bucket)"
    if not aws.dry_run and not exists(aws, name):
        return "not found"
    if not _ours(aws, cfg, name):
        return f"kept s3://{name} (not created by irisop)"
    empty_and_delete(aws, name)
    return "deleted (with the OIDC documents)"
