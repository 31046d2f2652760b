#!/usr/bin/env bash
# containerd 2.x (what kops installs on its nodes) and CoreDNS, built from
# their Go modules at the versions in deploy/versions.env, cached.
# Debian bookworm's containerd is 1.6; a kops 1.36 node runs 2.2.
# Prints two lines: containerd's bin directory, then CoreDNS's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
eval "$(sed -n 's/^\([A-Z][A-Z0-9_]*\)=\([^[:space:]]*\).*$/: "${\1:=\2}"/p' "$here/../versions.env")"

# No btrfs/devmapper/zfs snapshotters (they need cgo and host libraries);
# the local node uses overlayfs.
GO_BUILD_TAGS="no_btrfs no_devmapper no_zfs" \
GO_LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
  "$here/build-go.sh" containerd "$CONTAINERD_VERSION" github.com/containerd/containerd/v2 \
  github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr
GO_LDFLAGS="-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
  "$here/build-go.sh" coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns
