#!/usr/bin/env bash
# Build the Kubernetes binaries the local stack needs from the Go module proxy.
#
# Why a throwaway Go module: `go install k8s.io/kubernetes/cmd/...@v` is refused
# because k8s.io/kubernetes replaces its staging modules with local paths. A
# module of our own that requires k8s.io/kubernetes and pins every staging
# module to the matching v0.x.y builds the same code.
#
# Everything (module cache, build cache, binaries) lives under one cache
# directory so a second run is a no-op and a cold run fits CI's budget.
set -euo pipefail

# Versions come from deploy/versions.env (one file for both clusters); a
# variable already set in the environment wins.
eval "$(sed -n 's/^\([A-Z][A-Z0-9_]*\)=\([^[:space:]]*\).*$/: "${\1:=\2}"/p' "$(dirname "${BASH_SOURCE[0]}")/../versions.env")"
KUBE_VERSION="$KUBERNETES_VERSION"
CACHE="${IRISOP_CACHE:-$HOME/.cache/irisop}"
BIN="$CACHE/kube/$KUBE_VERSION/bin"
# Binaries to build; the local node (kubelet, kube-proxy, scheduler) is opt-in via args.
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(kube-apiserver kube-controller-manager kubectl)

missing=()
for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$BIN"
  exit 0
fi

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0
work="$CACHE/kube/$KUBE_VERSION/module"
mkdir -p "$work" "$BIN"
cd "$work"

staging_version="v0.${KUBE_VERSION#v1.}"
if [ ! -f go.mod ]; then
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module irisop.local/kubebuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" \
      | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod.tmp
  mv go.mod.tmp go.mod
fi

pkgs=()
for t in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
go get "${pkgs[@]/%/@none}" >/dev/null 2>&1 || true  # no-op: keep go.mod minimal
go get "k8s.io/kubernetes@$KUBE_VERSION" >&2
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
echo "building ${missing[*]} at $KUBE_VERSION into $BIN" >&2
start=$(date +%s)
go build -trimpath -ldflags "$ldflags" -o "$BIN/" "${pkgs[@]}" >&2
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
