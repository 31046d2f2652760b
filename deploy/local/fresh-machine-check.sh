#!/usr/bin/env bash
# Prove the README's commands on a machine state that has only what the
# project installs: a fresh `debootstrap --variant=minbase` bookworm chroot
# with what the target machine already has (python3, Go under /usr/local/go,
# the host's CA bundle for the TLS-intercepting proxy), a copy of the
# committed tree, then `tests/run.sh ARGS` inside it. bootstrap.sh does the
# rest for real: apt (podman, catatonit, ...), the project's venv, checkov's
# venv. Only the host's Go build outputs (Kubernetes, kops, metrics-server,
# containerd, CoreDNS: 20+ minutes cold) are bind-mounted, read-only, so those
# are cache hits; apt and pip start from nothing (no pip cache either).
#
#   deploy/local/fresh-machine-check.sh [pytest args...]    (default: tests/unit -q)
#
# Needs root and debootstrap. The chroot is removed afterwards unless KEEP=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${IRISOP_CACHE:-$HOME/.cache/irisop}"
root="${FRESH_ROOT:-$(mktemp -d /tmp/irisop-fresh.XXXXXX)}"
mirror="${IRISOP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/unit -q)
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

mounts=()
cleanup() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -R "${mounts[$i]}" 2>/dev/null || umount -R -l "${mounts[$i]}" || true; done
  # Mounts made inside the chroot (podman's overlay storage), deepest first.
  findmnt -rn -o TARGET | grep "^$root/" | sort -r | while read -r m; do umount "$m" 2>/dev/null || true; done
  umount "$root" 2>/dev/null || true
  # Never delete through a mount that is still there (a bind of the host's
  # /dev or cache): rm --one-file-system does not see same-device binds.
  if findmnt -rn -o TARGET | grep -q "^$root\(/\|$\)"; then
    echo "fresh-machine-check: mounts remain under $root; not removing it" >&2
  elif [ "${KEEP:-0}" != 1 ]; then
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT
bind() {  # bind SRC DEST [ro|rbind]
  mkdir -p "$root$2"
  if [ "${3:-}" = rbind ]; then
    mount --rbind "$1" "$root$2"
    # Slave propagation: unmounting the chroot's copies must never unmount the host's.
    mount --make-rslave "$root$2"
  else
    mount --bind "$1" "$root$2"
  fi
  mounts+=("$root$2")
  [ "${3:-}" != ro ] || mount -o remount,bind,ro "$root$2"
}

start=$(date +%s)
log "debootstrap --variant=minbase bookworm $root (+ python3: the machine has it)"
debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" >/dev/null
log "debootstrap took $(( $(date +%s) - start ))s"

# The root a mount point of its own, as on a real machine: containers/storage
# remounts "/" while it unpacks a layer ("remount /: invalid argument" otherwise).
mount --bind "$root" "$root"
# What the target machine provides besides Debian: Go, and the proxy's CA,
# installed the way the machine has it (a local CA that update-ca-certificates
# keeps when the ca-certificates package rewrites the bundle).
mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Package scripts must not start etcd/containerd/docker-registry inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
bind /proc /proc
# rbind: podman in the integration tests needs /dev/shm, /dev/pts and the cgroup mounts under /sys.
bind /sys /sys rbind
bind /dev /dev rbind
bind /usr/local/go /usr/local/go ro
# (every directory the build-*.sh scripts fill: each exits early when its binaries exist)
for built in kube metrics-server kops containerd coredns seaweedfs; do
  [ -d "$cache/$built" ] && bind "$cache/$built" "/root/.cache/irisop/$built" ro
done

# The committed tree only (no .venv, no build output): a clean clone.
mkdir -p "$root/src"
git -C "$repo" archive HEAD | tar -x -C "$root/src"

log "tests/run.sh ${args[*]} inside the chroot"
chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin \
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  CI=true \
  bash -c 'cd /src && bash tests/run.sh "$@"' run "${args[@]}" && rc=0 || rc=$?
log "fresh-machine check exited $rc after $(( $(date +%s) - start ))s"
exit "$rc"
