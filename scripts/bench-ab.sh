#!/usr/bin/env bash
# Two builds side by side in one run: OLD_BIN (another checkout's .build/release/understudy)
# against this checkout's release build, REPS rounds alternating, each round:
#   - `understudy serve --accelerator instant` alone: wrk -t1 -c64, non-streaming completions;
#   - `understudy gateway` in front of two instant pods (of the same build): the same load.
# Prints req/s per round and the medians. Usage: bash scripts/bench-ab.sh OLD_BIN [SECONDS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
seconds=${2:-6}
reps=${3:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; }
source scripts/lib.sh
new=$bin
rate() { wrk -t1 -c64 -d"${seconds}s" -s scripts/wrk-completion.lua "$1" | awk '/Requests\/sec/ {print $2}'; }

declare -A results
for round in $(seq "$reps"); do
  for build in old new; do
    build_bin=$([ "$build" = old ] && echo "$old" || echo "$new")
    spawn "$build_bin" serve --accelerator instant --host 127.0.0.1 --port 18401
    spawn "$build_bin" serve --accelerator instant --host 127.0.0.1 --port 18402
    wait_for http://127.0.0.1:18401/health; wait_for http://127.0.0.1:18402/health
    serve=$(rate http://127.0.0.1:18401/v1/completions)
    spawn "$build_bin" gateway --config profiles/gateway/pool.yaml --host 127.0.0.1 --port 18480 --metrics-port 18490 \
      --endpoints 127.0.0.1:18401,127.0.0.1:18402
    wait_for http://127.0.0.1:18480/v1/models
    gateway=$(rate http://127.0.0.1:18480/v1/completions)
    echo "round $round $build: serve $serve req/s, gateway $gateway req/s"
    results[serve-$build]+="$serve "
    results[gateway-$build]+="$gateway "
    stop_spawned
    sleep 1
  done
done
for what in serve gateway; do
  python3 - "$what" "${results[$what-old]}" "${results[$what-new]}" <<'PY'
import statistics, sys
what, old, new = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"{what}: median old {statistics.median(old):,.0f} req/s, new {statistics.median(new):,.0f} req/s, new/old {statistics.median(new)/statistics.median(old):.2f}")
PY
done
