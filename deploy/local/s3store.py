"""The local stack's S3 stand-in: SeaweedFS, on disk, so nothing is lost on restart.

One ``weed server`` process runs SeaweedFS's master, volume server, filer and
S3 gateway. Only the S3 gateway listens on the address the caller names (the
stack's own address, where pods reach it); the master, volume server and filer
have unauthenticated HTTP APIs, so they listen on loopback only, on ports
chosen once per data directory and recorded there (a restart finds the same
layout). Data (volumes, the filer's metadata, the master's state) lives under
``home/data``.

The gateway accepts one static identity, the same fake keys moto accepted
("testing"/"testing", set by deploy/overlays/local), signed with SigV4, and
path-style addressing. Versioning and ETags behave as on S3, which the
operator's integrity check relies on (operator/artifact.py).

moto stays the stand-in for the AWS APIs (Route53, IAM, EC2, ECR tokens):
tests/fixtures/aws.py.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import requests

from .. import versions
from .process import ManagedProcess, cache_dir, free_ports, port_open, state_dir

DEFAULT_PORT = 5055
# Fake keys, the same moto accepted: the store is reachable only from this
# machine (loopback or the stack's own address); these are not secrets.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
BUILD_SCRIPT = Path(__file__).with_name("build-seaweedfs.sh")
# Volumes are files that grow up to this size; small, since every bucket
# (a SeaweedFS collection) grows volumes of its own.
VOLUME_SIZE_LIMIT_MB = 64


def version() -> str:
    return versions.get("SEAWEEDFS_VERSION")


def weed_binary() -> Path:
    return cache_dir() / "seaweedfs" / version() / "bin" / "weed"


def ensure_weed(build: bool = True) -> Path:
    """The `weed` executable, built once from the Go module (build-seaweedfs.sh)."""
    from .binaries import MissingBinary, run_build_script

    exe = weed_binary()
    if os.access(exe, os.X_OK):
        return exe
    if not build:
        raise MissingBinary(f"{exe} not built; run {BUILD_SCRIPT}")
    run_build_script(BUILD_SCRIPT)
    return exe


@dataclass(frozen=True)
class InternalPorts:
    """The loopback ports of the services behind the gateway (HTTP and gRPC).

    gRPC ports are explicit: SeaweedFS's default (HTTP port + 10000) overflows
    for a port above 55535.
    """

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3_grpc: int

    @classmethod
    def load_or_allocate(cls, path: Path, running: bool = False) -> InternalPorts:
        """The ports recorded beside the data, or fresh free ones (recorded).

        While the store runs, its recorded ports are the ones it holds. When
        it does not, fresh ones replace a recorded set of which one is taken.
        """
        try:
            recorded = cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            recorded = None
        if recorded is not None and (running or all(_free(port) for port in asdict(recorded).values())):
            return recorded
        ports = cls(*free_ports(len(cls.__dataclass_fields__)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(ports)))
        return ports


def _free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def identities() -> dict:
    """SeaweedFS's static S3 identity file: one admin identity, the fake keys; no anonymous access."""
    return {"identities": [{
        "name": "irisop-local",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}


def weed_argv(exe: Path, host: str, port: int, home: Path, ports: InternalPorts) -> list[str]:
    data = home / "data"
    return [
        str(exe), "server",
        # Everything on loopback except the gateway, which binds host alone.
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.ip.bind={host}",
        f"-dir={data}",
        f"-master.port={ports.master}", f"-master.port.grpc={ports.master_grpc}",
        "-master.telemetry=false",  # on by default: it would report to seaweedfs.com
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        # A lone master resuming its raft state elects itself after this
        # timeout (default 10 s: every restart would wait that long).
        "-master.electionTimeout=1s",
        f"-volume.port={ports.volume}", f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.max=0",  # as many volumes as the disk holds
        "-volume.preStopSeconds=0",  # no cluster to drain: stop at once
        "-filer", f"-filer.port={ports.filer}", f"-filer.port.grpc={ports.filer_grpc}",
        f"-filer.localSocket={home / 'filer.sock'}",
        "-s3", f"-s3.port={port}", f"-s3.port.grpc={ports.s3_grpc}",
        f"-s3.config={home / 's3.json'}", f"-s3.localSocket={home / 's3.sock'}",
        # The gateway's side services (Iceberg and Lance catalogs) stay off.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # A bucket is made by CreateBucket, as on S3, never by a first upload.
        "-s3.autoCreateBucket=false",
    ]


@dataclass
class S3Store(ManagedProcess):
    """A ManagedProcess that builds `weed` first if it is missing, and stops in
    about a second instead of the full grace period."""

    internal: InternalPorts | None = None

    def start(self) -> bool:
        ensure_weed()
        return super().start()

    def stop(self, grace: float = 10.0) -> None:
        """TERM, wait until the volume server and the filer have shut down, then the rest.

        SeaweedFS 4.53 runs its shutdown hooks in reverse start order: the
        volume server closes its volumes, the filer closes its store, and then
        the filer's last metadata-log flush waits forever for a volume server
        that is gone (the process never exits on TERM). Object data and filer
        entries are written synchronously and are complete at that point; the
        log it waits to flush only feeds change subscriptions. So once both
        have stopped listening, the remaining master and gateway are killed.
        """
        pid = self.pid()
        if pid is not None and self.internal is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.pid() is not None and \
                    (port_open(self.internal.volume) or port_open(self.internal.filer)):
                time.sleep(0.05)
        super().stop(grace=0.5 if pid is not None else grace)


def s3_store(port: int = DEFAULT_PORT, host: str = "127.0.0.1", home: Path | None = None) -> S3Store:
    """SeaweedFS's S3 gateway on host:port, its data under home (default: the stack's state dir)."""
    home = home or state_dir() / "s3store"
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "s3.json"
    config.write_text(json.dumps(identities()))
    config.chmod(0o600)
    name = f"s3store-{port}"
    running = ManagedProcess(name=name, argv=[str(weed_binary())], home=home).running()
    ports = InternalPorts.load_or_allocate(home / "ports.json", running=running)
    return S3Store(
        name=name,
        argv=weed_argv(weed_binary(), host, port, home, ports),
        home=home,
        ready=ready_probe(host, port, ports.master),
        timeout=90,
        internal=ports,
    )


def endpoint_url(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}"


def aws_env(port: int = DEFAULT_PORT, host: str = "127.0.0.1", region: str = REGION) -> dict[str, str]:
    """Environment that points boto3 (and the operator) at the store."""
    return {"AWS_ENDPOINT_URL": endpoint_url(port, host), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}


def client(port: int = DEFAULT_PORT, host: str = "127.0.0.1"):  # -> botocore S3 client
    """A boto3 S3 client on the store, path-style, with the store's keys."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url(port, host), region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10,
                      retries={"max_attempts": 1}))


def ready_probe(host: str, port: int, master_port: int) -> Callable[[], bool]:
    """Ready when a signed ListBuckets succeeds (gateway, filer and the keys
    work) and the master knows a volume server with its volumes (before its
    first heartbeat, reads of stored objects and all writes fail)."""
    import botocore.exceptions

    s3 = client(port, host)

    def probe() -> bool:
        try:
            s3.list_buckets()
            topology = requests.get(f"http://127.0.0.1:{master_port}/dir/status", timeout=1).json()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                requests.RequestException, ValueError):
            return False
        return _has_writable_volume_server(topology)

    return probe


def _has_writable_volume_server(status: dict) -> bool:
    topology = status.get("Topology") or {}
    nodes = [node for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
             for node in rack.get("DataNodes") or []]
    return bool(nodes) and topology.get("Max", 0) > 0
