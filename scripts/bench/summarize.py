"""Medians of bench-gateway.sh's CSV (on stdin), one row per target, as a markdown table.

Added latency is the target's median p50/p99 at concurrency 1 minus the direct pod's.
"""
import csv
import statistics
import sys

rows = [row for row in csv.DictReader(line for line in sys.stdin if not line.startswith("#") and "," in line)]
targets = list(dict.fromkeys(row["target"] for row in rows))


def median(target, load, field):
    return statistics.median(float(row[field]) for row in rows if row["target"] == target and row["load"] == load)


has_direct = "direct" in targets
direct_p50, direct_p99 = (median("direct", "latency", "p50_ms"), median("direct", "latency", "p99_ms")) if has_direct else (0, 0)
envoy_rps = median("envoy", "throughput", "rps") if "envoy" in targets else None
def decision(target):
    values = [float(row["decision_us"]) for row in rows if row["target"] == target and row["load"] == "throughput" and row.get("decision_us")]
    return f"{statistics.median(values):.1f}" if values else "—"


print("| target | req/s (c64) | vs Envoy | p50 / p99 ms (c64) | CPU µs/request (c64) | added p50 / p99 ms (c1) | picker decision µs (c64) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for target in targets:
    rps = median(target, "throughput", "rps")
    ratio = f"{rps / envoy_rps:.2f}×" if envoy_rps else ""
    added = "—" if target == "direct" or not has_direct else (
        f"{median(target, 'latency', 'p50_ms') - direct_p50:.3f} / {median(target, 'latency', 'p99_ms') - direct_p99:.3f}")
    print(f"| {target} | {rps:,.0f} | {ratio} | {median(target, 'throughput', 'p50_ms'):.2f} / {median(target, 'throughput', 'p99_ms'):.2f} "
          f"| {median(target, 'throughput', 'cpu_us_per_request'):.1f} | {added} | {decision(target)} |")
