#!/usr/bin/env bash
# tycho serve under load (bench/server_load.mjs) with the golden md2-tiny
# model: a warm-up, then RUNS runs of 2,000 requests over 64 connections and
# one run of 200 requests over 1 connection (no batching possible), each with
# the server's CPU time (user + sys from /proc) and the load average.
#
#   bench/server_load.sh [build/bin/tycho] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tycho=$(realpath "${1:-$root/build/bin/tycho}")
runs=${2:-3}
tmp=$(mktemp -d)
: >"$tmp/server.log"  # exists before the background child opens it
"$tycho" serve --model "$root/tests/data/golden/md2-tiny" --port 0 --threads 2 >"$tmp/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=""
while [ -z "$port" ]; do
    sleep 0.1
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; exit 1; }
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
done
url=http://127.0.0.1:$port
node "$root/tests/server/wait_ready.mjs" "$url" 120

cpu_s() {  # the server's user + sys CPU seconds
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat"
}
load() {
    node "$root/bench/server_load.mjs" --url "$url" --pid "$pid" --images "$root/tests/data/golden/images" "$@"
}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; tycho $(git -C "$root" rev-parse --short HEAD)"
load --requests 256 --concurrency 64 >/dev/null  # warm-up: image prefixes cached, buffers grown
for i in $(seq "$runs"); do
    c0=$(cpu_s)
    echo "run $i: $(load --requests 2000 --concurrency 64); server CPU $(awk -v a="$(cpu_s)" -v b="$c0" 'BEGIN {print a - b}') s; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
done
c0=$(cpu_s)
echo "one connection: $(load --requests 200 --concurrency 1); server CPU $(awk -v a="$(cpu_s)" -v b="$c0" 'BEGIN {print a - b}') s; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
