"""Taking the local node apart: what ``Node.down`` runs, in the order it runs it.

Two kinds of step. The API steps (drain, delete the Node object) need a
working API server and may fail; ``Node.down`` runs them best effort. The
host steps (iptables chains, containerd tasks, stray shims, mounts) must
always run, or node processes and mounts would outlive their state
directory. None of them starts anything.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from .process import command_lines

# Utility chains the kubelet creates; `kube-proxy --cleanup` does not know them.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


class TeardownError(RuntimeError):
    pass


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Teardown is best effort per command: a rule or task already gone is fine."""
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)


# -- API steps ----------------------------------------------------------------

def drain(kubeconfig: Path, node_name: str, timeout: float = 60.0) -> None:
    """Cordon, then delete every pod on the node and wait until the kubelet
    has stopped them: the kubelet tears down sandboxes (CNI DEL, netns,
    volume mounts) far more cleanly than killing processes would."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        core = client.CoreV1Api(api)
        try:
            core.patch_node(node_name, {"spec": {"unschedulable": True}})
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        selector = f"spec.nodeName={node_name}"
        for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
            try:
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=2)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        deadline = time.monotonic() + timeout
        while core.list_pod_for_all_namespaces(field_selector=selector).items:
            if time.monotonic() > deadline:
                break  # the host steps still run
            time.sleep(0.5)


def delete_node(kubeconfig: Path, node_name: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        try:
            client.CoreV1Api(api).delete_node(node_name)
        except ApiException as exc:
            if exc.status != 404:
                raise


# -- host steps ---------------------------------------------------------------

def remove_kube_proxy_rules(kube_proxy: Path) -> None:
    if kube_proxy.exists():
        _run([str(kube_proxy), "--cleanup"])


def remove_kubelet_rules() -> None:
    """Remove the jump rules into the kubelet's utility chains, then the chains."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = _run([tool, "-w", "-t", table, "-S"]).stdout.splitlines()
            for rule in listing:
                parts = rule.split()
                if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in KUBELET_CHAINS \
                        and parts[1] not in KUBELET_CHAINS:
                    _run([tool, "-w", "-t", table, "-D", *parts[1:]])
            for chain in KUBELET_CHAINS:
                if f"-N {chain}" in listing:
                    _run([tool, "-w", "-t", table, "-F", chain])
                    _run([tool, "-w", "-t", table, "-X", chain])


def kill_tasks(ctr: Callable[..., list[str]]) -> None:
    """Every containerd task of the node, through its own `ctr` (containerd still running)."""
    for task in _run(ctr("tasks", "ls", "-q")).stdout.split():
        _run(ctr("tasks", "kill", "--signal", "SIGKILL", task))
        _run(ctr("tasks", "delete", "--force", task))


def kill_stray_shims(containerd_sock: Path, runc_root: Path) -> None:
    """containerd-shim-runc-v2 outlives containerd by design (its own process
    group); kill the ones that belong to this node's socket, then the
    container processes whose shim died, which runc still knows."""
    marker = str(containerd_sock).encode()
    for pid, cmdline in command_lines():
        if b"containerd-shim" in cmdline and marker in cmdline:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    if runc_root.exists():
        for ns_root in runc_root.iterdir():
            for cid in _run(["runc", "--root", str(ns_root), "list", "-q"]).stdout.split():
                _run(["runc", "--root", str(ns_root), "delete", "--force", cid])


def unmount_all(home: Path) -> None:
    """Unmount everything below home, deepest first (pod volumes, rootfs
    overlays, network namespaces); raise if a mount survives."""
    prefix = str(home.resolve()) + "/"

    def mounted() -> list[str]:
        targets = (line.split()[4].replace("\\040", " ")
                   for line in Path("/proc/self/mountinfo").read_text().splitlines())
        return [target for target in targets if target.startswith(prefix)]

    for target in sorted(set(mounted()), key=len, reverse=True):
        _run(["umount", "--lazy", target])
    still = mounted()
    if still:
        raise TeardownError(f"{len(still)} mounts left under {home}, e.g. {still[0]}")

