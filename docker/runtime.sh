#!/bin/sh
# The runtime half of minion-base, shared by docker/Dockerfile and docker/Dockerfile.binary:
# the tools project images and the minion's commands expect, pip usable as root, and the
# user `lackey` (uid 1000). Packages the base already holds (the offline base has them
# all) are not installed again, so an offline build needs no network here.
set -eu
PACKAGES="ca-certificates git curl jq ripgrep python3 python3-pip"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
  apt-get clean
fi
# Nothing an image does not need at run time: package lists, docs, manuals, locales
# other than C, Python byte-code caches (rebuilt on first import).
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/*.log \
  /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/lintian/* \
  /usr/share/locale/*
find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
# Debian 12 marks its Python as externally managed, and pip then refuses to install as
# root. A project image installs its tools with `pip install ...` as root (it owns the
# image), as on any Python base image: allow it, system-wide.
cat > /etc/pip.conf <<'CONF'
[global]
break-system-packages = true
root-user-action = ignore
disable-pip-version-check = true
no-cache-dir = true
CONF
# The user project Dockerfiles switch back to with `USER lackey`.
if ! getent group lackey >/dev/null; then groupadd --gid 1000 lackey; fi
if ! getent passwd lackey >/dev/null; then
  useradd --no-log-init --uid 1000 --gid 1000 --home-dir /home/lackey --create-home --shell /bin/bash lackey
fi
mkdir -p /work /output /repo
chown 1000:1000 /work /output
rm -f "$0"
