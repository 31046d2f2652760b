#!/usr/bin/env bash
# Install everything irismodel-operator needs on a fresh Debian bookworm
# machine (run as root): Debian packages, the Python project, and the
# Kubernetes binaries built from the Go module proxy. Idempotent: a second run
# takes seconds. Caches live under $IRISOP_CACHE (default ~/.cache/irisop).
#
#   --with-kops   also build kops (for the AWS bootstrap and its tests; ~10-17 min cold)
set -euo pipefail

with_kops=0
for arg in "$@"; do
  case "$arg" in
    --with-kops) with_kops=1 ;;
    *) echo "usage: $0 [--with-kops]" >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
stamp_dir="${IRISOP_CACHE:-$HOME/.cache/irisop}/stamps"
mkdir -p "$stamp_dir"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages, one concern each:
#   etcd-server                      the control plane's datastore
#   podman buildah runc skopeo uidmap  build and run images without Docker
#   docker-registry                  a real OCI registry on loopback
#   debootstrap                      the Python base image, built locally
#   containerd containernetworking-plugins conntrack iptables socat  the local node
#   wrk                              load generator for the benchmarks
#   apache2-utils                    htpasswd for the registry's basic auth
APT_PACKAGES=(etcd-server podman buildah runc skopeo uidmap docker-registry debootstrap
              containerd containernetworking-plugins conntrack iptables socat wrk apache2-utils)

missing=()
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

# The Python project (editable) with the test extra, at the versions the tests
# last passed with (constraints.txt; setup.cfg keeps the ranges users get).
# Re-run only when either file changes.
py_stamp="$stamp_dir/pip-$(cat "$repo/setup.cfg" "$repo/constraints.txt" | sha256sum | cut -c1-16)"
# Also re-run when the installed package belongs to another checkout (an
# editable install points at one directory; a second clone must take it over).
installed_here() {
  python3 -c 'import os, sys, irisop_operator.cli as c; sys.exit(os.path.dirname(os.path.realpath(c.__file__)) != sys.argv[1])' \
    "$(realpath "$repo/operator")" 2>/dev/null
}
if [ ! -f "$py_stamp" ] || ! installed_here; then
  log "pip install -e '.[test]' -c constraints.txt"
  python3 -m pip install -q --disable-pip-version-check -c "$repo/constraints.txt" -e "$repo[test]"
  touch "$py_stamp"
fi

log "Kubernetes binaries and metrics-server (built once from the Go module proxy, then cached)"
"$here/build-kube.sh" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy >/dev/null
"$here/build-metrics-server.sh" >/dev/null
if [ "$with_kops" = 1 ]; then
  log "kops (built once, then cached)"
  bash "$repo/deploy/kops/build-kops.sh" >/dev/null
fi
log "ready"
