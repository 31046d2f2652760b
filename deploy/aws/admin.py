"""The optional admin EC2 instance: a workstation inside the cluster's VPC.

It gets its own /24 subnet with a route to the internet gateway (it installs
its tools at first boot), a security group with no inbound rule (reach it
with SSM Session Manager, or SSH if a key pair is configured and a rule is
added by hand), IMDSv2 only and an encrypted root volume.
"""
from __future__ import annotations

from . import templates
from .config import ClusterConfig
from .gateway import Aws
from .network import admin_subnet_cidr, owned_filter, tag_specs

# Debian publishes its AMIs as public SSM parameters; no hard-coded AMI per region.
DEBIAN_AMI_PARAMETER = "/aws/service/debian/release/12/latest/amd64"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]


def _instance_id(aws: Aws, cfg: ClusterConfig) -> str | None:
    found = aws.read("ec2", "describe_instances", Filters=owned_filter(cfg) + [
        {"Name": "tag:Name", "Values": [cfg.admin_instance_name]},
        {"Name": "instance-state-name", "Values": LIVE_STATES}])
    instances = [i for r in (found or {}).get("Reservations", []) for i in r["Instances"]]
    return instances[0]["InstanceId"] if instances else None


def _subnet(aws: Aws, cfg: ClusterConfig, vpc_id: str) -> str:
    found = aws.read("ec2", "describe_subnets", Filters=owned_filter(cfg) + [
        {"Name": "tag:Name", "Values": [cfg.admin_instance_name]}])
    if (found or {}).get("Subnets"):
        return found["Subnets"][0]["SubnetId"]
    subnet = aws.write("ec2", "create_subnet", VpcId=vpc_id, CidrBlock=admin_subnet_cidr(cfg),
                       AvailabilityZone=cfg.effective_zones[0],
                       TagSpecifications=tag_specs(cfg, "subnet", cfg.admin_instance_name))
    subnet_id = subnet["Subnet"]["SubnetId"]
    aws.write("ec2", "modify_subnet_attribute", SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
    gateways = aws.read("ec2", "describe_internet_gateways",
                        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]) or {}
    igw_id = (gateways.get("InternetGateways") or [{"InternetGatewayId": "igw-dryrun"}])[0]["InternetGatewayId"]
    table = aws.write("ec2", "create_route_table", VpcId=vpc_id,
                      TagSpecifications=tag_specs(cfg, "route-table", cfg.admin_instance_name))
    table_id = table.get("RouteTable", {}).get("RouteTableId", "rtb-dryrun")
    aws.write("ec2", "create_route", RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    aws.write("ec2", "associate_route_table", RouteTableId=table_id, SubnetId=subnet_id)
    return subnet_id


def _security_group(aws: Aws, cfg: ClusterConfig, vpc_id: str) -> str:
    found = aws.read("ec2", "describe_security_groups", Filters=owned_filter(cfg) + [
        {"Name": "group-name", "Values": [cfg.admin_instance_name]}])
    if (found or {}).get("SecurityGroups"):
        return found["SecurityGroups"][0]["GroupId"]
    group = aws.write("ec2", "create_security_group", GroupName=cfg.admin_instance_name, VpcId=vpc_id,
                      Description="irisop admin instance: no inbound access, use SSM Session Manager",
                      TagSpecifications=tag_specs(cfg, "security-group", cfg.admin_instance_name))
    return group.get("GroupId", "sg-dryrun")


def _ami(aws: Aws, cfg: ClusterConfig) -> str:
    if cfg.admin_ami:
        return cfg.admin_ami
    found = aws.read("ssm", "get_parameter", Name=DEBIAN_AMI_PARAMETER)
    return found["Parameter"]["Value"] if found else f"<ssm:{DEBIAN_AMI_PARAMETER}>"


def ensure(aws: Aws, cfg: ClusterConfig, vpc_id: str) -> str:
    if not cfg.admin_instance:
        return "skipped (admin_instance: false)"
    existing = _instance_id(aws, cfg)
    if existing:
        return f"already exists ({existing})"
    params = dict(
        ImageId=_ami(aws, cfg), InstanceType=cfg.admin_instance_type, MinCount=1, MaxCount=1,
        SubnetId=_subnet(aws, cfg, vpc_id), SecurityGroupIds=[_security_group(aws, cfg, vpc_id)],
        UserData=templates.admin_user_data(cfg),
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "Encrypted": True}}],
        TagSpecifications=tag_specs(cfg, "instance", cfg.admin_instance_name),
    )
    if cfg.admin_key_name:
        params["KeyName"] = cfg.admin_key_name
    started = aws.write("ec2", "run_instances", **params)
    return f"created ({started['Instances'][0]['InstanceId']})"


def delete(aws: Aws, cfg: ClusterConfig) -> str:
    instance_id = _instance_id(aws, cfg)
    if instance_id is None and not (aws.dry_run and cfg.admin_instance):
        return "not found"
    instance_id = instance_id or "i-dryrun"
    aws.write("ec2", "terminate_instances", InstanceIds=[instance_id])
    if not aws.dry_run:
        # Its network interface must be gone before the VPC step can delete the subnet and group.
        aws.client("ec2").get_waiter("instance_terminated").wait(
            InstanceIds=[instance_id], WaiterConfig={"Delay": 5, "MaxAttempts": 120})
    return f"terminated ({instance_id})"
