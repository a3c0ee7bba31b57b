#!/usr/bin/env bash
# tycho bench on the CPU: random tiny-shape Moondream 2 and 3 (weights made in
# memory) and the demo model, a handful of requests at batch 1 and 4. The
# JSON lines parse; every request ran and generated exactly the mode's token
# count (3 / 30), even on the demo model, which answers the bench's question
# with EOS at once (so the engine's ignore_eos is what keeps it going);
# latencies are positive with P50 <= P99; at batch 1 the second question of an
# image hits the prefix cache (at batch 4 it may run beside the first). The table has a row per batch size. Bad
# arguments exit 2 with a message.
set -euo pipefail
tycho=$1
data=$2
mode=${3:-full}
root=$(cd "$(dirname "$0")/../.." && pwd)
python3 - "$tycho" "$data" "$mode" "$root" <<'PY'
import json, os, subprocess, sys

tycho, data, mode, root = sys.argv[1:5]
tycho = os.path.abspath(tycho)
tok = os.path.abspath(data + "/golden/tokenizer/gpt2.json")
failures = 0

def fail(*msg):
    global failures
    failures += 1
    print("FAIL", *msg)

def run(args, want_rc=0, cwd=None):
    p = subprocess.run([tycho, "bench"] + args, capture_output=True, text=True, cwd=cwd)
    if p.returncode != want_rc:
        fail("bench", " ".join(args), "exit", p.returncode, "want", want_rc, p.stderr.strip()[-500:])
    return p

def check_json(args, tokens, batches, requests):
    p = run(args + ["--json"])
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if len(lines) != len(batches):
        fail(args, "want %d JSON lines, got %r" % (len(batches), p.stdout))
        return
    for line, b in zip(lines, batches):
        try:
            r = json.loads(line)
        except ValueError as e:
            fail(args, "not JSON:", line, e)
            continue
        where = "%s batch %d" % (" ".join(args), b)
        if r["batch"] != b or r["requests"] != requests or r["requests_failed"] != 0:
            fail(where, "batch/requests/failed", r["batch"], r["requests"], r["requests_failed"])
        if r["tokens_per_request"] != tokens or r["output_tokens"] != requests * tokens:
            fail(where, "tokens", r["tokens_per_request"], r["output_tokens"])
        if not (r["wall_s"] > 0 and r["req_per_s"] > 0 and r["tokens_per_s"] > 0):
            fail(where, "rates", r["wall_s"], r["req_per_s"], r["tokens_per_s"])
        if abs(r["req_per_s"] * r["wall_s"] - requests) > 1e-6 * requests:
            fail(where, "req/s is not requests / wall time")
        if abs(r["tokens_per_s"] * r["wall_s"] - requests * tokens) > 1e-6 * requests * tokens:
            fail(where, "tokens/s is not output tokens / wall time")
        if not (0 < r["latency_p50_ms"] <= r["latency_p99_ms"]) or not r["ttft_p50_ms"] > 0:
            fail(where, "latencies", r["latency_p50_ms"], r["latency_p99_ms"], r["ttft_p50_ms"])
        if r["device"] != "cpu" or r["device_memory_used_mb"] != 0 or not r["peak_rss_mb"] > 0:
            fail(where, "memory", r["device"], r["device_memory_used_mb"], r["peak_rss_mb"])
        # 5 questions per 3 images: every image through the vision tower once at most.
        images = 3 * ((requests - 1) // 5) + [1, 1, 2, 2, 3][(requests - 1) % 5]
        if r["vision_images"] + r["prefix_hits"] < requests or r["vision_images"] > images:
            fail(where, "images", r["vision_images"], "hits", r["prefix_hits"], "distinct", images)
        if b == 1 and (r["prefix_hits"] != requests - images or r["vision_images"] != images):
            fail(where, "batch 1: hits", r["prefix_hits"], "vision", r["vision_images"], "distinct", images)

common = ["--shape", "tiny", "--tokenizer", tok, "--threads", "2", "--warmup", "1"]
# 7 requests: images 0 0 1 1 2 3 3 -> 4 images, 3 prefix hits when one runs at a time.
check_json(["--model", "md2", "--batch", "1,4", "--requests", "7", "--image-size", "378x378"] + common, 3, [1, 4], 7)
check_json(["--model", "md3", "--batch", "1,4", "--requests", "5", "--mode", "cot"] + common, 30, [1, 4], 5)

# The demo model stops at once on the bench's question; the bench still gets 3 tokens.
shapes = root + "/models/shapes"
q = subprocess.run([tycho, "query", "--model", shapes, root + "/examples/shapes.png", "--temperature", "0", "--json",
                    "--question", "Look at the chart carefully and answer the question below with a single word or "
                    "number only. Do not explain, and do not add any units. Question: What is the value of the "
                    "tallest bar in the 2019 group?"], capture_output=True, text=True)
if q.returncode != 0 or json.loads(q.stdout)["metrics"]["output_tokens"] >= 3:
    fail("demo model: expected an early EOS without the bench", q.stdout, q.stderr)
if mode != "quick":
    check_json(["--model", shapes, "--batch", "1,4", "--requests", "6", "--image-size", "378x378", "--threads", "2"],
               3, [1, 4], 6)

# The table: a title, the device, a header and one row per batch size; the
# tokenizer found from the binary's source tree when not given.
p = run(["--model", "md2", "--shape", "tiny", "--batch", "2,3", "--requests", "3", "--image-size", "100x80",
         "--warmup", "0"], cwd="/")
rows = p.stdout.splitlines()
if len(rows) != 5 or not rows[1].startswith("device: cpu") or "req/s" not in rows[2]:
    fail("table", p.stdout)
else:
    for row, b in zip(rows[3:], [2, 3]):
        cols = row.split()
        if len(cols) != 8 or int(cols[0]) != b or int(cols[1]) != 3 or float(cols[2]) <= 0:
            fail("table row", row)

bad = [
    [],
    ["--model", "md2", "--mode", "fast"],
    ["--model", "md2", "--batch", "0"],
    ["--model", "md2", "--batch", "1,,4"],
    ["--model", "md2", "--image-size", "800"],
    ["--model", "md2", "--layers", "0"],
    ["--model", "md2", "--shape", "huge"],
    ["--model", "md2", "--requests", "many"],
    ["--model", "md2", "--device", "gpu"],
    ["--model", "md2", "--precision", "f16"],
    ["--model", "md2", "--precision", "bf16"],
    ["--model", "md2", "--warmup"],
    ["--model", "md2", "--frobnicate", "1"],
    ["--model", shapes, "--layers", "2"],
    ["--model", "md2", "--shape", "tiny", "--tokenizer", "/nonexistent/tokenizer.json"],
]
for args in bad:
    p = run(args, want_rc=2)
    if not p.stderr.startswith("tycho bench: ") or len(p.stderr.strip().splitlines()) != 1:
        fail("bad args", args, "stderr:", p.stderr)
if run(["--help"]).stdout.count("--model") < 2:
    fail("--help")

print("bench: %d failures" % failures)
sys.exit(1 if failures else 0)
PY
