#!/usr/bin/env bash
# End-to-end Moondream 2 at real widths on the CPU with random weights:
# a caption of a 378x378 image (2 crops) and of a 640x480 image (9 crops),
# 20 greedy tokens, reporting tycho's own metrics and the peak RSS.
# usage: bench/md2_cpu.sh [MODEL_DIR]   (the random model is made there if missing, ~3.9 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/tycho-md2-random}
if [ ! -f "$dir/model.safetensors" ]; then
    mkdir -p "$dir"
    cat >"$dir/base.json" <<'JSON'
{"model_type": "moondream1", "config": {
 "text": {"dim": 2048, "ff_dim": 8192, "n_layers": 24, "vocab_size": 51200, "max_context": 2048, "n_heads": 32, "n_kv_heads": 32},
 "vision": {"enc_dim": 1152, "enc_n_layers": 27, "enc_ff_dim": 4304, "enc_n_heads": 16, "proj_out_dim": 2048, "proj_inner_dim": 8192},
 "region": {"dim": 2048, "inner_dim": 8192}}}
JSON
    python3 tests/tools/safetensors_ref.py random "$dir/base.json" "$dir"
    cp tests/data/golden/md2-tiny/tokenizer.json "$dir/"
fi
for img in tests/data/golden/images/b_378x378.png tests/data/golden/images/a_640x480.png; do
    /usr/bin/time -f "peak_rss_kb=%M wall_s=%e" build/bin/tycho caption --model "$dir" "$img" \
        --max-tokens 20 --temperature 0 --json 2>&1 | sed "s|^|$(basename "$img"): |"
done
