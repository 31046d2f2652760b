#!/usr/bin/env bash
# Install everything irismodel-operator needs on a fresh Debian bookworm
# machine (run as root): Debian packages, the Python project, and the
# Kubernetes binaries built from the Go module proxy. Idempotent: a second run
# takes seconds. Caches live under $IRISOP_CACHE (default ~/.cache/irisop).
#
# Python packages go only into environments the project owns: the project's
# venv ($repo/.venv, `irisop` linked onto PATH) and, for test tools that pin
# their own dependencies, one venv per tool under $IRISOP_CACHE/tools. The
# system Python is never touched: a cluster admin's machine has the AWS CLI,
# whose botocore pin a system-wide install would break.
#
#   --with-kops         also build kops (for the AWS bootstrap and its tests; ~10-17 min cold)
#   --with-test-tools   also install the test tools (checkov) into their own venvs
#   --python-only       only the Python environments (no apt, no Go builds); used by
#                       tests/integration/test_bootstrap_isolation.py
set -euo pipefail

with_kops=0
with_test_tools=0
python_only=0
for arg in "$@"; do
  case "$arg" in
    --with-kops) with_kops=1 ;;
    --with-test-tools) with_test_tools=1 ;;
    --python-only) python_only=1 ;;
    *) echo "usage: $0 [--with-kops] [--with-test-tools] [--python-only]" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${IRISOP_CACHE:-$HOME/.cache/irisop}"
venv="${IRISOP_VENV:-$repo/.venv}"
bin_link_dir="${IRISOP_BIN_DIR:-/usr/local/bin}"
export PIP_CACHE_DIR="$cache/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
# Each line carries the seconds since start, so a cold run's log is its own breakdown.
started=$(date +%s)
log() { printf '\033[1m==> [%ss] %s\033[0m\n' "$(( $(date +%s) - started ))" "$*" >&2; }

# Debian packages, one concern each:
#   etcd-server                      the control plane's datastore
#   podman buildah runc skopeo uidmap  build and run images without Docker
#   docker-registry                  a real OCI registry on loopback
#   debootstrap                      the Python base image, built locally
#   containernetworking-plugins conntrack iptables iproute2 socat  the local node
#     (containerd itself is built from its Go module: Debian's is 1.6, a kops 1.36 node runs 2.2)
#   catatonit                        `podman run --init` (podman only recommends it)
#   wrk                              load generator for the benchmarks
#   apache2-utils                    htpasswd for the registry's basic auth
#   python3-venv                     the project's own Python environments
#   kmod                             `modprobe br_netfilter` for the node (iproute2, kmod: not in minbase)
# tests/unit/test_tool_packages.py checks that every external tool the code and
# the tests run comes from a package in this list.
APT_PACKAGES=(etcd-server podman buildah runc skopeo uidmap catatonit docker-registry debootstrap
              containernetworking-plugins conntrack iptables iproute2 socat wrk apache2-utils
              python3-venv kmod)

install_apt_packages() {
  local missing=() p svc
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian starts these as services on install; the local stack runs its own
  # instances on its own ports instead.
  for svc in etcd docker-registry containerd; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
}

# The Python project (editable) with the test extra (every program's extra),
# at the versions the tests last passed with (constraints.txt; setup.cfg keeps
# the ranges users get), into the project's venv. The stamp lives inside the
# venv, so a new venv or a changed setup.cfg/constraints.txt reinstalls.
install_project() {
  [ -x "$venv/bin/python" ] || { log "python3 -m venv $venv"; python3 -m venv "$venv"; }
  local stamp="$venv/.irisop-install-$(cat "$repo/setup.cfg" "$repo/constraints.txt" | sha256sum | cut -c1-16)"
  # An editable install points at one directory: reinstall when it belongs to another checkout.
  installed_here() {
    "$venv/bin/python" -c 'import os, sys, irisop_operator.cli as c; sys.exit(os.path.dirname(os.path.realpath(c.__file__)) != sys.argv[1])' \
      "$(realpath "$repo/operator")" 2>/dev/null
  }
  if [ ! -f "$stamp" ] || ! installed_here; then
    log "pip install -e '.[test]' -c constraints.txt (into $venv)"
    "$venv/bin/python" -m pip install -q -c "$repo/constraints.txt" -e "$repo[test]"
    # checkov lived here once and pinned boto3; it has its own venv now.
    "$venv/bin/python" -m pip uninstall -q -y checkov >/dev/null 2>&1 || true
    rm -f "$venv"/.irisop-install-*
    touch "$stamp"
  fi
  mkdir -p "$bin_link_dir"
  ln -sfn "$venv/bin/irisop" "$bin_link_dir/irisop"
}

# A test tool that pins its own dependencies (checkov pins boto3 exactly) gets
# a venv of its own under $IRISOP_CACHE/tools, from a fully pinned list in
# deploy/local/tools/<tool>.txt. The tests look for it there
# (tests/fixtures/tools.py).
install_tool() {
  local name="$1" requirements="$here/tools/$1.txt" tool_venv="$cache/tools/$1-venv"
  local stamp="$tool_venv/.irisop-install-$(sha256sum < "$requirements" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "$name into its own venv ($tool_venv)"
    rm -rf "$tool_venv"
    python3 -m venv "$tool_venv"
    "$tool_venv/bin/python" -m pip install -q --no-deps -r "$requirements"
    touch "$stamp"
  fi
}

if [ "$python_only" = 0 ]; then
  install_apt_packages
fi
install_project
if [ "$with_test_tools" = 1 ]; then
  install_tool checkov
fi
if [ "$python_only" = 1 ]; then
  exit 0
fi

log "Kubernetes, containerd, CoreDNS, metrics-server and SeaweedFS (built once from the Go module proxy, then cached)"
"$here/build-kube.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy >/dev/null
"$here/build-node-runtime.sh" >/dev/null
"$here/build-seaweedfs.sh" >/dev/null
"$here/build-metrics-server.sh" >/dev/null
if [ "$with_kops" = 1 ]; then
  log "kops (built once, then cached)"
  bash "$repo/deploy/kops/build-kops.sh" >/dev/null
fi
log "ready in $(( $(date +%s) - started ))s"
