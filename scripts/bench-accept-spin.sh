#!/usr/bin/env bash
# What a listener costs while it is out of descriptors: `understudy serve` under a limit of 100
# open files, 150 idle clients connected (the rest wait in its backlog), CPU of the server over
# 5 s. Then the clients leave and /health must answer again.
# Usage: bash scripts/bench-accept-spin.sh [BINARY] (default: this checkout's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/understudy}
for tool in curl python3; do command -v $tool >/dev/null || { echo "bench-accept-spin: needs $tool (apt-get install $tool)" >&2; exit 1; }; done
[ -x "$bin" ] || swift build -c release --product understudy >/dev/null
port=18999
(ulimit -Sn 100; ulimit -Hn 100; exec "$bin" serve --accelerator instant --port $port >/dev/null 2>&1) &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null localhost:$port/health && break; sleep 0.1; done
python3 - $port <<'PY' &
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) for _ in range(150)]
time.sleep(8)
PY
holder=$!
sleep 2
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
before=$(ticks); sleep 5; after=$(ticks)
hz=$(getconf CLK_TCK)
echo "CPU while out of descriptors: $(( (after - before) * 100 / (5 * hz) )) % of one core"
wait $holder
curl -s -m 2 -o /dev/null -w "/health after the clients left: %{http_code}\n" localhost:$port/health
