#!/usr/bin/env bash
# Benchmark: N agents (default 10,000) through a worker kill, with the harness in release.
# Prints the harness's CPU and peak memory, the agents' messages per second, and the
# reconnection p50/p99/max after the kill. Not a test: it judges nothing on time; the run's
# own checks give its verdict.
#   bash ci/bench-agents.sh [count]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-10000}"
mkdir -p target/bench
scenario="target/bench/cluster-kill-worker-$count.toml"
sed "s/^count = 10000$/count = $count/" benches/cluster-kill-worker-10000.toml > "$scenario"
cargo build --release -q -p hadrill
set +e
./target/release/hadrill run "$scenario" | tee target/bench/run.log
status=${PIPESTATUS[0]}
set -e
run_dir=$(grep -o '/[^ ]*/runs/[^ ]*cluster-kill-worker-[0-9]*-[0-9a-f]*' target/bench/run.log | tail -1)
python3 - "$run_dir" <<'PY'
import json, sys
run = sys.argv[1]
r = json.load(open(f"{run}/results.json"))
ops = [json.loads(l) for l in open(f"{run}/history.jsonl")]
agent = sorted(o["complete"] for o in ops if o.get("role") == "agent")
span = (agent[-1] - agent[0]) / 1e9 if len(agent) > 1 else 0
h = r.get("harness") or {}
rec = next((c for c in r["checks"] if c["check"] == "reconnection"), None)
w = (rec or {}).get("figures", {}).get("windows", [{}])[0]
print(f"verdict               {r['verdict']}")
print(f"agents' operations    {len(agent)} over {span:.0f} s: {len(agent) / span if span else 0:.0f}/s recorded")
print(f"harness CPU           {h.get('cpu_seconds', 0):.0f} s over {r['wall_seconds']:.0f} s: {h.get('cores', 0):.2f} cores")
print(f"harness peak RSS      {h.get('peak_rss_mib', 0):.0f} MiB")
print(f"reconnect after kill  {w.get('dropped')} dropped, p50 {w.get('p50_ms')} ms, p99 {w.get('p99_ms')} ms, max {w.get('max_ms')} ms")
PY
exit "$status"
