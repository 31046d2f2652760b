"""The local cluster's configuration, rendered by pure functions (issue 9):
containerd 2.x, CNI, kubelet with cluster DNS, CoreDNS, the kustomize
install overlay, the in-cluster probe pod, and the stack's own address."""
from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import yaml

from irisop_deploy import versions
from irisop_deploy.local import coredns, incluster_probe, install, network, nodeconfig
from irisop_deploy.local.controlplane import KUBERNETES_SERVICE_IP, SERVICE_CIDR, apiserver_serving
from irisop_deploy.local.node import POD_CIDR

REPO = Path(__file__).resolve().parents[2]


def test_one_version_file_names_a_supported_kubernetes_for_both_clusters() -> None:
    kube = versions.kubernetes()
    kops = versions.kops()
    k_minor = int(kube.lstrip("v").split(".")[1])
    kops_minor = int(kops.lstrip("v").split(".")[1])
    assert k_minor >= 36, "the local cluster must run a release in upstream support (1.36 or newer)"
    # kops supports Kubernetes up to its own minor (it refuses minor+1 as "not yet supported").
    assert k_minor <= kops_minor
    assert versions.containerd().startswith("v2."), "kops 1.36 nodes run containerd 2.x"


def test_environment_overrides_a_version(monkeypatch) -> None:
    monkeypatch.setenv("KUBERNETES_VERSION", "v1.36.9")
    assert versions.kubernetes() == "v1.36.9"


def test_containerd_config_is_version_3_with_the_cri_settings_this_vm_needs(tmp_path: Path) -> None:
    paths = nodeconfig.ContainerdPaths(tmp_path / "containerd")
    text = nodeconfig.containerd_config(paths, runc="/usr/sbin/runc", sandbox_image="localhost/irisop/pause:1",
                                        cni_bin_dir="/usr/lib/cni", cni_conf_dir=tmp_path / "net.d")
    doc = tomllib.loads(text)
    assert doc["version"] == 3
    assert doc["grpc"]["address"] == str(paths.socket)
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "localhost/irisop/pause:1"
    assert images["registry"]["config_path"] == str(paths.certs_d)
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True and runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"]["BinaryName"] == "/usr/sbin/runc"
    assert runc["options"]["SystemdCgroup"] is False  # cgroupfs, like the kubelet
    assert runtime["cni"]["bin_dirs"] == ["/usr/lib/cni"]


def test_registry_hosts_file_is_plain_http_pull_only() -> None:
    doc = tomllib.loads(nodeconfig.registry_hosts_toml("10.250.0.1:5000"))
    assert doc["server"] == "http://10.250.0.1:5000"
    assert doc["host"]["http://10.250.0.1:5000"]["capabilities"] == ["pull", "resolve"]


def test_kubelet_uses_cluster_dns_and_the_stack_address(tmp_path: Path) -> None:
    config = nodeconfig.kubelet_config(nodeconfig.KubeletInputs(
        node_ip=network.STACK_ADDRESS, port=10250, healthz_port=10248, ca_cert=tmp_path / "ca.crt",
        serving_cert=tmp_path / "s.crt", serving_key=tmp_path / "s.key",
        containerd_socket=tmp_path / "c.sock", pod_logs_dir=tmp_path / "logs", cluster_domain="cluster.local"))
    assert config["clusterDNS"] == [nodeconfig.CLUSTER_DNS_IP]
    assert config["clusterDomain"] == "cluster.local"
    assert config["address"] == network.STACK_ADDRESS
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0 and config["authentication"]["anonymous"]["enabled"] is False
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"


def test_cni_bridge_network_uses_the_pod_range(tmp_path: Path) -> None:
    conf = nodeconfig.cni_conflist(bridge="irisop0", pod_cidr=POD_CIDR, ipam_dir=tmp_path)
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipam"]["ranges"] == [[{"subnet": POD_CIDR}]]
    # No plugin in the chain enforces NetworkPolicy (documented in docs/local-cluster.md).
    assert {p["type"] for p in conf["plugins"]} == {"bridge", "portmap"}


def test_address_plan_does_not_overlap() -> None:
    stack = ipaddress.ip_address(network.STACK_ADDRESS)
    assert stack.is_private and not stack.is_loopback
    assert stack not in ipaddress.ip_network(POD_CIDR)
    assert stack not in ipaddress.ip_network(SERVICE_CIDR)
    assert ipaddress.ip_address(nodeconfig.CLUSTER_DNS_IP) in ipaddress.ip_network(SERVICE_CIDR)


def test_apiserver_certificate_covers_the_kubernetes_service_and_the_stack_address() -> None:
    spec = apiserver_serving(network.STACK_ADDRESS)
    assert {KUBERNETES_SERVICE_IP, network.STACK_ADDRESS, "127.0.0.1"} <= set(spec.ip_addresses)
    assert "kubernetes.default.svc.cluster.local" in spec.dns_names


def test_coredns_serves_cluster_local_behind_kube_dns_unprivileged() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in coredns.manifests()}
    svc = objs[("Service", "kube-dns")]
    assert svc["spec"]["clusterIP"] == nodeconfig.CLUSTER_DNS_IP
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert "kubernetes cluster.local" in objs[("ConfigMap", "coredns")]["data"]["Corefile"]
    pod = objs[("Deployment", "coredns")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert all(p["containerPort"] >= 1024 for p in container["ports"])
    assert container["image"].endswith(versions.coredns())
    rules = objs[("ClusterRole", "system:coredns")]["rules"]
    assert all(set(r["verbs"]) == {"list", "watch"} for r in rules)  # read-only


def test_install_overlay_layers_the_digests_on_deploy_overlays_local(tmp_path: Path) -> None:
    directory = tmp_path / "install"
    install.write_overlay(directory, f"{install.OPERATOR_REPOSITORY}@sha256:{'a' * 64}",
                          f"{network.REGISTRY}/irisop/runtime@sha256:{'b' * 64}", replicas=2)
    doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert (directory / doc["resources"][0]).resolve() == install.LOCAL_OVERLAY.resolve()
    assert doc["images"] == [{"name": install.OPERATOR_REPOSITORY, "newName": install.OPERATOR_REPOSITORY,
                              "digest": f"sha256:{'a' * 64}"}]
    assert doc["replicas"] == [{"name": "irisop-operator", "count": 2}]
    assert doc["configMapGenerator"][0]["literals"] == [
        f"IRISOP_RUNTIME_IMAGE={network.REGISTRY}/irisop/runtime@sha256:{'b' * 64}"]


def test_local_overlay_names_the_stack_address_never_loopback() -> None:
    text = (REPO / "deploy/overlays/local/kustomization.yaml").read_text()
    doc = yaml.safe_load(text)
    literals = dict(item.split("=", 1) for item in doc["configMapGenerator"][0]["literals"])
    assert literals["AWS_ENDPOINT_URL"] == network.S3_ENDPOINT
    assert literals["IRISOP_INSECURE_REGISTRIES"] == network.REGISTRY
    assert literals["IRISOP_DEFAULT_REPOSITORY"].startswith(network.REGISTRY + "/")
    assert doc["images"][0]["newName"] == install.OPERATOR_REPOSITORY
    assert "127.0.0.1" not in text


def test_probe_pod_is_unprivileged_and_tokenless() -> None:
    pod = incluster_probe.probe_pod("p", "default", "img@sha256:x", "http://iris.default.svc.cluster.local/predict",
                                    [[5.1, 3.5, 1.4, 0.2]])
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert "http://iris.default.svc.cluster.local/predict" in spec["containers"][0]["command"]


def test_proc_net_addresses_decode() -> None:
    # /proc/net/tcp prints 10.250.0.1 as the little-endian word 0100FA0A.
    assert network._decode_proc_address("0100FA0A", 4) == "10.250.0.1"
    assert network._decode_proc_address("0100007F", 4) == "127.0.0.1"
    assert network._decode_proc_address("00000000000000000000000001000000", 6) == "::1"


def test_a_missing_operator_image_fails_at_once_a_registry_not_up_yet_does_not() -> None:
    assert install._fatal('ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image '
                          '"10.250.0.1:5000/irisop/operator@sha256:x": not found [pod p]')
    assert install._fatal("CrashLoopBackOff: back-off 10s (last log line: ImportError: kopf) [pod p]")
    assert not install._fatal("ErrImagePull: failed to do request: dial tcp 10.250.0.1:5000: "
                              "connect: connection refused [pod p]")


def test_containerd_counts_as_booted_only_after_the_last_start_says_so():
    from irisop_deploy.local.node import containerd_booted

    first = 'level=info msg="starting containerd" version=v2.2.4\nmsg="containerd successfully booted in 0.04s"\n'
    restarted = first + 'level=info msg="starting containerd" version=v2.2.4\nmsg=serving... address=/x.sock\n'
    assert containerd_booted(first)
    assert not containerd_booted(restarted)  # the socket serves, the CRI has not finished recovering
    assert containerd_booted(restarted + 'msg="containerd successfully booted in 0.05s"\n')
    assert not containerd_booted("")
