"""The one door to AWS: every call goes through `read` or `write`.

Splitting reads from writes is what makes --dry-run honest: in dry-run mode
no call is made at all (reads answer None, meaning "unknown, assume absent"),
and each write is printed with its parameters and answered with a placeholder
shaped like the real response, so later steps can still name what they would
create.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import ClientError

# Placeholders for writes whose answers later steps read (ids, ARNs, URIs).
_DRY_RESPONSES: dict[str, dict[str, Any]] = {
    "ec2.create_vpc": {"Vpc": {"VpcId": "vpc-dryrun"}},
    "ec2.create_internet_gateway": {"InternetGateway": {"InternetGatewayId": "igw-dryrun"}},
    "ec2.create_subnet": {"Subnet": {"SubnetId": "subnet-dryrun"}},
    "ec2.run_instances": {"Instances": [{"InstanceId": "i-dryrun"}]},
    "route53.create_hosted_zone": {"HostedZone": {"Id": "/hostedzone/DRYRUN"}},
    "iam.create_policy": {"Policy": {"Arn": "arn:aws:iam::000000000000:policy/dry-run"}},
    "ecr.create_repository": {"repository": {"repositoryUri": "000000000000.dkr.ecr.dry-run.amazonaws.com/dry-run"}},
}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _show(params: dict[str, Any]) -> str:
    """Parameters on one line; policy documents stay readable JSON."""
    return ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in params.items())


@dataclass
class Aws:
    region: str
    dry_run: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (service.op, "read"/"write") made or shown
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3  # heavy; only needed once a step touches AWS

            self._clients[service] = boto3.session.Session(region_name=self.region).client(service)
        return self._clients[service]

    def read(self, service: str, op: str, **params: Any) -> dict[str, Any] | None:
        """A call that changes nothing. None in dry-run mode (nothing is asked)."""
        self.calls.append((f"{service}.{op}", "read"))
        if self.dry_run:
            return None
        return getattr(self.client(service), op)(**params)

    def write(self, service: str, op: str, **params: Any) -> dict[str, Any]:
        """A call that changes AWS. Printed, not made, in dry-run mode."""
        self.calls.append((f"{service}.{op}", "write"))
        if self.dry_run:
            print(f"      would call {service}.{op}({_show(params)})", file=self.out, flush=True)
            return json.loads(json.dumps(_DRY_RESPONSES.get(f"{service}.{op}", {})))
        return getattr(self.client(service), op)(**params)

    def writes(self) -> list[str]:
        return [name for name, kind in self.calls if kind == "write"]
