#!/usr/bin/env bash
# After a test run: fail if it left behind anything it made. Only what this run made
# is looked at, as its ledger (LACKEY_TEST_LEDGER) lists it, because other suites may
# be running on the same machine:
#   dir <path>        a test's temporary directory (its runs' artifact folders live
#                     inside): it must be gone, with every run container whose
#                     artifacts were under it;
#   registry <host>   a test registry: no local image tag `<host>/...` may remain.
# Usage: scripts/check-leftovers.sh LEDGER
set -uo pipefail
ledger="${1:?usage: check-leftovers.sh LEDGER}"
left=()
containers=""
images=""
if docker info >/dev/null 2>&1; then
  containers=$(docker ps -a --filter label=lackey.managed=true --format '{{.Names}} {{.Label "lackey.artifacts"}}')
  images=$(docker images --format '{{.Repository}}:{{.Tag}}')
fi
dirs=0
registries=0
while IFS=$'\t' read -r kind what; do
  case "$kind" in
    dir)
      dirs=$((dirs + 1))
      [ -e "$what" ] && left+=("directory $what")
      while read -r name artifacts; do
        case "$artifacts" in "$what"/*) left+=("container $name (artifacts in $artifacts)") ;; esac
      done <<< "$containers"
      ;;
    registry)
      registries=$((registries + 1))
      while read -r tag; do
        case "$tag" in "$what"/*) left+=("image tag $tag") ;; esac
      done <<< "$images"
      ;;
  esac
done < "$ledger"

if [ ${#left[@]} -gt 0 ]; then
  echo "test: the run left ${#left[@]} thing(s) behind:" >&2
  printf '  %s\n' "${left[@]}" >&2
  exit 1
fi
echo "test: nothing left behind ($dirs test directories, $registries registries checked)"
