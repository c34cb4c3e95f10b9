#!/usr/bin/env bash
# Build lackey/debian-base:bookworm without pulling any image: debootstrap a minimal
# Debian 12 holding what minion-base needs (git, CA certificates, curl, jq, ripgrep,
# python3 with pip), trim it as Debian's slim images are trimmed (no docs, manuals or
# locales), then `docker import` it. Idempotent: does nothing when an image of this
# revision exists (pass --force to rebuild).
set -euo pipefail
IMAGE="${LACKEY_OFFLINE_BASE:-lackey/debian-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Bumped whenever the package list or the trimming changes: an older base is rebuilt.
REVISION=2
PACKAGES=git,ca-certificates,curl,jq,ripgrep,python3,python3-pip

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
# What slim images leave out, now and for packages installed later in a project image.
$sudo tee "$rootfs/etc/dpkg/dpkg.cfg.d/lackey-slim" >/dev/null <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
CONF
$sudo sh -c "cd '$rootfs' && find usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null; \
  rm -rf usr/share/man/* usr/share/info/* usr/share/lintian/* usr/share/locale/* \
    var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb var/log/*.log var/cache/debconf/*-old; \
  find usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true"
echo "offline base: docker import as $IMAGE"
$sudo tar -C "$rootfs" --numeric-owner -c . | docker import \
  -c 'CMD ["/bin/bash"]' -c "LABEL lackey.base-revision=$REVISION" - "$IMAGE" >/dev/null
echo "offline base: $IMAGE ready"
