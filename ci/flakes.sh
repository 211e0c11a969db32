#!/usr/bin/env bash
# Flake rates: runs every scenario of a shard COUNT more times, writing each run under
# HADRILL_RUNS_DIR beside the night's others, so the trend page gives each scenario's pass
# rate and the spread of its budgeted figures. Fails if any iteration failed.
#
#   bash ci/flakes.sh [SHARD/SHARDS] [COUNT]       e.g. ci/flakes.sh 2/4 4 (default 1/1 4)
#
# One nextest run per iteration rather than `--stress-count`: with fail-fast off (profile
# `ci`, inherited by `flakes`), nextest 0.9.143 exits 0 when any iteration but the last
# failed (seen 2026-12-06: the first of five failed, exit status 0), showing a flake as green.
set -euo pipefail
cd "$(dirname "$0")/.."
shard="${1:-1/1}"
count="${2:-4}"
failed=()
for i in $(seq 1 "$count"); do
    echo "flakes: iteration $i of $count, shard $shard"
    cargo nextest run --workspace --profile flakes --partition "hash:$shard" \
        -E 'package(hadrill-scenarios)' --no-tests warn || failed+=("$i")
done
echo "flakes: $((count - ${#failed[@]})) of $count iterations passed, shard $shard${failed[*]:+ (failed: ${failed[*]})}"
[ "${#failed[@]}" -eq 0 ]
