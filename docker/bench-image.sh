#!/usr/bin/env bash
# make bench-image: the compressed size and the layers of minion-base, built from
# debian:bookworm-slim (where it can be pulled) and from the offline base, with the
# release lackey given as $1. Compressed = each layer gzipped as a registry stores it,
# which is what Fargate pulls before every cloud run.
set -euo pipefail
BIN="${1:?usage: bench-image.sh path/to/release/lackey}"
command -v jq >/dev/null || { echo "bench-image: jq is required" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/lackey-bench-image.XXXXXX)
built=()
cleanup() {
  rm -rf "$tmp"
  for i in "${built[@]}"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

measure() { # image label
  local image=$1 label=$2 dir="$tmp/$2"
  mkdir -p "$dir"
  docker save "$image" -o "$dir/image.tar"
  tar -xf "$dir/image.tar" -C "$dir"
  local total_c=0 total_u=0 n=0
  printf '\n== minion-base from %s (%s)\n' "$label" "$image"
  printf '%-6s %12s %12s\n' layer uncompressed compressed
  while read -r layer; do
    n=$((n + 1))
    local u c
    u=$(stat -c %s "$dir/$layer")
    c=$(gzip -6 -c "$dir/$layer" | wc -c)
    total_u=$((total_u + u)); total_c=$((total_c + c))
    printf '%-6s %10.1f MB %10.1f MB\n' "$n" "$(echo "$u/1048576" | bc -l)" "$(echo "$c/1048576" | bc -l)"
  done < <(jq -r '.[0].Layers[]' "$dir/manifest.json")
  printf '%-6s %10.1f MB %10.1f MB\n' total "$(echo "$total_u/1048576" | bc -l)" "$(echo "$total_c/1048576" | bc -l)"
  printf 'lackey binary: %.1f MB\n' "$(echo "$(docker run --rm --entrypoint stat "$image" -c %s /usr/local/bin/lackey)/1048576" | bc -l)"
  echo "layers, newest first (docker history):"
  docker history --format '  {{printf "%-10s" .Size}} {{.CreatedBy}}' "$image" | cut -c1-110
  rm -rf "$dir"
}

cd "$tmp"
# From the offline base (debootstrap; no registry needed).
bash "$here/scripts/build-offline-base.sh" >/dev/null
"$BIN" image build --offline --tag lackey-bench/minion-base:offline -q
built+=(lackey-bench/minion-base:offline)
measure lackey-bench/minion-base:offline "the offline base (lackey/debian-base:bookworm)"

# From debian:bookworm-slim, the Dockerfile path (docker/Dockerfile.binary, the same
# runtime stage as docker/Dockerfile).
if "$BIN" image build --tag lackey-bench/minion-base:slim -q 2>"$tmp/slim.err"; then
  built+=(lackey-bench/minion-base:slim)
  measure lackey-bench/minion-base:slim "debian:bookworm-slim"
else
  printf '\n== minion-base from debian:bookworm-slim: not measured here\n'
  sed 's/^/  /' "$tmp/slim.err"
fi
