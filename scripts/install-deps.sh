#!/usr/bin/env bash
# Install what lackey's build, its main job and its tests need on a fresh Debian/Ubuntu
# machine: git, a C toolchain, debootstrap (the offline image base), Debian's
# docker-registry (the local ECR data plane in tests), moto (the local AWS) and
# chromium (headless, for the run report's tests).
# Idempotent: installs only what is missing. Docker itself must already be running.
set -euo pipefail

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v chromium >/dev/null || need_apt+=(chromium)  # the report's browser tests

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d keeps the packaged registry service from starting: tests start their own.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import moto, werkzeug' 2>/dev/null; then
  echo "install-deps: pip install moto[server]"
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is missing: install Rust from https://rustup.rs" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "install-deps: the Docker daemon is not reachable: start Docker (or set DOCKER_HOST)" >&2
  exit 1
fi
