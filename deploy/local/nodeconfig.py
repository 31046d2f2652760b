"""Pure renderers for the local node's configuration files.

containerd's config.toml, the CNI network list, the kubelet's
KubeletConfiguration and a registry's hosts.toml are functions of a few
paths and addresses. Keeping them apart from the code that starts processes
(deploy/local/node.py) lets each setting be unit-tested like the operator's
builders, and lets a reviewer read every choice in one place.

Facts about this VM that shaped the settings are in docs/local-cluster.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What kops-style clusters call the DNS Service: the tenth address of the
# service range, named kube-dns for compatibility.
CLUSTER_DNS_IP = "10.0.0.10"


@dataclass(frozen=True)
class ContainerdPaths:
    """Everything containerd writes, under one directory the node owns."""

    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def certs_d(self) -> Path:
        return self.root / "certs.d"


def containerd_config(paths: ContainerdPaths, *, runc: str, sandbox_image: str,
                      cni_bin_dir: str, cni_conf_dir: Path) -> str:
    """containerd 2.x config (version 3 schema: the CRI plugin is split into
    `cri.v1.images` and `cri.v1.runtime`)."""
    d = paths.root
    return f"""# Written by irisop_deploy.local.nodeconfig; regenerated on every `up`.
version = 3
root = "{d / 'root'}"
state = "{d / 'state'}"
# Snapshotters this node never uses (the build leaves out btrfs, devmapper
# and zfs too); disabling them keeps the log free of errors.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths.socket}"
[ttrpc]
  address = "{paths.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    # Built locally (deploy/local/gobin/pause) and imported: never pulled.
    sandbox = "{sandbox_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{paths.certs_d}"

[plugins."io.containerd.cri.v1.runtime"]
  # This kernel has no AppArmor; do not try to load profiles.
  disable_apparmor = true
  # The VM withholds CAP_SYS_RESOURCE, so a negative oom_score_adj (the
  # kubelet asks -998 for sandboxes) makes runc fail with "can't get final
  # child's PID from pipe: EOF". Clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  # Keep network namespaces under our state dir, not /var/run/netns, so a
  # down() can find and unmount every one of them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        # crun fails on hybrid cgroups; the kubelet uses cgroupfs, so must runc.
        BinaryName = "{runc}"
        SystemdCgroup = false
        Root = "{d / 'runc'}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin_dir}"]
    conf_dir = "{cni_conf_dir}"
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's per-registry file: pull from host:port over plain HTTP."""
    return (
        f'server = "http://{registry}"\n\n'
        f'[host."http://{registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )


def cni_conflist(*, bridge: str, pod_cidr: str, ipam_dir: Path) -> dict[str, Any]:
    """A bridge network with host-local IPAM. It does not enforce
    NetworkPolicy (no CNI plugin here does): see docs/local-cluster.md."""
    return {
        "cniVersion": "1.0.0",
        "name": "irisop",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,  # pods reach the outside via SNAT
                "hairpinMode": True,  # a pod can reach itself through its Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass(frozen=True)
class KubeletInputs:
    node_ip: str
    port: int
    healthz_port: int
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    containerd_socket: Path
    pod_logs_dir: Path
    cluster_domain: str
    cluster_dns: str = CLUSTER_DNS_IP


def kubelet_config(k: KubeletInputs) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The stack's own address, never the host's external one.
        "address": k.node_ip,
        "port": k.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": k.healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(k.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(k.serving_cert),
        "tlsPrivateKeyFile": str(k.serving_key),
        # This VM mounts cgroup v1 only and has no systemd as PID 1. Since
        # Kubernetes 1.35 the kubelet refuses cgroup v1 unless told otherwise.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{k.containerd_socket}",
        # Pods resolve Service names through CoreDNS, as on a kops cluster.
        "clusterDomain": k.cluster_domain,
        "clusterDNS": [k.cluster_dns],
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(k.pod_logs_dir),
        "failSwapOn": False,
        # A developer disk is shared with everything else: never evict or
        # garbage-collect images (the pause image is imported, not pullable).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "registerNode": True,
        # Faster status updates: a fresh pod shows Ready sooner.
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }
