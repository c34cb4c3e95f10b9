#!/usr/bin/env bash
# Build lackey/debian-base:bookworm without pulling any image: Debian 12 as
# debian:bookworm-slim is made (debootstrap's minbase variant: the same package set,
# with the same documentation, manual and locale filters), plus what minion-base needs
# (git, CA certificates, curl, jq, ripgrep, python3 with pip), with git's Perl replaced
# and everything trimmed by docker/runtime.sh exactly as the image build does it, then
# `docker import`ed.
# Idempotent: does nothing when an image of this revision exists (pass --force to
# rebuild).
set -euo pipefail
IMAGE="${LACKEY_OFFLINE_BASE:-lackey/debian-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# Bumped whenever the package list or the trimming changes: an older base is rebuilt.
REVISION=3
PACKAGES=git,ca-certificates,curl,jq,ripgrep,python3,python3-pip
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" != "--force" ]; then
  have=$(docker image inspect -f '{{index .Config.Labels "lackey.base-revision"}}' "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$REVISION" ]; then
    echo "offline base: $IMAGE already exists"
    exit 0
  fi
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
echo "offline base: debootstrap bookworm into $rootfs (a minute or two)"
$sudo "$DEBOOTSTRAP" --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >/dev/null
# The sources debian:bookworm-slim lists (the release, its updates, security), so a
# project image's apt-get sees the same packages.
$sudo tee "$rootfs/etc/apt/sources.list" >/dev/null <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
SOURCES
# As minion-base's own layer is made (docker/runtime.sh): the path filters (docs,
# manuals, locales, git's server-side programs), git without Perl; then the updates
# slim images carry; then the trimming again.
$sudo sh "$here/docker/runtime.sh" --trim "$rootfs"
$sudo chroot "$rootfs" sh -s -- --no-perl-for-git <"$here/docker/runtime.sh"
log="$rootfs.upgrade.log"
if ! $sudo chroot "$rootfs" sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y --no-install-recommends' >"$log" 2>&1; then
  echo "offline base: warning: could not apply bookworm's updates (mirror unreachable?): the base has the release's packages" >&2
  tail -5 "$log" >&2
fi
rm -f "$log"
$sudo chroot "$rootfs" apt-get clean
$sudo sh "$here/docker/runtime.sh" --trim "$rootfs"
echo "offline base: docker import as $IMAGE"
$sudo tar -C "$rootfs" --numeric-owner -c . | docker import \
  -c 'CMD ["/bin/bash"]' -c "LABEL lackey.base-revision=$REVISION" - "$IMAGE" >/dev/null
echo "offline base: $IMAGE ready"
