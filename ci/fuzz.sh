#!/usr/bin/env bash
# Fuzzes every file a user hands hadrill (topologies, scenarios, a saved run's files) for a
# given time: the property tests of harness/tests/fuzz_inputs.rs, run again and again with
# fresh seeds and FUZZ_CASES cases per property each round, until the time is up.
# Usage: bash ci/fuzz.sh [seconds, default 600]. Exits non-zero on the first failing case,
# printed and shrunk by proptest (a panic, an error pointing outside the file, or a case that
# runs for more than 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
cases=${FUZZ_CASES:-5000}
cargo nextest run -p hadrill -E 'binary(fuzz_inputs)' --no-run
start=$(date +%s)
rounds=0
while [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
    PROPTEST_CASES=$cases cargo nextest run -p hadrill -E 'binary(fuzz_inputs)' \
        --status-level fail --final-status-level fail
    rounds=$((rounds + 1))
done
echo "ci/fuzz.sh: $rounds rounds of 3 properties x $cases cases in $(( $(date +%s) - start )) s, no failure"
