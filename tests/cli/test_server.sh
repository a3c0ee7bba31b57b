#!/usr/bin/env bash
# tycho serve on a free loopback port with the golden md2-tiny model, driven
# by Moondream's official Node client and the OpenAI SDK (tests/server/*.mjs):
#   1. clients + bad input: every answer equals the CLI's; every bad request
#      gets its 4xx (or is cancelled) and the next request is served;
#   2. --api-key and a full queue (429); --timeout (504, error events);
#   3. while the model loads: 503 (/health, requests), then 200;
#   4. SIGTERM during a stream: the stream finishes, the server exits 0.
# Each server must exit 0 after SIGTERM (under ASan that includes the leak
# check at exit). Third argument "quick" (sanitizer builds) runs fewer cases.
set -euo pipefail
tycho=$(realpath "$1")
data=$(realpath "$2")
mode=${3:-full}
root=$(cd "$(dirname "$0")/../.." && pwd)
srv=$root/tests/server
model=$data/golden/md2-tiny

command -v node >/dev/null || { echo "node is missing: scripts/install-deps.sh installs it"; exit 1; }
flock "$srv/.install.lock" "$srv/install.sh" || { echo "cannot install the npm packages of tests/server"; exit 1; }

tmp=$(mktemp -d /tmp/tycho_server.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# start_server NAME ARGS...: sets pid and url; waits for /health unless $no_wait is set.
start_server() {
    local name=$1
    shift
    : >"$tmp/$name.log"  # exists before the background child opens it
    "$tycho" serve --model "$model" --host 127.0.0.1 --port 0 --threads 2 "$@" >"$tmp/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    local port=""
    for _ in $(seq 600); do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log" | head -1)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        cat "$tmp/$name.log"
        echo "FAIL: server $name did not start"
        exit 1
    fi
    url=http://127.0.0.1:$port
    [ -n "${no_wait:-}" ] && return
    node "$srv/wait_ready.mjs" "$url" 120 || { cat "$tmp/$name.log"; exit 1; }
}

# stop_server NAME PID: SIGTERM, then the exit status must be 0.
stop_server() {
    kill -TERM "$2" 2>/dev/null || true
    wait_server "$1" "$2"
}

wait_server() {
    local rc=0
    wait "$2" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -40 "$tmp/$1.log"
        fail "server $1 exited with status $rc"
    fi
}

# run_node SCRIPT: the test with the server's address in its environment.
run_node() {
    (cd "$srv" && TYCHO_BIN=$tycho TYCHO_URL=$url TYCHO_DATA=$data TYCHO_MODE=$mode TYCHO_TMP=$tmp TYCHO_PID=$pid \
        TYCHO_SEED=7 TYCHO_MAX_TOKENS=48 node "$1") || fail "$1"
}

echo "== clients and bad input"
start_server main --seed 7 --max-tokens 48
run_node clients.test.mjs
run_node bad_input.test.mjs
stop_server main "$pid"

echo "== API key, full queue"
start_server limits --api-key secret --max-batch-size 1 --max-queue 2 --max-tokens 4 --max-pixels-in-flight 200000
run_node limits.test.mjs
stop_server limits "$pid"

echo "== request timeout"
start_server timeout --timeout 0.5
run_node timeout.test.mjs
stop_server timeout "$pid"

echo "== while the model loads"
TYCHO_TEST_LOAD_DELAY_MS=3000 no_wait=1 start_server loading
run_node loading.test.mjs
stop_server loading "$pid"

echo "== SIGTERM during a stream"
start_server shutdown
run_node shutdown.test.mjs
wait_server shutdown "$pid"
grep -q "shutting down" "$tmp/shutdown.log" || fail "no shutdown line in the log"

echo "server tests: $failures failures"
[ "$failures" -eq 0 ]
