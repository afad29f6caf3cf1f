"""vLLM's latency-test shape measured from outside over HTTP: a batch of B concurrent requests
of I prompt tokens (distinct token ids) and exactly O output tokens (ignore_eos); prints the
median over runs of the time until the whole batch finished, in ms.

Usage: python3 scripts/latency_check.py BASE_URL [--batch 8 --input 32 --output 128 --runs 5]
"""
import argparse
import concurrent.futures
import json
import statistics
import time
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("base")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--input", type=int, default=32)
parser.add_argument("--output", type=int, default=128)
parser.add_argument("--runs", type=int, default=5)
args = parser.parse_args()


def one(run, index):
    prompt = [1000 + (run * 977 + index * 7919 + t * 104729) % 30000 for t in range(args.input)]
    body = json.dumps({"prompt": prompt, "max_tokens": args.output, "ignore_eos": True}).encode()
    request = urllib.request.Request(args.base + "/v1/completions", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        usage = json.load(response)["usage"]
        assert usage["completion_tokens"] == args.output, usage


results = []
with concurrent.futures.ThreadPoolExecutor(args.batch) as pool:
    for run in range(args.runs + 1):
        start = time.perf_counter()
        list(pool.map(lambda i: one(run, i), range(args.batch)))
        elapsed = (time.perf_counter() - start) * 1000
        if run > 0:  # the first run warms connections
            results.append(elapsed)
print(f"batch {args.batch} input {args.input} output {args.output}: e2e median {statistics.median(results):.1f} ms "
      f"(runs: {', '.join(f'{r:.1f}' for r in results)})")
