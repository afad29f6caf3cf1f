#!/usr/bin/env bash
# An idle fleet's cost: `understudy up FLEET` in one process, then, once every pod is Ready and
# the gateway has settled, its resident memory and the CPU it uses over SECONDS with no request.
# Usage: bash scripts/bench-fleet-idle.sh [FLEET] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
fleet=${1:-profiles/fleets/scale-200.yaml}
seconds=${2:-10}
swift build -c release --product understudy >/dev/null
log=$(mktemp)
.build/release/understudy up "$fleet" >"$log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q "pods Ready after" "$log" && break; sleep 0.1; done
grep "pods Ready after" "$log"
sleep 5
pods=$(grep -cE "(Starting|Running)$" "$log" || true)
hz=$(getconf CLK_TCK)
before=$(awk '{print $14 + $15}' /proc/$pid/stat)
sleep "$seconds"
after=$(awk '{print $14 + $15}' /proc/$pid/stat)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
python3 - "$pods" "$rss" "$before" "$after" "$hz" "$seconds" <<'PY'
import sys
pods, rss_kb, before, after, hz, seconds = sys.argv[1:]
pods, rss_kb = int(pods), int(rss_kb)
cpu = (int(after) - int(before)) / int(hz) / float(seconds) * 100
print(f"pods {pods}: RSS {rss_kb / 1024:.0f} MiB = {rss_kb / 1024 / max(pods, 1):.2f} MiB per pod; idle CPU {cpu:.1f} % of one core")
PY
