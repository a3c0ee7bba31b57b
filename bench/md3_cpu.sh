#!/usr/bin/env bash
# Moondream 3 at real widths on the CPU with random weights, at the model
# layer as the engine runs one request (build/bench/bench_md3): a greedy
# caption of a 378x378 image (1x1 tiling, 2 crops) and of a 640x480 image
# (2x4, 9 crops), 20 tokens: vision, prefill and decode times, decode against
# the bandwidth floor of the bytes a token reads (only the chosen experts'
# count), peak RSS with every weight page resident (as a trained model's
# prefill makes it); then the same caption through the CLI (engine path).
# usage: bench/md3_cpu.sh [MODEL_DIR] [LAYERS] [THREADS]
#   The random checkpoint is made in MODEL_DIR if missing: the real shape
#   table (moondream.md §2.2, §3.3: 9.27 B parameters, 18.5 GB bf16) with
#   LAYERS text layers (default 24; MoE from layer 4), one file, HF names.
#   Check `df -h` and `free -g` first: the file must fit the disk, and for
#   honest numbers the page cache must hold it beside ~1 GB of working memory.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${2:-24}
dir=${1:-/tmp/tycho-md3-random-$layers}
threads=${3:-}
bench=${BENCH_MD3:-build/bench/bench_md3}
tycho=${TYCHO:-build/bin/tycho}
if [ ! -f "$dir/model.safetensors" ]; then
    mkdir -p "$dir"
    cat >"$dir/base.json" <<JSON
{"model_type": "moondream3", "config": {
 "text": {"dim": 2048, "ff_dim": 8192, "n_layers": $layers, "vocab_size": 51200, "max_context": 2048, "n_heads": 32,
          "n_kv_heads": 32, "moe": {"num_experts": 64, "start_layer": 4, "experts_per_token": 8, "expert_inner_dim": 1024}},
 "vision": {"enc_dim": 1152, "enc_n_layers": 27, "enc_ff_dim": 4304, "enc_n_heads": 16, "proj_out_dim": 2048,
            "proj_inner_dim": 8192},
 "region": {"dim": 2048, "coord_out_dim": 1024, "size_out_dim": 2048}}}
JSON
    python3 tests/tools/safetensors_ref.py random "$dir/base.json" "$dir"
    cp tests/data/golden/md2-tiny/tokenizer.json "$dir/"
fi
ls -l "$dir/model.safetensors"
for tiling in 1x1 2x4; do
    echo "== $tiling"
    "$bench" "$dir" $tiling 20 "${threads:-0}" touch
done
echo "== CLI: tycho caption (engine path), 378x378"
/usr/bin/time -f "peak RSS %M kB, wall %e s" "$tycho" caption --model "$dir" tests/data/golden/images/b_378x378.png \
    --max-tokens 20 --temperature 0 --json ${threads:+--threads $threads}
