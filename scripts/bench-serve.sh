#!/usr/bin/env bash
# Benchmark one `understudy serve --accelerator instant` with wrk on this machine: non-streaming
# completions/s, streaming requests/s (events/s = 17 × that: 16 tokens + [DONE]), idle RSS.
# Usage: bash scripts/bench-serve.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-64}
port=18123
swift build -c release --product understudy >/dev/null
.build/release/understudy serve --accelerator instant --host 127.0.0.1 --port $port >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf localhost:$port/health >/dev/null && break; sleep 0.1; done
sleep 1
echo "idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
echo "--- non-streaming completions (max_tokens 16), $connections connections, ${duration}s"
wrk -t1 -c"$connections" -d"${duration}s" -s scripts/wrk-completion.lua "http://127.0.0.1:$port/v1/completions" | grep -E "Requests/sec|Latency|requests in|Non-2xx"
echo "--- streaming completions (16 tokens + [DONE] per request), $connections connections, ${duration}s"
wrk -t1 -c"$connections" -d"${duration}s" -s scripts/wrk-stream.lua "http://127.0.0.1:$port/v1/completions" | grep -E "Requests/sec|Latency|requests in|Non-2xx"
echo "RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
