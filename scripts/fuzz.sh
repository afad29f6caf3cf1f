#!/usr/bin/env bash
# Hostile requests at scale: CASES fuzzed requests (default 1,000,000) against one pod
# (understudy serve, instant profile, LoRA and runtime adapter loading on), then as many through
# the gateway of a fleet in one process (profiles/fleets/fuzz.yaml). Reports, for each, the
# answers by status, 5xx answers, hangs (no answer within 5 s), answers cut off and requests
# not answered, and whether the server was still up and its pods never restarted.
# Usage: bash scripts/fuzz.sh [CASES] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
out=${2:-fuzz-results}
mkdir -p "$out"
source scripts/lib.sh
status=0

echo "== a pod: understudy serve on 127.0.0.1:18000"
VLLM_ALLOW_RUNTIME_LORA_UPDATING=1 "$bin" serve --host 127.0.0.1 --port 18000 --accelerator instant --enable-lora --max-loras 2 \
  --lora-modules sql-lora=/adapters/sql chat-lora=/adapters/chat --enable-auto-tool-choice --tool-call-parser hermes >"$out/pod.log" 2>&1 &
pod=$!
wait_for http://127.0.0.1:18000/health
"$bin" fuzz --target http://127.0.0.1:18000 --cases "$cases" --seed 1 | tee "$out/pod.txt" || status=1
if kill -0 "$pod" 2>/dev/null && [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18000/health)" = 200 ]; then
  echo "pod: still up and healthy" | tee -a "$out/pod.txt"
else
  echo "pod: DOWN (see $out/pod.log)" | tee -a "$out/pod.txt"; status=1
fi
kill "$pod" 2>/dev/null || true
wait "$pod" 2>/dev/null || true

echo "== a fleet in one process: understudy up profiles/fleets/fuzz.yaml, through its gateway on 127.0.0.1:8080"
"$bin" up profiles/fleets/fuzz.yaml >"$out/fleet.log" 2>&1 &
fleet=$!
wait_for http://127.0.0.1:8080/v1/models
"$bin" fuzz --target http://127.0.0.1:8080 --cases "$cases" --seed 2 | tee "$out/gateway.txt" || status=1
pods=$(curl -s http://127.0.0.1:8070/pods || true)
if kill -0 "$fleet" 2>/dev/null && echo "$pods" | python3 -c '
import json, sys
pods = json.load(sys.stdin)
sys.exit(0 if pods and all(p["ready"] and p["restarts"] == 0 for p in pods) else 1)'; then
  echo "fleet: still up; every pod Ready, none restarted" | tee -a "$out/gateway.txt"
else
  echo "fleet: DOWN or a pod restarted (see $out/fleet.log): $pods" | tee -a "$out/gateway.txt"; status=1
fi
kill -INT "$fleet" 2>/dev/null || true
wait "$fleet" 2>/dev/null || true
exit $status
