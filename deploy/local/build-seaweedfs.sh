#!/usr/bin/env bash
# SeaweedFS's `weed` (master, volume server, filer and S3 gateway in one
# program), the local stack's persistent S3 stand-in, built from its Go module
# at the version in deploy/versions.env, cached. Prints the bin directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
eval "$(sed -n 's/^\([A-Z][A-Z0-9_]*\)=\([^[:space:]]*\).*$/: "${\1:=\2}"/p' "$here/../versions.env")"

"$here/build-go.sh" seaweedfs "$SEAWEEDFS_VERSION" github.com/seaweedfs/seaweedfs \
  github.com/seaweedfs/seaweedfs/weed
