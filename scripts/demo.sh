#!/usr/bin/env bash
# The main job: build the minion image and do a stub run (no LLM, no API key) on a
# small demo repository, ending with the run's summary. Works where no image can be
# pulled: it then builds the image from a local Debian base (debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
IMAGE="${LACKEY_IMAGE:-minion-base:latest}"
DEMO="${LACKEY_DEMO_REPO:-/tmp/lackey-demo}"

scripts/install-deps.sh
echo "demo: building lackey (a few minutes the first time; cargo shows its progress)"
cargo build --locked
lackey="$CARGO_TARGET_DIR/debug/lackey"

if docker image inspect debian:bookworm-slim >/dev/null 2>&1 || docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
  "$lackey" image build --tag "$IMAGE"
else
  echo "demo: debian:bookworm-slim cannot be pulled here; building the image offline"
  scripts/build-offline-base.sh
  "$lackey" image build --offline --tag "$IMAGE"
fi

echo "demo: a fresh demo repository in $DEMO"
rm -rf "$DEMO"
mkdir -p "$DEMO"
git -C "$DEMO" init --quiet -b main
printf '#!/bin/sh\necho "hello"\n' > "$DEMO/hello.sh"
printf '#!/bin/sh\n[ "$(sh hello.sh)" = "hello" ] && echo ok\n' > "$DEMO/test.sh"
git -C "$DEMO" add -A
git -C "$DEMO" -c user.name=demo -c user.email=demo@lackey.invalid commit --quiet -m "demo project"

echo "demo: lackey run --stubs (the whole pipeline, no LLM call)"
env -u ANTHROPIC_API_KEY LACKEY_TEST="sh test.sh" \
  "$lackey" run "add a hello world test" --repo "$DEMO" --image "$IMAGE" --stubs
echo
echo "demo: the run's branch, fetched into $DEMO:"
git -C "$DEMO" log --oneline --decorate --branches='minion/*' -1
