#!/usr/bin/env bash
# Benchmarks: runs one scenario of benches/ with the harness in release and prints what the
# harness itself cost (CPU over the run and while the workloads ran, peak memory), the
# operations recorded per second by role, and, where agents ran, the reconnection p50/p99/max
# after the fault. Not a test: it judges nothing on time; the run's own checks give its verdict.
#   bash ci/bench.sh agents [count]   # benches/cluster-kill-worker-agents.toml, 10,000 agents or `count`
#   bash ci/bench.sh load             # benches/web-200-ops.toml, 200 user operations a second
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
case "${1:-}" in
agents)
    count="${2:-10000}"
    scenario="target/bench/cluster-kill-worker-$count.toml"
    sed "s/^count = [0-9]*$/count = $count/" benches/cluster-kill-worker-agents.toml >"$scenario"
    ;;
load)
    scenario="benches/web-200-ops.toml"
    # The product in release too, so that it, not the harness, is what 200 operations a
    # second cost on two cores.
    export HADRILL_SUT_PROFILE=release
    ;;
*)
    echo "usage: bash ci/bench.sh agents [count] | load" >&2
    exit 2
    ;;
esac
cargo build --release -q -p hadrill
set +e
./target/release/hadrill run "$scenario" | tee target/bench/run.log
status=${PIPESTATUS[0]}
set -e
name=$(basename "$scenario" .toml)
run_dir=$(grep -o "/[^ ]*/runs/[^ ]*$name-[0-9a-f]*" target/bench/run.log | tail -1)
python3 - "$run_dir" <<'PY'
import collections, json, sys
run = sys.argv[1]
r = json.load(open(f"{run}/results.json"))
ops = [json.loads(l) for l in open(f"{run}/history.jsonl")]
ops = [o for o in ops if o.get("type") == "op"]
print(f"verdict               {r['verdict']}")
by_role = collections.defaultdict(list)
for o in ops:
    by_role[o.get("role")].append(o["complete"])
for role, done in sorted(by_role.items()):
    span = (max(done) - min(done)) / 1e9
    rate = len(done) / span if span else 0
    print(f"{role + ' operations':<22}{len(done)} over {span:.0f} s: {rate:.0f}/s recorded")
h = r.get("harness") or {}
print(f"harness CPU           {h.get('cpu_seconds', 0):.1f} s over {r['wall_seconds']:.0f} s: {h.get('cores', 0):.3f} cores")
if h.get("load_cores") is not None:
    print(f"harness CPU, load     {h['load_cores']:.3f} cores while the workloads ran")
print(f"harness peak RSS      {h.get('peak_rss_mib', 0):.0f} MiB")
rec = next((c for c in r["checks"] if c["check"] == "reconnection"), None)
if rec:
    w = rec.get("figures", {}).get("windows", [{}])[0]
    print(f"reconnect after kill  {w.get('dropped')} dropped, p50 {w.get('p50_ms')} ms, p99 {w.get('p99_ms')} ms, max {w.get('max_ms')} ms")
PY
exit "$status"
