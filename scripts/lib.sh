# Shared by the benchmark scripts: `source scripts/lib.sh` from the repository's root.
# Builds the release binary into $bin, runs background servers with `spawn` (stopped on exit),
# and waits for a server with `wait_for URL`.
swift build -c release --product understudy >/dev/null
bin=.build/release/understudy
work=$(mktemp -d)
pids=()
stop_spawned() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pids=()
}
trap 'stop_spawned; rm -rf "$work"' EXIT
spawn() {  # COMMAND...: in the background, output discarded
  "$@" >/dev/null 2>&1 &
  pids+=($!)
}
wait_for() {  # URL: until it answers 200, at most 60 s
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "$1 never answered" >&2
  return 1
}
