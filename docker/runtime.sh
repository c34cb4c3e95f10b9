#!/bin/sh
# The runtime half of minion-base, shared by docker/Dockerfile and docker/Dockerfile.binary:
# the tools project images and the minion's commands expect, pip usable as root, and the
# user `lackey` (uid 1000). Packages the base already holds (the offline base has them
# all) are not installed again, so an offline build needs no network here.
#
#   sh runtime.sh               inside the image being built (as root)
#   sh runtime.sh --trim ROOT   only the trimming below, on a Debian tree at ROOT
#   sh runtime.sh --no-perl-for-git   only the Perl stub below (inside a Debian tree)
# (the last two: scripts/build-offline-base.sh, before `docker import`)
set -eu

# What no minion image needs, written as dpkg path filters so that packages installed
# later (by a project Dockerfile) leave them out too, and deleted where already present:
# - documentation (license texts kept), manuals, info pages, locales, as Debian's slim
#   images leave them out;
# - git's programs for serving repositories and mailing patches, and `scalar` (large
#   monorepo management): each is a 2 MB copy of git's code, and neither the minion nor
#   a project's build uses them (`git daemon`, `git http-backend`, `git shell`,
#   `git http-push` over WebDAV, `git imap-send`, `git instaweb`, gitweb). Clone, fetch
#   and push over HTTPS (`git-remote-https`) and every other git command stay.
EXCLUDED="
/usr/share/man/*
/usr/share/info/*
/usr/share/lintian/*
/usr/share/locale/*
/usr/share/groff/*
/usr/share/gitweb/*
/usr/share/git-core/contrib/*
/usr/bin/scalar
/usr/lib/git-core/scalar
/usr/bin/git-shell
/usr/lib/git-core/git-shell
/usr/lib/git-core/git-daemon
/usr/lib/git-core/git-http-backend
/usr/lib/git-core/git-http-push
/usr/lib/git-core/git-imap-send
/usr/lib/git-core/git-instaweb
"

trim() { # ROOT
  root=$1
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  set -f
  {
    echo "# minion-base: files no minion image needs (docker/runtime.sh)"
    echo "path-exclude /usr/share/doc/*"
    echo "path-include /usr/share/doc/*/copyright"
    for p in $EXCLUDED; do echo "path-exclude $p"; done
  } >"$root/etc/dpkg/dpkg.cfg.d/lackey-slim"
  set +f
  if [ -d "$root/usr/share/doc" ]; then
    find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  fi
  set -f
  for p in $EXCLUDED; do
    set +f
    # shellcheck disable=SC2086
    rm -rf "$root"$p
    set -f
  done
  set +f
  # git ships the same 3.7 MB program twice (/usr/bin/git and git-core/git): one
  # hard link stores it once in the layer.
  if [ -f "$root/usr/lib/git-core/git" ] && cmp -s "$root/usr/bin/git" "$root/usr/lib/git-core/git"; then
    ln -f "$root/usr/lib/git-core/git" "$root/usr/bin/git"
  fi
  # Package lists and caches, logs, Python byte-code caches (rebuilt on first import).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/debconf/*-old "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/log/dpkg.log
  find "$root"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
}

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# git's Debian package depends on perl and liberror-perl (with libperl and the Perl
# modules, ~45 MB, 11 MB compressed) for its commands written in Perl: `git send-email`,
# `git svn`, `git instaweb` and the pre-2.37 `add -i`, none of which the minion or a
# project's build runs (clone, fetch, commit, diff, bundle, push and `add -i` are C).
# A stub package stands in for those two names in git's dependencies, so they are not
# installed, and the package database stays consistent: `apt-get install` keeps
# working, a package that needs Perl still gets it (Perl libraries and tools depend on
# `perl:any`, which the stub does not satisfy, so apt installs the real perl), and
# `apt-get install perl` installs it as usual.
no_perl_for_git() {
  if ! installed lackey-git-without-perl; then
    d=$(mktemp -d)
    mkdir -p "$d/pkg/DEBIAN"
    cat >"$d/pkg/DEBIAN/control" <<'CONTROL'
Package: lackey-git-without-perl
Version: 1
Architecture: all
Maintainer: lackey <lackey@localhost>
Section: misc
Priority: optional
Provides: perl, liberror-perl
Description: lets git install without Perl in lackey's minion-base
 Stands in for perl and liberror-perl in git's dependencies only: packages that
 need Perl depend on perl:any, which this package does not provide, so apt
 still installs the real perl for them. `apt-get install perl` works as usual.
CONTROL
    dpkg-deb --build "$d/pkg" "$d/stub.deb" >/dev/null
    dpkg -i "$d/stub.deb" >/dev/null
    rm -rf "$d"
  fi
  # Where git came with Perl (the offline base's debootstrap), Perl goes.
  purge=""
  for p in perl liberror-perl perl-modules-5.36 libperl5.36 libgdbm-compat4 libgdbm6; do
    if installed "$p"; then purge="$purge $p"; fi
  done
  # shellcheck disable=SC2086
  if [ -n "$purge" ]; then dpkg --purge $purge >/dev/null; fi
}

case "${1:-}" in
  --trim)
    trim "${2:?usage: runtime.sh --trim ROOT}"
    exit 0
    ;;
  --no-perl-for-git)
    no_perl_for_git
    exit 0
    ;;
esac

PACKAGES="ca-certificates git curl jq ripgrep python3 python3-pip"
missing=""
for p in $PACKAGES; do
  installed "$p" || missing="$missing $p"
done
# The filters and the Perl stub first, so what is installed now leaves them out.
trim /
no_perl_for_git
if [ -n "$missing" ]; then
  apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
  apt-get clean
  trim /
fi
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
