#!/usr/bin/env bash
# Build metrics-server (the metrics.k8s.io API the HPA reads) from the Go
# module proxy at a pinned release, cached like build-kube.sh. Unlike
# k8s.io/kubernetes it has no replace directives, so `go install` works.
set -euo pipefail

# Versions come from deploy/versions.env (one file for both clusters); a
# variable already set in the environment wins.
eval "$(sed -n 's/^\([A-Z][A-Z0-9_]*\)=\([^[:space:]]*\).*$/: "${\1:=\2}"/p' "$(dirname "${BASH_SOURCE[0]}")/../versions.env")"
VERSION="$METRICS_SERVER_VERSION"
CACHE="${IRISOP_CACHE:-$HOME/.cache/irisop}"
BIN="$CACHE/metrics-server/$VERSION/bin"
if [ -x "$BIN/metrics-server" ]; then
  echo "$BIN/metrics-server"
  exit 0
fi
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0 GOBIN="$BIN"
mkdir -p "$BIN"
start=$(date +%s)
go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$VERSION" >&2
echo "built metrics-server $VERSION in $(( $(date +%s) - start ))s" >&2
echo "$BIN/metrics-server"
