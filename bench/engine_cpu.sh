#!/usr/bin/env bash
# Continuous batching on the CPU at real Moondream 2 widths (random weights):
# N greedy captions of one 378x378 image (the first computes the image
# prefix, the others reuse it from the cache), through `tycho batch` with
# --max-batch-size 1 (one request at a time) and --max-batch-size N, in the
# same run. Reports wall time, summed decode time and decode tokens/s.
# usage: bench/engine_cpu.sh [MODEL_DIR] [N] [TOKENS]   (MODEL_DIR as bench/md2_cpu.sh makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-/tmp/tycho-md2-random}
n=${2:-8}
tokens=${3:-24}
[ -f "$model/model.safetensors" ] || { echo "no model in $model: run bench/md2_cpu.sh first" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
img=$(realpath tests/data/golden/images/b_378x378.png)
for i in $(seq 1 "$n"); do
    echo "{\"skill\": \"caption\", \"image\": \"$img\", \"settings\": {\"temperature\": 0, \"max_tokens\": $tokens}}"
done >"$dir/req.jsonl"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; model $model; $n captions x $tokens tokens"
for b in 1 "$n"; do
    start=$(date +%s.%N)
    build/bin/tycho batch --model "$model" --max-batch-size "$b" "$dir/req.jsonl" >"$dir/out.$b.jsonl"
    end=$(date +%s.%N)
    python3 - "$dir/out.$b.jsonl" "$b" "$start" "$end" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
b, wall = sys.argv[2], float(sys.argv[4]) - float(sys.argv[3])
m = [r["metrics"] for r in rows]
out = sum(x["output_tokens"] for x in m)
dec = max(x["ttft_ms"] + x["decode_time_ms"] for x in m) - min(x["ttft_ms"] for x in m[1:] or m)
print(f"max_batch_size {b:>2}: wall {wall:6.1f} s, {out} tokens, first ttft {m[0]['ttft_ms']/1e3:.1f} s, "
      f"cached tokens {sum(x['cached_tokens'] for x in m)}, "
      f"sum of per-request decode {sum(x['decode_time_ms'] for x in m)/1e3:.1f} s, "
      f"decode tokens/s (after the first prefix) {out / max(wall - m[0]['ttft_ms']/1e3, 1e-9):.2f}")
PY
done
cmp <(python3 -c "import json,sys; [print(json.loads(l)['caption']) for l in open('$dir/out.1.jsonl')]") \
    <(python3 -c "import json,sys; [print(json.loads(l)['caption']) for l in open('$dir/out.$n.jsonl')]") \
    && echo "captions identical at both batch sizes"
