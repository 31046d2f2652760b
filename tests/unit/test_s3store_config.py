"""The S3 stand-in's pure parts: the command line, the identity file, the recorded ports."""
from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Iterator

from irisop_deploy.local import s3store


def _argv(host: str = "10.250.0.1", port: int = 5055) -> list[str]:
    ports = s3store.InternalPorts(*range(40001, 40008))
    return s3store.weed_argv(Path("/bin/weed"), host, port, Path("/state/s3"), ports)


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.lstrip("-").split("=", 1) for arg in argv if arg.startswith("-") and "=" in arg)


def test_only_the_gateway_binds_the_address_asked_for() -> None:
    flags = _flags(_argv())
    assert flags["s3.ip.bind"] == "10.250.0.1" and flags["s3.port"] == "5055"
    assert flags["ip.bind"] == "127.0.0.1" and flags["ip"] == "127.0.0.1"
    # Side listeners are off, and nothing phones home.
    assert flags["s3.port.iceberg"] == "0" and flags["s3.port.lance"] == "0"
    assert flags["master.telemetry"] == "false"
    assert flags["s3.autoCreateBucket"] == "false"


def test_every_grpc_port_is_explicit() -> None:
    # SeaweedFS's default gRPC port is HTTP port + 10000: past 65535 for a high free port.
    flags = _flags(_argv())
    for service in ("master", "volume", "filer", "s3"):
        assert f"{service}.port.grpc" in flags


def test_data_and_sockets_live_under_home() -> None:
    flags = _flags(_argv())
    assert flags["dir"] == "/state/s3/data"
    assert flags["filer.localSocket"].startswith("/state/s3/")
    assert flags["s3.localSocket"].startswith("/state/s3/")
    assert flags["s3.config"] == "/state/s3/s3.json"


def test_identity_file_holds_only_the_fake_keys() -> None:
    (identity,) = s3store.identities()["identities"]
    assert identity["credentials"] == [{"accessKey": "testing", "secretKey": "testing"}]
    assert "anonymous" not in json.dumps(s3store.identities())


def test_ports_are_recorded_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    first = s3store.InternalPorts.load_or_allocate(path)
    assert len(set(vars(first).values())) == 7
    assert s3store.InternalPorts.load_or_allocate(path) == first


@contextlib.contextmanager
def _listening_on(port: int) -> Iterator[None]:
    """Someone else's listener on port, for the duration."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield


def test_a_taken_recorded_port_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    first = s3store.InternalPorts.load_or_allocate(path)
    with _listening_on(first.filer):
        second = s3store.InternalPorts.load_or_allocate(path)
    assert second.filer != first.filer
    assert json.loads(path.read_text())["filer"] == second.filer


def test_a_running_store_keeps_its_recorded_ports(tmp_path: Path) -> None:
    # Its own listeners make them look taken: they must not be replaced.
    path = tmp_path / "ports.json"
    first = s3store.InternalPorts.load_or_allocate(path)
    with _listening_on(first.master):
        assert s3store.InternalPorts.load_or_allocate(path, running=True) == first


def test_writable_only_with_a_registered_volume_server() -> None:
    def status(nodes: list, free: int) -> dict:
        return {"Topology": {"Max": free, "DataCenters": [{"Racks": [{"DataNodes": nodes}]}]}}

    assert s3store._has_writable_volume_server(status([{"Url": "127.0.0.1:1"}], 100))
    assert not s3store._has_writable_volume_server(status([], 0))
    assert not s3store._has_writable_volume_server({"Topology": {}})
