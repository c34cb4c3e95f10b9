#!/usr/bin/env bash
# The whole test suite as `make test` runs it: unit and integration tests, then the
# number of tests skipped for a missing dependency (each named, with the reason), then
# a check that the run left behind nothing it made. Extra arguments go to `cargo test`.
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
ledger=$(mktemp "${TMPDIR:-/tmp}/lackey-test-ledger.XXXXXX")
export LACKEY_TEST_LEDGER="$ledger"
status=0
"$CARGO" test --locked "$@" || status=$?

skipped=$(grep -c '^skip' "$ledger")
if [ "$skipped" -gt 0 ]; then
  echo "test: $skipped test(s) SKIPPED for a missing dependency (CI=true makes each a failure):"
  grep '^skip' "$ledger" | cut -f2- | sed 's/\t/: /; s/^/  /'
else
  echo "test: no test skipped"
fi
scripts/check-leftovers.sh "$ledger" || status=1
rm -f "$ledger"
exit "$status"
