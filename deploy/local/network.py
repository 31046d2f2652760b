"""The local stack's own network address, on an interface the stack creates.

Why: pods must reach the API server, the registry and the S3 stand-in, and
the host must reach them too, under one address, so that an image reference
or an endpoint URL means the same thing to the kubelet, to the operator pod
and to a user's shell. 127.0.0.1 cannot be that address (inside a pod it is
the pod itself), and the host's external interface must not be used either:
an unauthenticated registry or S3 stand-in reachable from the network would
be a hole on a user's machine.

So, as kind does with its own bridge, the stack creates an interface of its
own (``irisop-host``: a bridge with no ports, since these VMs' kernels have
no dummy-interface driver) holding one address from a private range that
nothing else on the machine uses. Linux delivers packets to any local address whatever
interface they arrive on, so pods reach it through their bridge gateway and
the host reaches it locally; no route to it exists from outside.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

# The stack's interface and its one address. 10.250.0.0/16 is outside the pod
# range (10.244.0.0/24) and the service range (10.0.0.0/16).
STACK_INTERFACE = "irisop-host"
STACK_ADDRESS = "10.250.0.1"

# Fixed ports on the stack address: the address is ours alone, so nothing
# else can hold them, and users (and the NetworkPolicy) can name them.
APISERVER_PORT = 6443
REGISTRY_PORT = 5000
S3_PORT = 5055

REGISTRY = f"{STACK_ADDRESS}:{REGISTRY_PORT}"
S3_ENDPOINT = f"http://{STACK_ADDRESS}:{S3_PORT}"


class NetworkError(RuntimeError):
    """The stack's interface could not be created."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise NetworkError("ip not found: install the Debian package iproute2") from exc
    except subprocess.CalledProcessError as exc:
        raise NetworkError(f"ip {' '.join(args)} failed: {exc.stderr.strip()}") from exc


def interface_exists() -> bool:
    return Path("/sys/class/net", STACK_INTERFACE).exists()


def ensure_interface() -> str:
    """Create the interface with the stack address (idempotent); return the address.

    A portless bridge rather than a dummy link: the `dummy` driver is a
    module these VMs' kernels do not ship, the bridge driver is built in
    (the CNI bridge needs it anyway).
    """
    if not interface_exists():
        _ip("link", "add", STACK_INTERFACE, "type", "bridge")
    addresses = _ip("-o", "-4", "addr", "show", "dev", STACK_INTERFACE).stdout
    if f" {STACK_ADDRESS}/" not in addresses:
        _ip("addr", "add", f"{STACK_ADDRESS}/32", "dev", STACK_INTERFACE)
    _ip("link", "set", STACK_INTERFACE, "up")
    return STACK_ADDRESS


def remove_interface() -> None:
    """Delete the interface (and with it the address); nothing if it is gone."""
    if interface_exists():
        _ip("link", "delete", STACK_INTERFACE, check=False)


def external_addresses() -> list[str]:
    """IPv4/IPv6 addresses of the host's other interfaces (not loopback, not the
    stack's own, not the pod bridge): where nothing of the stack may listen."""
    own = {STACK_INTERFACE, "lo"}
    found = []
    for line in _ip("-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        dev, family, cidr = parts[1], parts[2], parts[3]
        if dev in own or dev.startswith(("irisop", "veth", "cni")) or family not in ("inet", "inet6"):
            continue
        address = ipaddress.ip_interface(cidr).ip
        if not address.is_link_local:
            found.append(str(address))
    return found


def listening_sockets() -> list[tuple[str, int, int]]:
    """(local address, port, socket inode) of every TCP socket in LISTEN state
    in the host's network namespace."""
    found: list[tuple[str, int, int]] = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            found.append((_decode_proc_address(hex_addr, family), int(hex_port, 16), int(fields[9])))
    return found


def socket_owners() -> dict[int, tuple[int, str]]:
    """socket inode -> (pid, command line) for every process we can read."""
    owners: dict[int, tuple[int, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = (int(proc.name), cmdline)
        except OSError:
            continue
    return owners


def _decode_proc_address(hex_addr: str, family: int) -> str:
    """/proc/net/tcp prints addresses as host-order 32-bit words in hex."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))
