#!/usr/bin/env bash
# Merges the scenario runs of one night (possibly from several shards) into the sign-off report.
#   ci/merge.sh <night dir holding runs/> <directory of earlier nights, for the trend>
set -euo pipefail
night="$1"
history="${2:-$(dirname "$night")}"
mapfile -t runs < <(find "$night" -name results.json -printf '%h\n' | sort)
if [ ${#runs[@]} -eq 0 ]; then
    echo "ci/merge.sh: no scenario results under $night" >&2
    exit 1
fi
cargo run -q -p hadrill -- report --out "$night/suite" --history "$history" --signoff "${runs[@]}"
