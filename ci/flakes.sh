#!/usr/bin/env bash
# Flake rates: runs every scenario of a shard COUNT more times (nextest's stress runs of the
# scenario tests), writing each run under HADRILL_RUNS_DIR beside the night's others, so the
# trend page gives each scenario's pass rate and the spread of its budgeted figures.
#
#   bash ci/flakes.sh [SHARD/SHARDS] [COUNT]       e.g. ci/flakes.sh 2/4 4 (default 1/1 4)
set -euo pipefail
cd "$(dirname "$0")/.."
shard="${1:-1/1}"
count="${2:-4}"
cargo nextest run --workspace --profile ci --partition "hash:$shard" \
    -E 'package(hadrill-scenarios)' --stress-count "$count"
