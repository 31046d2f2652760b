"""The cluster's VPC: ours, tagged, handed to kops as a shared VPC.

Why not let kops create it: a Route53 private zone can only be created
attached to an existing VPC, and the admin instance should live next to the
cluster. kops fills the shared VPC with its own subnets and route tables and
leaves the VPC itself alone on `kops delete cluster`, so `delete` removes it.
"""
from __future__ import annotations

import ipaddress

from .config import ClusterConfig
from .gateway import Aws


def tag_specs(cfg: ClusterConfig, resource: str, name: str) -> list[dict]:
    tags = [{"Key": k, "Value": v} for k, v in sorted({**cfg.aws_tags(), "Name": name}.items())]
    return [{"ResourceType": resource, "Tags": tags}]


def owned_filter(cfg: ClusterConfig) -> list[dict]:
    key, value = cfg.ownership_tag
    return [{"Name": f"tag:{key}", "Values": [value]}]


def admin_subnet_cidr(cfg: ClusterConfig) -> str:
    """The VPC's last /24: far from the /19s kops allocates from the start of the range."""
    return str(list(ipaddress.ip_network(cfg.vpc_cidr).subnets(new_prefix=24))[-1])


def find_vpc(aws: Aws, cfg: ClusterConfig) -> str | None:
    found = aws.read("ec2", "describe_vpcs", Filters=owned_filter(cfg))
    vpcs = (found or {}).get("Vpcs", [])
    return vpcs[0]["VpcId"] if vpcs else None


def ensure(aws: Aws, cfg: ClusterConfig) -> tuple[str, str]:
    """Return (status, vpc id)."""
    vpc_id = find_vpc(aws, cfg)
    status = "already exists"
    if vpc_id is None:
        vpc = aws.write("ec2", "create_vpc", CidrBlock=cfg.vpc_cidr, TagSpecifications=tag_specs(cfg, "vpc", cfg.name))
        vpc_id = vpc["Vpc"]["VpcId"]
        # Private hosted zones only answer inside VPCs with both DNS attributes on.
        aws.write("ec2", "modify_vpc_attribute", VpcId=vpc_id, EnableDnsSupport={"Value": True})
        aws.write("ec2", "modify_vpc_attribute", VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        status = "created"
    gateways = aws.read("ec2", "describe_internet_gateways", Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])
    if not (gateways or {}).get("InternetGateways"):
        # kops reuses the shared VPC's internet gateway for its public subnets.
        igw = aws.write("ec2", "create_internet_gateway", TagSpecifications=tag_specs(cfg, "internet-gateway", cfg.name))
        igw_id = igw["InternetGateway"]["InternetGatewayId"]
        aws.write("ec2", "attach_internet_gateway", InternetGatewayId=igw_id, VpcId=vpc_id)
        if status != "created":
            status = "already exists; attached an internet gateway"
    return f"{status} ({vpc_id})", vpc_id


def delete(aws: Aws, cfg: ClusterConfig) -> str:
    vpc_id = find_vpc(aws, cfg)
    if vpc_id is None and not aws.dry_run:
        return "not found"
    vpc_id = vpc_id or "vpc-dryrun"
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    gateways = aws.read("ec2", "describe_internet_gateways", Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])
    for igw in (gateways or {}).get("InternetGateways", []):
        aws.write("ec2", "detach_internet_gateway", InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc_id)
        aws.write("ec2", "delete_internet_gateway", InternetGatewayId=igw["InternetGatewayId"])
    tables = aws.read("ec2", "describe_route_tables", Filters=vpc_filter)
    for table in (tables or {}).get("RouteTables", []):
        associations = table.get("Associations", [])
        if any(a.get("Main") for a in associations):
            continue  # the main table goes with the VPC
        for association in associations:
            aws.write("ec2", "disassociate_route_table", AssociationId=association["RouteTableAssociationId"])
        aws.write("ec2", "delete_route_table", RouteTableId=table["RouteTableId"])
    subnets = aws.read("ec2", "describe_subnets", Filters=vpc_filter)
    for subnet in (subnets or {}).get("Subnets", []):
        aws.write("ec2", "delete_subnet", SubnetId=subnet["SubnetId"])
    groups = aws.read("ec2", "describe_security_groups", Filters=vpc_filter)
    for group in (groups or {}).get("SecurityGroups", []):
        if group["GroupName"] != "default":
            aws.write("ec2", "delete_security_group", GroupId=group["GroupId"])
    aws.write("ec2", "delete_vpc", VpcId=vpc_id)
    return f"deleted ({vpc_id})"
