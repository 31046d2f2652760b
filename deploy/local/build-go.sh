#!/usr/bin/env bash
# Build Go programs from one pinned module release on the Go module proxy,
# into the irisop cache, once. Used for containerd and CoreDNS (and any other
# single-module program the local cluster runs).
#
#   deploy/local/build-go.sh NAME VERSION MODULE PACKAGE...   -> prints the bin directory
#
# Like build-kube.sh, it builds from a throwaway module of our own that
# requires MODULE@VERSION: `go install pkg@version` would first ask the proxy
# for the module's version list, which the proxy here may refuse while it
# serves the pinned version itself. The module's own go.sum seeds ours, so
# its pinned pseudo-versions need no checksum-database lookup.
# Environment: IRISOP_CACHE (default ~/.cache/irisop), GO_BUILD_TAGS, GO_LDFLAGS.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 NAME VERSION MODULE PACKAGE..." >&2; exit 2; }
name="$1" version="$2" module="$3"; shift 3
CACHE="${IRISOP_CACHE:-$HOME/.cache/irisop}"
BIN="$CACHE/$name/$version/bin"

missing=0
for pkg in "$@"; do [ -x "$BIN/$(basename "$pkg")" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "$BIN"; exit 0; fi

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED="${CGO_ENABLED:-0}" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
work="$CACHE/$name/$version/module"
mkdir -p "$BIN" "$work"
cd "$work"
if [ ! -f go.mod ]; then
  printf 'module irisop.local/%sbuild\n\ngo 1.24.0\n\nrequire %s %s\n' "$name" "$module" "$version" > go.mod
fi
dir=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
[ -f "$dir/go.sum" ] && sort -u "$dir/go.sum" $( [ -f go.sum ] && echo go.sum ) -o go.sum
# Carry the module's own replace directives: a program built from a module
# that replaces a dependency must be built with the same replacement.
grep -E '^replace [^ ]+( v[^ ]+)? => [^./]' "$dir/go.mod" >> go.mod 2>/dev/null || true
go get "$module@$version" >&2
echo "building $name $version ($*) into $BIN" >&2
start=$(date +%s)
go build -trimpath -tags "${GO_BUILD_TAGS:-}" -ldflags "-s -w ${GO_LDFLAGS:-}" -o "$BIN/" "$@" >&2
echo "built $name in $(( $(date +%s) - start ))s" >&2
echo "$BIN"
