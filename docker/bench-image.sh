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
  printf 'target: <= 60 MB compressed: %s\n' "$(if [ "$total_c" -le $((60 * 1048576)) ]; then echo met; else echo "NOT met"; fi)"
  printf 'lackey binary: %.1f MB\n' "$(echo "$(docker run --rm --entrypoint stat "$image" -c %s /usr/local/bin/lackey)/1048576" | bc -l)"
  # Where the bytes go: each package's files (and the binary) tarred and gzipped on their
  # own. The packages of Debian's minbase (what bookworm-slim holds) are summed; the
  # rest, the tools and what they pull in, are listed.
  echo "what each part costs (uncompressed, compressed):"
  docker run -i --rm --user 0 -e MINBASE="$minbase" --entrypoint sh "$image" -s <<'PARTS'
size() { tar -c -T "$1" 2>/dev/null | gzip -6 | wc -c; }
usize() { tr '\n' '\0' <"$1" | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1; }
files() { dpkg -L "$1" 2>/dev/null | while read -r f; do if [ -f "$f" ] && [ ! -L "$f" ]; then echo "$f"; fi; done; }
: >/tmp/base.list
dpkg-query -W -f '${Package}\n' | while read -r p; do
  case " $MINBASE " in
    *" $p "*) files "$p" >>/tmp/base.list ;;
    *) files "$p" >/tmp/p.list; echo "$(size /tmp/p.list) $(usize /tmp/p.list) $p" ;;
  esac
done >/tmp/parts
echo /usr/local/bin/lackey >/tmp/bin.list
echo "$(size /tmp/bin.list) $(usize /tmp/bin.list) lackey (the binary)" >>/tmp/parts
echo "$(size /tmp/base.list) $(usize /tmp/base.list) Debian minbase: the packages bookworm-slim holds" >>/tmp/parts
sort -rn /tmp/parts | awk '{
  name = $3; for (i = 4; i <= NF; i++) name = name " " $i
  if ($1 >= 102400) printf "  %8.1f MB %8.1f MB  %s\n", $2 / 1048576, $1 / 1048576, name
  else { small += $1; n++ }
} END { printf "  %11s %8.1f MB  %d more packages, each under 0.1 MB\n", "", small / 1048576, n }'
PARTS
  echo "layers, newest first (docker history):"
  docker history --format '  {{printf "%-10s" .Size}} {{.CreatedBy}}' "$image" | cut -c1-110
  rm -rf "$dir"
}

cd "$tmp"
# The packages of Debian 12's minbase, which debian:bookworm-slim is made of.
minbase=$( (/usr/sbin/debootstrap --print-debs --variant=minbase bookworm "$tmp/print-debs" \
  "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" 2>/dev/null || true) | tr '\n' ' ')
# From the offline base (debootstrap; no registry needed).
base="${LACKEY_OFFLINE_BASE:-lackey/debian-base:bookworm}"
bash "$here/scripts/build-offline-base.sh" >/dev/null
"$BIN" image build --offline --base "$base" --tag lackey-bench/minion-base:offline -q
built+=(lackey-bench/minion-base:offline)
measure lackey-bench/minion-base:offline "the offline base ($base)"

# From debian:bookworm-slim, the Dockerfile path (docker/Dockerfile.binary, the same
# runtime stage as docker/Dockerfile).
if "$BIN" image build --tag lackey-bench/minion-base:slim -q 2>"$tmp/slim.err"; then
  built+=(lackey-bench/minion-base:slim)
  measure lackey-bench/minion-base:slim "debian:bookworm-slim"
else
  printf '\n== minion-base from debian:bookworm-slim: not measured here\n'
  sed 's/^/  /' "$tmp/slim.err"
fi
