#!/usr/bin/env bash
# Load on tycho serve (bench/server_load.mjs): 2,000 requests of every route
# over 64 keep-alive connections with the golden md2-tiny model (quick mode,
# for sanitizer builds: 300). Zero errors; the server's RSS after the second
# half within 10% of the first half (full mode); SIGTERM then exit status 0,
# which under ASan includes the leak check at exit.
set -euo pipefail
tycho=$(realpath "$1")
data=$(realpath "$2")
mode=${3:-full}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v node >/dev/null || { echo "node is missing: scripts/install-deps.sh installs it"; exit 1; }

n=2000
[ "$mode" = quick ] && n=300
tmp=$(mktemp -d /tmp/tycho_load.XXXXXX)
: >"$tmp/server.log"  # exists before the background child opens it
"$tycho" serve --model "$data/golden/md2-tiny" --host 127.0.0.1 --port 0 --threads 2 >"$tmp/server.log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=""
for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/server.log"; echo "FAIL: the server did not start"; exit 1; }
node "$root/tests/server/wait_ready.mjs" "http://127.0.0.1:$port" 120

failures=0
node "$root/bench/server_load.mjs" --url "http://127.0.0.1:$port" --requests "$n" --concurrency 64 \
    --images "$data/golden/images" --pid "$pid" --json | tee "$tmp/summary.json" || failures=1
if [ "$mode" != quick ]; then
    python3 - "$tmp/summary.json" <<'PY' || failures=1
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
half, end = s["rss_half_kb"], s["rss_end_kb"]
print(f"RSS {half} kB after {s['requests'] // 2} requests, {end} kB after {s['requests']}")
if end > half * 1.10:
    print("FAIL: RSS grew by more than 10% over the second half")
    sys.exit(1)
PY
fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -40 "$tmp/server.log"
    echo "FAIL: the server exited with status $rc"
    failures=1
fi
[ "$failures" -eq 0 ] && echo "load test passed"
[ "$failures" -eq 0 ]
