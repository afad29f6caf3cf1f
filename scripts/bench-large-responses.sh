#!/usr/bin/env bash
# Large answers straight from a pod and through the gateway, side by side (issue 11: the relay
# once stalled on anything over ~128 KB until its upstream timeout). One `instant` pod behind
# `understudy gateway`; REPS rounds, direct and gateway alternating, of:
#   - a /tokenize answer of ~12 MB (token ids and token strings of a 6 MB prompt), and
#   - a stream of n = 256 completions of 64 tokens (16,384 events, ~6 MB),
# timed by curl from request to last byte. Prints each time, then the medians and their ratio.
# Usage: bash scripts/bench-large-responses.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
source scripts/lib.sh
spawn "$bin" serve --accelerator instant --host 127.0.0.1 --port 18301
spawn "$bin" gateway --config profiles/gateway/pool.yaml --host 127.0.0.1 --port 18380 --metrics-port 18390 --endpoints 127.0.0.1:18301
wait_for http://127.0.0.1:18301/health
wait_for http://127.0.0.1:18380/v1/models
python3 -c 'import json; print(json.dumps({"model": "meta-llama/Meta-Llama-3-8B", "prompt": "hello world " * 500000, "return_token_strs": True}))' >"$work/tokenize.json"
echo '{"model":"meta-llama/Meta-Llama-3-8B","prompt":"x","max_tokens":64,"n":256,"ignore_eos":true,"stream":true}' >"$work/stream.json"

declare -A times
for round in $(seq "$reps"); do
  for kind in tokenize stream; do
    path=$([ "$kind" = tokenize ] && echo /tokenize || echo /v1/completions)
    for target in direct gateway; do
      port=$([ "$target" = direct ] && echo 18301 || echo 18380)
      # The gateway must see the pod (a pod busy with the last answer may have missed a scrape).
      wait_for http://127.0.0.1:18380/v1/models
      result=$(curl -s -o "$work/out" -w '%{http_code} %{time_total} %{size_download}' -H 'content-type: application/json' \
        --data-binary @"$work/$kind.json" "http://127.0.0.1:$port$path")
      echo "round $round $kind $target: $result"
      times[$kind-$target]+="$(echo "$result" | cut -d' ' -f2) "
    done
  done
done
for kind in tokenize stream; do
  python3 - "$kind" "${times[$kind-direct]}" "${times[$kind-gateway]}" <<'PY'
import statistics, sys
kind, direct, gateway = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
d, g = statistics.median(direct), statistics.median(gateway)
print(f"{kind}: median direct {d*1000:.0f} ms, through the gateway {g*1000:.0f} ms, ratio {g/d:.2f}")
PY
done
