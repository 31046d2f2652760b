"""A real worker node for the local control plane: containerd 2.x + runc,
CNI bridge networking, kubelet, kube-proxy and CoreDNS (issues 5 and 9).

Everything the node writes lives under ``home`` (default: the control plane's
home + /node): containerd's root and state, runc's state, the kubelet root
and pod logs, CNI IPAM state. Only three things are host-global and so the
node is a singleton per machine: the bridge ``irisop0``, the pod subnet's
routes, kube-proxy's iptables chains, and the stack's own interface
(deploy/local/network.py) whose address is the node's InternalIP. ``down`` drains pods, stops every
process, removes kube-proxy's rules, unmounts what is left under ``home`` and
deletes the bridge.

Facts about this VM that shaped the settings are in docs/local-cluster.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from . import binaries, coredns, images, metrics, network, nodeconfig, nodeteardown
from .controlplane import CLUSTER_DOMAIN, ControlPlane, start_current
from .pki import CertSpec
from .process import ManagedProcess, ProcessError, command_lines, free_port, free_ports, http_ok

NODE_NAME = "irisop-node"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "irisop0"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
DEFAULT_INSECURE_REGISTRIES = (network.REGISTRY, "127.0.0.1:5000", "localhost:5000")
# One node per machine: kube-proxy's iptables chains and the bridge are global.
OWNER_FILE = Path("/run/irisop/node-owner")

KUBE_PROXY = CertSpec("kube-proxy", "system:kube-proxy")


class NodeError(ProcessError):
    """The node could not be started or stopped cleanly."""


def node_address() -> str:
    """The node's InternalIP: the stack's own interface address.

    The kubelet and pods need a non-loopback node address (Endpoints and pod
    host IPs may not be 127.0.0.0/8), and it must not be the host's external
    interface, where the kubelet would then listen (deploy/local/network.py).
    """
    try:
        return network.ensure_interface()
    except network.NetworkError as exc:
        raise NodeError(str(exc)) from exc


@dataclass
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    metrics_server: int = 0  # added later: older ports.json files lack it

    @classmethod
    def pick(cls) -> "NodePorts":
        return cls(*free_ports(5))


def _run(argv: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        raise NodeError(f"{' '.join(argv[:4])} failed: {exc.stderr.strip()}") from exc


class Node:
    """The single local node, attached to a ControlPlane."""

    def __init__(self, plane: ControlPlane, home: Path | None = None, *,
                 insecure_registries: tuple[str, ...] = DEFAULT_INSECURE_REGISTRIES,
                 metrics: bool = True) -> None:
        self.plane = plane
        self.home = Path(home) if home is not None else plane.home / "node"
        self.insecure_registries = insecure_registries
        self.metrics = metrics  # run metrics-server (the HPA's metrics.k8s.io API)

    # -- paths -------------------------------------------------------------------
    @property
    def containerd_dir(self) -> Path:
        return self.home / "containerd"

    @property
    def containerd_paths(self) -> nodeconfig.ContainerdPaths:
        return nodeconfig.ContainerdPaths(self.containerd_dir)

    @property
    def containerd_sock(self) -> Path:
        return self.containerd_paths.socket

    @property
    def registry_config_dir(self) -> Path:
        return self.containerd_paths.certs_d

    @property
    def cni_conf_dir(self) -> Path:
        return self.home / "cni" / "net.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.home / "kubelet"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def ports(self) -> NodePorts:
        path = self.home / "ports.json"
        try:
            ports = NodePorts(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            ports = NodePorts.pick()
        else:
            if ports.metrics_server:
                return ports
            ports.metrics_server = free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(ports)))
        return ports

    def ctr(self, *args: str, namespace: str = "k8s.io") -> list[str]:
        ctr = binaries.containerd_bin_dir() / "ctr"
        return [str(ctr), "--address", str(self.containerd_sock), "--namespace", namespace, *args]

    # -- lifecycle ---------------------------------------------------------------
    def up(self) -> Path:
        """Start the control plane if needed, then the node; wait until the
        Node is Ready. Return the admin kubeconfig path."""
        self._claim()
        kubeconfig = self.plane.up()
        bin_dir = binaries.ensure_kube_binaries(binaries.NODE_BINARIES, build=self.plane.build)
        binaries.ensure_node_runtime(build=self.plane.build)
        for name, pkg in (("runc", "runc"), ("iptables", "iptables"), ("conntrack", "conntrack")):
            binaries.system_binary(name, package=pkg, extra_dirs=("/usr/sbin", "/sbin"))
        if not Path(CNI_BIN_DIR, "bridge").exists():
            raise binaries.MissingBinary(f"{CNI_BIN_DIR}/bridge not found; install containernetworking-plugins")
        node_ip = node_address()
        self._prepare_host()
        self._write_containerd_config()
        self.trust_registries(self.insecure_registries)
        self._write_cni_config()
        self._write_identities(node_ip)
        containerd, kubelet, proxy = self.processes(bin_dir, node_ip)
        start_current(containerd, (self.containerd_dir / "config.toml",))
        self._import_pause_image()
        start_current(kubelet, (self.home / "kubelet-config.yaml",))
        start_current(proxy)
        self.wait_node_ready()
        if self.metrics:
            self._start_metrics_server(node_ip)
        self._start_cluster_dns()
        return kubeconfig

    def _start_cluster_dns(self) -> None:
        """CoreDNS as a kube-system Deployment behind the kube-dns Service, as
        kops runs it; its image is the binary built from the Go module."""
        from kubernetes import config

        archive = coredns.image_archive()
        listed = _run(self.ctr("images", "ls", "-q")).stdout.split()
        if coredns.IMAGE not in listed:
            _run(self.ctr("images", "import", str(archive)), timeout=120)
        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            coredns.apply(api)
            coredns.wait_available(api)

    def _start_metrics_server(self, node_ip: str) -> None:
        from kubernetes import config

        exe = metrics.binary(build=self.plane.build)
        metrics.write_identity(self.plane, node_ip)
        port = self.ports().metrics_server
        # RBAC first: metrics-server reads the request-header CA at startup.
        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            metrics.register(api, self.plane, node_ip, port)
            start_current(metrics.process(self.plane, self.logs, node_ip, port, exe))
            metrics.register_apiservice(api, self.plane)

    def _metrics_process(self) -> ManagedProcess:
        # Only name and home matter for status/stop.
        return ManagedProcess(name="metrics-server", argv=[], home=self.logs)

    def down(self) -> None:
        """Drain pods, stop the node's processes and leave nothing mounted.

        The API steps (unregister metrics, drain, delete the Node) are best
        effort: a slow or broken API server must never stop the process-level
        cleanup, or node processes would outlive their state directory.
        """
        if not (self.home / "ports.json").exists():
            return
        containerd, kubelet, proxy = self.processes()
        api_problems = []
        kubeconfig = self.plane.kubeconfig
        if self.plane.running():
            api_problems += _best_effort(self._unregister_metrics)
        self._metrics_process().stop()
        if kubelet.running() and self.plane.running():
            api_problems += _best_effort(lambda: nodeteardown.drain(kubeconfig, NODE_NAME), "drain")
        proxy.stop()
        nodeteardown.remove_kube_proxy_rules(binaries.kube_bin_dir() / "kube-proxy")
        kubelet.stop()
        nodeteardown.remove_kubelet_rules()
        if containerd.running():
            nodeteardown.kill_tasks(self.ctr)
        containerd.stop()
        nodeteardown.kill_stray_shims(self.containerd_sock, self.containerd_dir / "runc")
        _run(["ip", "link", "delete", BRIDGE], check=False)
        if self.plane.running():
            api_problems += _best_effort(lambda: nodeteardown.delete_node(kubeconfig, NODE_NAME), "delete node")
        if OWNER_FILE.exists() and OWNER_FILE.read_text() == str(self.home):
            OWNER_FILE.unlink()
        try:
            nodeteardown.unmount_all(self.home)
        except nodeteardown.TeardownError as exc:  # a mount that survives must be loud
            raise NodeError(str(exc)) from exc
        for problem in api_problems:
            print(f"irisop node down: warning: {problem}", file=sys.stderr)

    def _unregister_metrics(self) -> None:
        from kubernetes import config

        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            metrics.unregister(api)

    def status(self) -> dict[str, int | None]:
        names = ("containerd", "kubelet", "kube-proxy") + (("metrics-server",) if self.metrics else ())
        if not (self.home / "ports.json").exists():
            return dict.fromkeys(names)
        procs = (*self.processes(), *((self._metrics_process(),) if self.metrics else ()))
        return {proc.name: proc.pid() for proc in procs}

    def running(self) -> bool:
        return all(pid is not None for pid in self.status().values())

    def trust_registries(self, registries: tuple[str, ...]) -> None:
        """Let the node pull over plain HTTP from these host:port registries.

        containerd reads certs.d/<host>/hosts.toml at every pull, so this works
        on a running node too (tests add a registry on a free port).
        """
        for registry in registries:
            directory = self.registry_config_dir / registry
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts.toml").write_text(nodeconfig.registry_hosts_toml(registry))

    # -- setup pieces ------------------------------------------------------------
    def _claim(self) -> None:
        """Refuse to start a second node: look for any irisop kubelet whose
        state is elsewhere (the owner file alone misses a node whose state
        directory was deleted while it ran)."""
        mine = f"--root-dir={self.kubelet_dir}".encode()
        for pid, cmdline in command_lines():
            if b"kubelet" in cmdline and f"--hostname-override={NODE_NAME}".encode() in cmdline \
                    and mine not in cmdline:
                args = cmdline.replace(b"\0", b" ").decode(errors="replace")
                raise NodeError(
                    f"another irisop node is running (kubelet pid {pid}: {args[:160]}); stop it "
                    "first: only one node per machine (shared bridge and iptables chains)"
                )
        OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
        OWNER_FILE.write_text(str(self.home))

    def _prepare_host(self) -> None:
        """Kernel settings the node's networking needs (all are already the
        default on this VM; written anyway so a fresh machine works)."""
        for key, value in (("net/ipv4/ip_forward", "1"),
                           ("net/bridge/bridge-nf-call-iptables", "1")):
            path = Path("/proc/sys") / key
            if not path.exists():
                if "bridge" in key:
                    _run(["modprobe", "br_netfilter"], check=False)
                if not path.exists():
                    raise NodeError(f"{path} missing: load the br_netfilter kernel module")
            if path.read_text().strip() != value:
                path.write_text(value)

    def _write_containerd_config(self) -> None:
        self.containerd_dir.mkdir(parents=True, exist_ok=True)
        text = nodeconfig.containerd_config(
            self.containerd_paths,
            runc=binaries.system_binary("runc", package="runc", extra_dirs=("/usr/sbin",)),
            sandbox_image=images.PAUSE_IMAGE, cni_bin_dir=CNI_BIN_DIR, cni_conf_dir=self.cni_conf_dir,
        )
        (self.containerd_dir / "config.toml").write_text(text)

    def _write_cni_config(self) -> None:
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = nodeconfig.cni_conflist(bridge=BRIDGE, pod_cidr=POD_CIDR, ipam_dir=self.home / "cni" / "ipam")
        (self.cni_conf_dir / "10-irisop.conflist").write_text(json.dumps(conflist, indent=2))

    def _node_specs(self, node_ip: str) -> tuple[CertSpec, CertSpec]:
        client = CertSpec("kubelet-client", f"system:node:{NODE_NAME}", organizations=("system:nodes",))
        serving = CertSpec("kubelet-serving", f"system:node:{NODE_NAME}", organizations=("system:nodes",),
                           dns_names=(NODE_NAME, "localhost"), ip_addresses=(node_ip, "127.0.0.1"),
                           server=True, client=False)
        return client, serving

    def _write_identities(self, node_ip: str) -> None:
        client, serving = self._node_specs(node_ip)
        self.plane.pki.ensure_leaf(serving)
        self.plane.write_kubeconfig_for(client)
        self.plane.write_kubeconfig_for(KUBE_PROXY)

    def _kubelet_config(self, node_ip: str) -> Path:
        pki = self.plane.pki
        ports = self.ports()
        config = nodeconfig.kubelet_config(nodeconfig.KubeletInputs(
            node_ip=node_ip, port=ports.kubelet, healthz_port=ports.kubelet_healthz,
            ca_cert=pki.ca_cert, serving_cert=pki.cert("kubelet-serving"),
            serving_key=pki.key("kubelet-serving"), containerd_socket=self.containerd_sock,
            pod_logs_dir=self.home / "pod-logs", cluster_domain=CLUSTER_DOMAIN,
        ))
        path = self.home / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _import_pause_image(self) -> None:
        listed = _run(self.ctr("images", "ls", "-q")).stdout.split()
        if images.PAUSE_IMAGE in listed:
            return
        archive = images.pause_archive()
        _run(self.ctr("images", "import", str(archive)), timeout=120)

    def processes(self, bin_dir: Path | None = None,
                  node_ip: str | None = None) -> tuple[ManagedProcess, ManagedProcess, ManagedProcess]:
        bin_dir = bin_dir or binaries.kube_bin_dir()
        ports = self.ports()
        containerd = ManagedProcess(
            name="containerd",
            argv=[str(binaries.containerd_bin_dir() / "containerd"),
                  "--config", str(self.containerd_dir / "config.toml")],
            # containerd finds its runc shim (containerd-shim-runc-v2) on PATH:
            # the one built with it, not Debian's 1.6 shim.
            env={"PATH": f"{binaries.containerd_bin_dir()}:{os.environ.get('PATH', '')}"},
            home=self.logs,
            ready=self._containerd_ready,
            timeout=60,
        )
        client, _ = self._node_specs(node_ip or "127.0.0.1")
        kubelet_argv = [
            str(bin_dir / "kubelet"),
            f"--config={self._kubelet_config(node_ip) if node_ip else self.home / 'kubelet-config.yaml'}",
            f"--kubeconfig={self.plane.component_kubeconfig(client)}",
            f"--root-dir={self.kubelet_dir}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node_ip or ''}",
            "--v=1",
        ]
        kubelet = ManagedProcess(
            name="kubelet",
            argv=kubelet_argv,
            home=self.logs,
            ready=http_ok(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz"),
            timeout=120,
        )
        proxy = ManagedProcess(
            name="kube-proxy",
            argv=[
                str(bin_dir / "kube-proxy"),
                f"--kubeconfig={self.plane.component_kubeconfig(KUBE_PROXY)}",
                "--proxy-mode=iptables",
                f"--hostname-override={NODE_NAME}",
                f"--cluster-cidr={POD_CIDR}",
                # NodePorts only on the stack's own address, never on the
                # host's external interface.
                f"--nodeport-addresses={network.STACK_ADDRESS}/32",
                f"--healthz-bind-address=127.0.0.1:{ports.proxy_healthz}",
                f"--metrics-bind-address=127.0.0.1:{ports.proxy_metrics}",
                # Leave the host's conntrack sysctls alone: a dev VM's defaults
                # are fine and some VMs refuse the writes.
                "--conntrack-max-per-core=0",
            ],
            home=self.logs,
            ready=http_ok(f"http://127.0.0.1:{ports.proxy_healthz}/healthz"),
            timeout=60,
        )
        return containerd, kubelet, proxy

    def _containerd_ready(self) -> bool:
        if not self.containerd_sock.exists():
            return False
        if subprocess.run(self.ctr("version"), capture_output=True, timeout=10).returncode != 0:
            return False
        try:
            return containerd_booted((self.logs / "containerd.log").read_text(errors="replace"))
        except FileNotFoundError:
            return False

    def wait_node_ready(self, timeout: float = 120.0) -> None:
        from kubernetes import client, config

        with config.new_client_from_config(config_file=str(self.plane.kubeconfig)) as api:
            core = client.CoreV1Api(api)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _node_ready(core):
                    return
                time.sleep(0.5)
        raise NodeError(f"node {NODE_NAME} not Ready after {timeout:.0f}s; see {self.logs}/kubelet.log")


def containerd_booted(log: str) -> bool:
    """Whether the containerd that logged last has booted: every plugin ready, the CRI included.

    Its socket answers ``ctr version`` before the CRI has recovered its
    state, and a kubelet started in that gap exits at once ("validate CRI v1
    runtime API ... server is not initialized yet"; seen in CI). containerd
    2 logs "successfully booted" only once its plugins, the CRI among them,
    report ready. The log is appended across restarts: only the part since
    the last start counts.
    """
    started = log.rfind('msg="starting containerd"')
    return started != -1 and "containerd successfully booted" in log[started:]


def _best_effort(step: Callable[[], None], what: str | None = None) -> list[str]:
    """Run an API step of down(); return its failure as a message instead of raising."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        step()
    except (ApiException, HTTPError, OSError) as exc:
        return [f"{what or step.__name__} failed: {str(exc).splitlines()[0]}"]
    return []


def _node_ready(core: Any) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        node = core.read_node(NODE_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
