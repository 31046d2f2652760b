"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler.

Why every piece is real: the operator's behaviour depends on server-side
apply, garbage collection through owner references, ReplicaSets created by the
Deployment controller and HPA validation, none of which a fake API reproduces
(issue 3). Each component is a ManagedProcess with its pid and log under
``home``; ports are chosen once and remembered in ``home/ports.json`` so a
second ``up`` finds the same cluster and returns in well under a second.
"""
from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import requests

from . import binaries, network
from .kubeconfig import write_kubeconfig
from .pki import PKI, CertSpec
from .process import ManagedProcess, ProcessError, free_ports, http_ok, port_open, state_dir

# A /16: the operator benchmark creates 1,000 Services (N=500, operator and
# plain client); a /24 runs out at 254 ("failed to allocate a serviceIP").
SERVICE_CIDR = "10.0.0.0/16"
# The first address of the service range: the in-cluster `kubernetes` Service.
KUBERNETES_SERVICE_IP = "10.0.0.1"
CLUSTER_DOMAIN = "cluster.local"
SERVICE_ACCOUNT_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

APISERVER_SANS_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
)
APISERVER_SANS_IP = ("127.0.0.1", KUBERNETES_SERVICE_IP)
LOOPBACK = "127.0.0.1"

# Client identities. The names are the ones the API server's bootstrap RBAC
# policy already grants rights to, so no extra RoleBindings are needed.
ADMIN = CertSpec("admin", "irisop-admin", organizations=("system:masters",))
CONTROLLER_MANAGER = CertSpec("controller-manager", "system:kube-controller-manager")
SCHEDULER = CertSpec("scheduler", "system:kube-scheduler")
# The API server's identity towards kubelets (logs, exec, port-forward).
APISERVER_KUBELET_CLIENT = CertSpec(
    "apiserver-kubelet-client", "irisop-apiserver-kubelet-client", organizations=("system:masters",)
)


def apiserver_serving(address: str) -> CertSpec:
    """The API server's certificate: valid for the `kubernetes` Service (how
    pods reach it), for loopback and for the address it listens on."""
    ips = tuple(dict.fromkeys((*APISERVER_SANS_IP, address)))
    return CertSpec("apiserver", "kube-apiserver", dns_names=APISERVER_SANS_DNS,
                    ip_addresses=ips, server=True, client=False)


# controller-manager and scheduler serve /healthz on loopback; a CA-signed
# certificate lets the readiness probe verify TLS instead of turning it off.
# The aggregation layer's client (API server -> metrics-server and other
# extension API servers). Signed by the one CA; the API server only trusts
# this CN for request headers, so other client certs cannot impersonate.
FRONT_PROXY_CLIENT = CertSpec("front-proxy-client", "front-proxy-client")
LOOPBACK_SERVING = CertSpec(
    "loopback-serving", "irisop-loopback", dns_names=("localhost",),
    ip_addresses=("127.0.0.1",), server=True, client=False,
)


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def pick(cls) -> "Ports":
        return cls(*free_ports(5))


def start_current(proc: ManagedProcess, config_files: tuple[Path, ...] = ()) -> bool:
    """Start proc, restarting it first if it runs with another configuration.

    A running component keeps the flags it was started with; after this code
    changes a flag or a config file (or the node IP changes) a plain
    idempotent start would leave the old process in place. The command line
    and the config files' contents are stamped next to the pid file and
    compared. Return True if a process was started.
    """
    stamp = proc.home / f"{proc.name}.argv"
    wanted = json.dumps([list(proc.argv), [f.read_text() for f in config_files]])
    current = stamp.read_text() if stamp.exists() else None
    if proc.running() and current != wanted:  # no stamp: started by older code
        proc.stop()
    proc.home.mkdir(parents=True, exist_ok=True)
    # Stamp before starting: if start() fails on readiness, the stamp still
    # describes the process that is left running.
    stamp.write_text(wanted)
    return proc.start()


def tls_ok(url: str, ca: Path, cert: tuple[str, str] | None = None) -> Callable[[], bool]:
    """Readiness probe over verified TLS, optionally with a client certificate."""

    def probe() -> bool:
        try:
            return requests.get(url, timeout=2, verify=str(ca), cert=cert).ok
        except requests.RequestException:
            return False

    return probe


class ControlPlane:
    """The control plane under one state directory.

    up() is idempotent: running components are left alone, missing ones are
    started, and the admin kubeconfig is (re)written.
    """

    def __init__(self, home: Path | None = None, *, build: bool = True,
                 address: str = LOOPBACK, apiserver_port: int | None = None) -> None:
        self.home = Path(home) if home is not None else state_dir() / "controlplane"
        self.build = build  # build missing Kubernetes binaries (minutes) instead of failing
        self.pki = PKI(self.home / "pki")
        # Where the API server listens. Loopback serves host-only clients
        # (unit-level integration tests, benchmarks); the local stack passes
        # its own interface's address (deploy/local/network.py) so that pods
        # reach the API server through the `kubernetes` Service.
        self.address = address
        self.apiserver_port = apiserver_port

    # -- paths ---------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters): what users and tests use."""
        return self.home / "admin.kubeconfig"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def _ports_file(self) -> Path:
        return self.home / "ports.json"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports().apiserver}"

    @property
    def reachable_from_pods(self) -> bool:
        return self.address != LOOPBACK

    def ports(self) -> Ports:
        """Ports chosen by the first up(); chosen anew only if one got taken while down."""
        try:
            saved = Ports(**json.loads(self._ports_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            saved = None
        if saved is not None:
            return saved
        ports = Ports.pick()
        if self.apiserver_port is not None:
            ports.apiserver = self.apiserver_port
        self.home.mkdir(parents=True, exist_ok=True)
        self._ports_file.write_text(json.dumps(asdict(ports)))
        return ports

    def _refresh_ports_if_taken(self) -> None:
        """Before a cold start, forget saved ports that another program now holds."""
        if not self._ports_file.exists() or any(pid for pid in self.status().values()):
            return
        if any(port_open(port) for port in asdict(self.ports()).values()
               if port != self.apiserver_port):
            self._ports_file.unlink(missing_ok=True)

    # -- lifecycle -----------------------------------------------------------
    def up(self) -> Path:
        """Start whatever is not running; return the admin kubeconfig path."""
        bin_dir = binaries.ensure_kube_binaries(binaries.CONTROL_PLANE_BINARIES, build=self.build)
        etcd_exe = binaries.system_binary("etcd", package="etcd-server")
        if self.address == network.STACK_ADDRESS:
            network.ensure_interface()
        self._refresh_ports_if_taken()
        self._ensure_pki()
        self._write_kubeconfigs()
        etcd, apiserver, controller_manager, scheduler = self.processes(bin_dir, etcd_exe)
        for proc in (etcd, apiserver, controller_manager, scheduler):
            start_current(proc)
        return self.kubeconfig

    def down(self) -> None:
        """Stop every component, dependants first. Data and certificates stay."""
        if not self._ports_file.exists():
            return
        etcd, *others = self.processes()
        # Each takes ~2 s to exit gracefully; none needs another while
        # stopping, except that etcd must outlive the API server.
        with ThreadPoolExecutor(len(others)) as pool:
            list(pool.map(lambda proc: proc.stop(), others))
        etcd.stop()

    def destroy(self) -> None:
        """down() and delete the whole state directory (etcd data included)."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)

    def status(self) -> dict[str, int | None]:
        """Component name -> pid, or None when it is not running."""
        if not self._ports_file.exists():  # never started here: create nothing
            return dict.fromkeys(COMPONENTS)
        return {proc.name: proc.pid() for proc in self.processes()}

    def running(self) -> bool:
        return all(pid is not None for pid in self.status().values())

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /readyz answers, e.g. after the API server restarted."""
        probe = self._apiserver_ready()
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise ProcessError(f"kube-apiserver at {self.server} not ready after {timeout:.0f}s")
            time.sleep(0.2)

    # -- pieces ----------------------------------------------------------------
    def _ensure_pki(self) -> None:
        self.pki.ensure_ca()
        self.pki.ensure_service_account_keys()
        for spec in (ADMIN, CONTROLLER_MANAGER, SCHEDULER, APISERVER_KUBELET_CLIENT,
                     apiserver_serving(self.address), LOOPBACK_SERVING, FRONT_PROXY_CLIENT):
            self.pki.ensure_leaf(spec)

    def component_kubeconfig(self, spec: CertSpec) -> Path:
        return self.home / f"{spec.name}.kubeconfig"

    def write_kubeconfig_for(self, spec: CertSpec) -> Path:
        """Issue spec's client certificate and a kubeconfig that uses it."""
        crt, key = self.pki.ensure_leaf(spec)
        return write_kubeconfig(
            self.component_kubeconfig(spec), server=self.server, ca_cert=self.pki.ca_cert,
            client_cert=crt, client_key=key, user=spec.common_name,
        )

    def _write_kubeconfigs(self) -> None:
        for spec in (CONTROLLER_MANAGER, SCHEDULER):
            self.write_kubeconfig_for(spec)
        crt, key = self.pki.ensure_leaf(ADMIN)
        write_kubeconfig(
            self.kubeconfig, server=self.server, ca_cert=self.pki.ca_cert,
            client_cert=crt, client_key=key, user="admin",
        )

    def _apiserver_ready(self) -> Callable[[], bool]:
        return tls_ok(
            f"{self.server}/readyz", self.pki.ca_cert,
            cert=(str(self.pki.cert(ADMIN.name)), str(self.pki.key(ADMIN.name))),
        )

    def processes(
        self, bin_dir: Path | None = None, etcd_exe: str = "etcd"
    ) -> tuple[ManagedProcess, ManagedProcess, ManagedProcess, ManagedProcess]:
        """The four components in start order (status/down need no binaries)."""
        bin_dir = bin_dir or binaries.kube_bin_dir()
        ports = self.ports()
        pki = self.pki
        etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        # Plain HTTP is fine for etcd: it listens on loopback only and the API
        # server is its one client.
        etcd = ManagedProcess(
            name="etcd",
            argv=[
                etcd_exe, "--name", "irisop", "--data-dir", str(self.home / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"irisop={peer_url}",
                # A dev cluster does not need fsync-heavy durability tuning, but
                # it must not fill the disk: compact history hourly.
                "--auto-compaction-retention", "1",
                "--quota-backend-bytes", str(2 * 1024**3),
            ],
            home=self.logs,
            ready=http_ok(f"{etcd_url}/health"),
            timeout=60,
        )
        apiserver = ManagedProcess(
            name="kube-apiserver",
            argv=[
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=Node,RBAC",
                # On top of the default admission chain: nodes may only edit
                # their own Node and their own pods.
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={pki.cert(APISERVER_KUBELET_CLIENT.name)}",
                f"--kubelet-client-key={pki.key(APISERVER_KUBELET_CLIENT.name)}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                # The node's name is not in DNS; its InternalIP is in the
                # kubelet's serving certificate.
                "--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
                # Request-header authentication for aggregated APIs. Without it
                # every component logs "missing content for CA bundle" forever.
                f"--requestheader-client-ca-file={pki.ca_cert}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT.common_name}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.cert(FRONT_PROXY_CLIENT.name)}",
                f"--proxy-client-key-file={pki.key(FRONT_PROXY_CLIENT.name)}",
                # On the stack's address the `kubernetes` Service gets this
                # address as its endpoint (the default lease reconciler), as on
                # a kops cluster. On loopback it cannot: Endpoints may not point
                # at 127.0.0.0/8, and the reconciler would log a validation
                # error every 10 s; the Service then has no endpoints, which
                # only matters to in-cluster clients.
                f"--endpoint-reconciler-type={'lease' if self.reachable_from_pods else 'none'}",
                "--profiling=false",
            ],
            home=self.logs,
            ready=self._apiserver_ready(),
            # Cold start runs storage migrations and RBAC bootstrap; on a busy
            # 2-core VM that has taken tens of seconds.
            timeout=180,
        )
        common = [
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki.cert(LOOPBACK_SERVING.name)}",
            f"--tls-private-key-file={pki.key(LOOPBACK_SERVING.name)}",
            # One replica of each: leader election would only add a Lease write
            # every few seconds and a startup delay.
            "--leader-elect=false",
        ]
        cm_kubeconfig = self.component_kubeconfig(CONTROLLER_MANAGER)
        controller_manager = ManagedProcess(
            name="kube-controller-manager",
            argv=[
                str(bin_dir / "kube-controller-manager"),
                *common,
                f"--secure-port={ports.controller_manager}",
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                # Each controller gets its own service account, so RBAC denials
                # name the controller instead of one shared super-identity.
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--cluster-name=irisop-local",
                # Local-cluster tuning so an HPA demo/test sees scale-up and
                # scale-down within a minute (defaults: 15 s and 5 min). HPAs
                # that set spec.behavior keep their own windows.
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--horizontal-pod-autoscaler-downscale-stabilization=30s",
            ],
            home=self.logs,
            ready=tls_ok(f"https://127.0.0.1:{ports.controller_manager}/healthz", pki.ca_cert),
            timeout=90,
        )
        sched_kubeconfig = self.component_kubeconfig(SCHEDULER)
        scheduler = ManagedProcess(
            name="kube-scheduler",
            argv=[
                str(bin_dir / "kube-scheduler"),
                *common,
                f"--secure-port={ports.scheduler}",
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
            ],
            home=self.logs,
            ready=tls_ok(f"https://127.0.0.1:{ports.scheduler}/healthz", pki.ca_cert),
            timeout=90,
        )
        return etcd, apiserver, controller_manager, scheduler
