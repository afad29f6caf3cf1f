#!/usr/bin/env bash
# One live benchmark run: `understudy up FLEET --policy POLICY`, then `understudy bench` through
# its gateway (port 8080) with the given rates, then the fleet is stopped. Extra arguments go to
# bench (e.g. --streaming, --model a,b,c). Writes OUT/report.json, summary.md, charts.
# Usage: bash scripts/bench-live.sh FLEET POLICY RATES DURATION OUT [bench arguments…]
set -euo pipefail
cd "$(dirname "$0")/.."
fleet=$1 policy=$2 rates=$3 duration=$4 out=$5
shift 5
swift build -c release --product understudy >/dev/null
bin=.build/release/understudy
log=$(mktemp)
"$bin" up "$fleet" --policy "$policy" >"$log" 2>&1 &
pid=$!
# The fleet's own output is kept only when it says something: its warnings, or how it ended if it
# ended before the benchmark did (a crash prints its backtrace there).
stop() {
  if kill -INT $pid 2>/dev/null; then
    wait $pid 2>/dev/null || true
    grep warning "$log" || true
  else
    echo "understudy up exited before the benchmark ended; its last output:" >&2
    tail -n 80 "$log" >&2
  fi
  rm -f "$log"
}
trap stop EXIT
for _ in $(seq 600); do grep -q "pods Ready after" "$log" && break; sleep 0.1; done
grep "pods Ready after" "$log"
# The pools' model unless the arguments name models (adapters) themselves.
models=()
[[ " $* " == *" --model "* ]] || models=(--model "$(awk '/ model:/ {print $2; exit}' "$fleet")")
"$bin" bench --target http://127.0.0.1:8080 "${models[@]}" --rate "$rates" --duration "$duration" --label "$policy" --out "$out" "$@"
