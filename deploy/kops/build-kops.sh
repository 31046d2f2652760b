#!/usr/bin/env bash
# Build the kops CLI from the Go module proxy into the irisop cache.
#
# k8s.io/kops has no replace directives, but `go install k8s.io/kops/cmd/kops@v`
# still fails here: it asks the proxy for the module's version list (to check
# for deprecation), which the proxy refuses with 403 while it serves the
# pinned version itself. So, like deploy/local/build-kube.sh, we build from a
# throwaway module that requires the exact version. Module and build caches
# are shared with the Kubernetes build under the same cache directory, so a
# second run is a no-op and prints the binary's directory.
#
# Usage: deploy/kops/build-kops.sh            -> prints the bin directory
#        KOPS_VERSION=v1.36.3 ...              -> another release (default: deploy/versions.env)
set -euo pipefail

# Versions come from deploy/versions.env (one file for both clusters); a
# variable already set in the environment wins.
eval "$(sed -n 's/^\([A-Z][A-Z0-9_]*\)=\([^[:space:]]*\).*$/: "${\1:=\2}"/p' "$(dirname "${BASH_SOURCE[0]}")/../versions.env")"

CACHE="${IRISOP_CACHE:-$HOME/.cache/irisop}"
BIN="$CACHE/kops/$KOPS_VERSION/bin"

CHANNEL="$CACHE/kops/$KOPS_VERSION/channels/stable"

# kops reads its release channel (versions, default images) from GitHub unless
# told otherwise; the copy from the module lets tests run offline with
# `--channel file://$CHANNEL`.
copy_channel() {
  [ -f "$CHANNEL" ] && return 0
  local dir
  dir=$(GOMODCACHE="$CACHE/go/mod" GOFLAGS=-mod=mod go mod download -json "k8s.io/kops@$KOPS_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$(dirname "$CHANNEL")"
  cp "$dir/channels/stable" "$CHANNEL"
}

if [ -x "$BIN/kops" ]; then
  copy_channel
  echo "$BIN"
  exit 0
fi

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0
# kops 1.36.2 declares `go 1.26.5`; the machine's Go (1.26.x, newer patch) builds it without a toolchain download.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
work="$CACHE/kops/$KOPS_VERSION/module"
mkdir -p "$BIN" "$work"
cd "$work"
if [ ! -f go.mod ]; then
  printf 'module irisop.local/kopsbuild\n\ngo 1.24.0\n\nrequire k8s.io/kops %s\n' "$KOPS_VERSION" > go.mod
fi

echo "building kops $KOPS_VERSION into $BIN" >&2
start=$(date +%s)
# kops stamps its version through k8s.io/kops.Version; without it `kops version` says "unknown".
go mod download "k8s.io/kops@$KOPS_VERSION" >&2
# Seed go.sum with kops' own pinned hashes: some of its pseudo-version
# dependencies (golang.org/x/oauth2@v0.24.1-0.2025...) have no checksum-database
# entry reachable here (404), and kops' go.sum, itself verified on download,
# already records them.
kops_sum="$(go mod download -json "k8s.io/kops@$KOPS_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/go.sum"
sort -u go.sum "$kops_sum" -o go.sum 2>/dev/null || cp "$kops_sum" go.sum
go get "k8s.io/kops@$KOPS_VERSION" >&2
go build -trimpath -o "$BIN/kops" \
  -ldflags "-s -w -X k8s.io/kops.Version=${KOPS_VERSION#v} -X k8s.io/kops.GitVersion=$KOPS_VERSION" \
  k8s.io/kops/cmd/kops >&2
echo "built in $(( $(date +%s) - start ))s" >&2
copy_channel
echo "$BIN"
