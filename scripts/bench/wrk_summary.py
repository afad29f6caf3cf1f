"""Reads `wrk --latency` output on stdin; prints one CSV row:
NAME,LOAD,REP,rps,p50_ms,p99_ms,non2xx,cpu_us_per_request (from CPU_TICKS at CLK_TCK ticks/s),decision_us.

Usage: wrk_summary.py NAME LOAD REP CPU_TICKS CLK_TCK [DECISION_US] < wrk-output
"""
import re
import sys

text = sys.stdin.read()


def milliseconds(percentile):
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu_us = int(sys.argv[4]) / int(sys.argv[5]) * 1e6 / max(requests, 1)
errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
failures = re.search(r"Socket errors: (.*)", text)
print(",".join(sys.argv[1:4] + [f"{rps:.0f}", f"{milliseconds(50):.3f}", f"{milliseconds(99):.3f}",
                                 errors.group(1) if errors else "0", f"{cpu_us:.1f}", sys.argv[6] if len(sys.argv) > 6 else ""]) + (f"  # socket errors: {failures.group(1)}" if failures else ""))
