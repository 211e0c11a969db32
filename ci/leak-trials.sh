#!/usr/bin/env bash
# Leak trials: start `hadrill run` on a short real scenario N times and kill it with a random
# signal (KILL, INT or TERM) at a random moment (image check, topology start, steps, final
# read, teardown), then check that nothing of hadrill's remains: containers, networks,
# watchdogs, private run directories (staged secrets) or host iptables rules. A SIGKILL leaves
# the cleanup to the run's watchdog; INT and TERM to hadrill's own handler.
#
#   bash ci/leak-trials.sh [TRIALS] [SCENARIO]      (HADRILL: the binary; default the debug build)
set -uo pipefail
cd "$(dirname "$0")/.."
trials="${1:-10}"
scenario="${2:-harness/tests/fixtures/cli/quick.toml}"
bin="${HADRILL:-target/debug/hadrill}"
[ -x "$bin" ] || cargo build -p hadrill
runs="$(mktemp -d)"
tmp="${TMPDIR:-/tmp}"

# What process $1 left: containers, networks, watchdogs, private dirs, host iptables rules.
# Scoped to its owner label (pid first), so other hadrill runs on the engine do not count.
leftovers() {
    local owner="io.hadrill.owner=$1:" c n w d r
    c=$(docker ps -a --filter label=io.hadrill.managed --format '{{.Labels}}' | tr ',' '\n' | grep -c "^$owner")
    n=$(docker network ls --filter label=io.hadrill.managed --format '{{.Labels}}' | tr ',' '\n' | grep -c "^$owner")
    w=$(docker ps -a --filter label=io.hadrill.watchdog --format '{{.Labels}}' | tr ',' '\n' | grep -c "^io.hadrill.watchdog=$1:")
    d=$(grep -l "^$1:" "$tmp"/hadrill-*/owner 2>/dev/null | wc -l)
    r=$( (iptables-save 2>/dev/null || true) | grep -c HADRILL)
    echo "$c $n $w $d $r"
}

leaked=0
for i in $(seq 1 "$trials"); do
    signal=$(shuf -n1 -e KILL INT TERM)
    # 0.5 s to 30 s: from the image check to past the teardown of a ~25 s run.
    at=$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", 0.5 + 29.5 * r / 32767 }')
    HADRILL_RUNS_DIR="$runs" "$bin" run "$scenario" >"$runs/trial-$i.log" 2>&1 &
    pid=$!
    sleep "$at"
    kill -s "$signal" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    code=$?
    # The watchdog reaps within seconds; give it 20.
    left=""
    for _ in $(seq 1 40); do
        left=$(leftovers "$pid")
        [ "$left" = "0 0 0 0 0" ] && break
        sleep 0.5
    done
    if [ "$left" = "0 0 0 0 0" ]; then
        echo "trial $i: SIG$signal at ${at}s, exit $code: nothing left"
    else
        leaked=$((leaked + 1))
        echo "trial $i: SIG$signal at ${at}s, exit $code: LEFT containers/networks/watchdogs/private dirs/iptables rules = $left"
    fi
done
rm -rf "$runs"
echo "trials $trials, leaked $leaked"
[ "$leaked" -eq 0 ]
