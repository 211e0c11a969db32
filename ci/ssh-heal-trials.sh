#!/usr/bin/env bash
# Heal trials over SSH: against an install on existing hosts (here, the web-ha test bed of VM
# containers), start an SSH drill that partitions, stops a service or rotates a secret, SIGKILL
# the harness at a random moment, then restore the hosts from the run's heal journal,
# alternately with `hadrill heal <run>` and by the next run's start. Each trial then asks every
# host over SSH what is left: hadrill's firewall chains, a service not running, a secret other
# than the install's own. Expected: nothing.
#
#   bash ci/ssh-heal-trials.sh [TRIALS]      (HADRILL: the binary; default the debug build)
set -uo pipefail
cd "$(dirname "$0")/.."
trials="${1:-10}"
bin="${HADRILL:-target/debug/hadrill}"
[ -x "$bin" ] || cargo build -p hadrill
runs="$(mktemp -d)"

"$bin" testbed web-ha >"$runs/testbed.log" 2>&1 &
bed=$!
trap 'kill -INT $bed 2>/dev/null; wait $bed 2>/dev/null' EXIT
for _ in $(seq 1 180); do
    grep -q '^ready' "$runs/testbed.log" && break
    sleep 1
done
hosts=$(sed -n 's/^its \[hosts\] topology: //p' "$runs/testbed.log")
[ -n "$hosts" ] || { cat "$runs/testbed.log"; echo "the test bed did not come up" >&2; exit 1; }

# What is left on each host, asked over SSH as the drill user: chain rules, services down, a
# SECRET_KEY in the product's config file other than the one the install's secrets file holds.
leftovers() {
    python3 - "$hosts" <<'EOF'
import subprocess, sys, tomllib, os
path = sys.argv[1]
t = tomllib.load(open(path, "rb"))
secrets = dict(l.split("=", 1) for l in open(os.path.join(os.path.dirname(path), "secrets")).read().split())
left = []
for name, h in t["hosts"].items():
    s = h["ssh"]
    kh = os.path.join(os.path.dirname(path), s["known_hosts"])
    ssh = ["ssh", "-i", s["identity"], "-p", str(s["port"]), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={kh}", f'{s["user"]}@{s["host"]}']
    rules = subprocess.run(ssh + ["sudo", "-n", "iptables", "-S"], capture_output=True, text=True).stdout
    if "HADRILL" in rules:
        left.append(f"{name}: chains")
    status = subprocess.run(ssh + ["sudo", "-n", "sv", "status", "main"], capture_output=True, text=True).stdout
    if not status.startswith("run:"):
        left.append(f"{name}: service {status.strip()}")
    if "rotate_secret" in h:
        conf = subprocess.run(ssh + ["sudo", "-n", "tail", "-n", "100", "/etc/hadrill/web.conf"], capture_output=True, text=True).stdout
        if f"SECRET_KEY={secrets['SECRET_KEY']}" not in conf.split():
            left.append(f"{name}: SECRET_KEY not the install's own")
print(len(left), "; ".join(left))
EOF
}

leaked=0
drills=(cut-app-from-db stop-app-graceful kill-active-app rotate-secret)
for i in $(seq 1 "$trials"); do
    # Each drill in turn, killed at a random moment.
    scenario=${drills[$(((i - 1) % ${#drills[@]}))]}
    # 3 s to 25 s: from the hosts being reached, through the faults, to the final read.
    at=$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", 3 + 22 * r / 32767 }')
    HADRILL_RUNS_DIR="$runs" "$bin" run "$scenario" --topology "$hosts" >"$runs/trial-$i.log" 2>&1 &
    pid=$!
    sleep "$at"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    run=$(ls -td "$runs"/*"$scenario"*/ 2>/dev/null | head -1)
    before=$(leftovers)
    if [ $((i % 2)) -eq 1 ]; then
        how="hadrill heal"
        "$bin" heal "$run" >>"$runs/trial-$i.log" 2>&1
    else
        # The next start heals what a dead run left; a run that refuses at once (a scenario
        # whose fault hosts cannot take) is enough, since the sweep comes first.
        how="next start"
        HADRILL_RUNS_DIR="$runs" "$bin" up "$hosts" >>"$runs/trial-$i.log" 2>&1
    fi
    after=$(leftovers)
    echo "trial $i: $scenario killed at ${at}s; before healing: $before; after $how: $after"
    [ "${after%% *}" = "0" ] || leaked=$((leaked + 1))
done
echo "trials: $trials, hosts left changed: $leaked (runs in $runs)"
[ "$leaked" -eq 0 ]
