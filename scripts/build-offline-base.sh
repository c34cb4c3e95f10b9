#!/usr/bin/env bash
# Build lackey/debian-base:bookworm without pulling anything: debootstrap a minimal
# Debian 12 with git and CA certificates, then `docker import` it. Idempotent: does
# nothing when the image exists (pass --force to rebuild).
set -euo pipefail
IMAGE="${LACKEY_OFFLINE_BASE:-lackey/debian-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${1:-}" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "offline base: $IMAGE already exists"
  exit 0
fi
DEBOOTSTRAP=$(command -v debootstrap || echo /usr/sbin/debootstrap)
if [ ! -x "$DEBOOTSTRAP" ]; then
  echo "offline base: debootstrap is missing: apt-get install debootstrap (or run scripts/install-deps.sh)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
rootfs=$(mktemp -d /tmp/lackey-rootfs.XXXXXX)
trap '$sudo rm -rf "$rootfs"' EXIT
echo "offline base: debootstrap bookworm into $rootfs (about a minute)"
$sudo "$DEBOOTSTRAP" --variant=minbase --include=git,ca-certificates bookworm "$rootfs" "$MIRROR" >/dev/null
# Smaller and reproducible-ish: no apt lists or caches.
$sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
echo "offline base: docker import as $IMAGE"
$sudo tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "offline base: $IMAGE ready"
