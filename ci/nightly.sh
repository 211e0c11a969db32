#!/usr/bin/env bash
# The nightly job on any machine with Docker: prerequisites, every test and scenario, every
# scenario four more times (flake rates), then the sign-off report over this night's runs and
# the trend over earlier nights.
#
#   bash ci/nightly.sh              # everything, one shard
#   SHARDS=4 bash ci/nightly.sh     # the same split the CI matrix uses, run one after another
#
# Runs go to runs/nightly/<time>/; the report to runs/nightly/<time>/suite/index.html.
# Exit status: non-zero if a test failed or the sign-off is not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bash ci/prereqs.sh || exit 1

night="$PWD/runs/nightly/$(date -u +%Y%m%dT%H%M%SZ)"
export HADRILL_RUNS_DIR="$night/runs"
mkdir -p "$HADRILL_RUNS_DIR"
shards="${SHARDS:-1}"
status=0
for k in $(seq 1 "$shards"); do
    cargo nextest run --workspace --profile ci --partition "hash:$k/$shards" || status=1
    bash ci/flakes.sh "$k/$shards" 4 || status=1
done
bash ci/leak-trials.sh 20 || status=1
bash ci/fuzz.sh 600 || status=1
bash ci/merge.sh "$night" "$PWD/runs/nightly" || status=1
exit $status
