"""The Route53 private hosted zone kops publishes the API and etcd names into.

Only `dns: private` needs one: a zone that answers inside the cluster's VPC,
which is why it is created attached to it. With `dns: none` (kops 1.36's
default) kops reaches the API through its load balancer and no zone exists.
"""
from __future__ import annotations

from .config import ClusterConfig
from .gateway import Aws


def _fqdn(zone: str) -> str:
    return zone.rstrip(".") + "."


def find_zone(aws: Aws, cfg: ClusterConfig) -> str | None:
    """Id of the private zone with our name, or None (also None in dry-run)."""
    wanted = _fqdn(cfg.effective_dns_zone)
    found = aws.read("route53", "list_hosted_zones_by_name", DNSName=wanted)
    for zone in (found or {}).get("HostedZones", []):
        if zone["Name"] == wanted and zone.get("Config", {}).get("PrivateZone"):
            return zone["Id"]
    return None


def ensure(aws: Aws, cfg: ClusterConfig, vpc_id: str) -> str:
    if not cfg.private_dns:
        return "skipped (dns: none, the API is reached through kops' load balancer)"
    zone_id = find_zone(aws, cfg)
    if zone_id is None:
        created = aws.write(
            "route53",
            "create_hosted_zone",
            Name=cfg.effective_dns_zone,
            # Same reference on a retry: Route53 refuses a duplicate instead of making a second zone.
            CallerReference=f"irisop-{cfg.slug}-{vpc_id}",
            VPC={"VPCRegion": cfg.region, "VPCId": vpc_id},
            HostedZoneConfig={"Comment": f"kops private zone of {cfg.name}", "PrivateZone": True},
        )
        zone_id = created["HostedZone"]["Id"]
        tags = [{"Key": k, "Value": v} for k, v in sorted(cfg.aws_tags().items())]
        aws.write("route53", "change_tags_for_resource", ResourceType="hostedzone",
                  ResourceId=zone_id.rsplit("/", 1)[-1], AddTags=tags)
        return f"created ({zone_id.rsplit('/', 1)[-1]}, private, attached to {vpc_id})"
    details = aws.read("route53", "get_hosted_zone", Id=zone_id) or {}
    if vpc_id not in [v.get("VPCId") for v in details.get("VPCs", [])]:
        aws.write("route53", "associate_vpc_with_hosted_zone", HostedZoneId=zone_id,
                  VPC={"VPCRegion": cfg.region, "VPCId": vpc_id})
        return f"already exists; attached to {vpc_id}"
    return "already exists"


def delete(aws: Aws, cfg: ClusterConfig) -> str:
    if not cfg.private_dns:
        return "skipped (dns: none)"
    zone_id = find_zone(aws, cfg)
    if zone_id is None and not aws.dry_run:
        return "not found"
    zone_id = zone_id or "/hostedzone/DRYRUN"
    short_id = zone_id.rsplit("/", 1)[-1]
    tags = aws.read("route53", "list_tags_for_resource", ResourceType="hostedzone", ResourceId=short_id)
    key, value = cfg.ownership_tag
    if tags is not None and {"Key": key, "Value": value} not in tags.get("ResourceTagSet", {}).get("Tags", []):
        return f"kept ({short_id} was not created by irisop)"
    # A zone is only deletable once it holds nothing but its own SOA and NS records.
    records = aws.read("route53", "list_resource_record_sets", HostedZoneId=zone_id) or {}
    apex = _fqdn(cfg.effective_dns_zone)
    doomed = [
        {"Action": "DELETE", "ResourceRecordSet": r}
        for r in records.get("ResourceRecordSets", [])
        if not (r["Type"] in ("SOA", "NS") and r["Name"] == apex)
    ]
    if doomed:
        aws.write("route53", "change_resource_record_sets", HostedZoneId=zone_id, ChangeBatch={"Changes": doomed})
    aws.write("route53", "delete_hosted_zone", Id=zone_id)
    return f"deleted ({short_id})"
