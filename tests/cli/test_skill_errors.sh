#!/usr/bin/env bash
# Wrong inputs to the skill commands fail cleanly: one line on stderr, a
# non-zero exit status, nothing on stdout, no crash (the sanitizer build runs
# this too). Also: a model with other widths, heads and layers than the golden
# one loads and runs without code changes.
set -euo pipefail
tycho=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
gold=$data/golden
model=$gold/md2-tiny
img=$gold/images/b_378x378.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect_fail() {  # expect_fail NEEDLE tycho-args...
    local needle=$1 rc=0
    shift
    "$tycho" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then echo "expected a clean failure from: $*  (exit $rc)"; cat "$tmp/err"; exit 1; fi
    if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then echo "expected one error line from: $*"; cat "$tmp/err"; exit 1; fi
    if [ -s "$tmp/out" ]; then echo "expected no output from: $*"; cat "$tmp/out"; exit 1; fi
    grep -qi -- "$needle" "$tmp/err" || { echo "error of '$*' lacks '$needle':"; cat "$tmp/err"; exit 1; }
}

# Bad options and values.
expect_fail "max_tokens" caption --model "$model" "$img" --max-tokens 0
expect_fail "top_p" query --model "$model" "$img" --question hi --top-p 2
expect_fail "temperature" query --model "$model" "$img" --question hi --temperature -1
expect_fail "invalid value" caption --model "$model" "$img" --length huge
expect_fail "max_objects" detect --model "$model" "$img" --object x --max-objects 0
expect_fail "question" query --model "$model" "$img" --question "   "
expect_fail "object" point --model "$model" "$img" --object ""
expect_fail "--model" caption "$img"
expect_fail "IMAGE" detect --model "$model" --object x
expect_fail "unknown option" caption --model "$model" "$img" --bogus 1
expect_fail "spatial" query --model "$model" --question hi --spatial-ref 0.5,0.5
expect_fail "\[0, 1\]" query --model "$model" "$img" --question hi --spatial-ref 1.5,0.5
expect_fail "x_min <= x_max" query --model "$model" "$img" --question hi --spatial-ref 0.6,0.1,0.2,0.4
expect_fail "invalid value" query --model "$model" "$img" --question hi --spatial-ref 0.1,0.2,0.3

# Inputs that cannot be served.
head -c 3000 "$img" >"$tmp/trunc.png"
expect_fail "truncated or corrupt" caption --model "$model" "$tmp/trunc.png"
printf 'not an image' >"$tmp/text.png"
expect_fail "not a supported image format" caption --model "$model" "$tmp/text.png"
expect_fail "no such" caption --model "$model" "$tmp/missing.png"
expect_fail "model" caption --model "$tmp/nomodel" "$img"
python3 -c "print('word ' * 3000)" >"$tmp/long.txt"
expect_fail "does not fit the context" query --model "$model" --question "$(cat "$tmp/long.txt")"

# Broken checkpoints: a missing tensor, a shape the config disagrees with.
ref="python3 $here/../tools/safetensors_ref.py"
mkdir "$tmp/missing" "$tmp/shape"
for d in missing shape; do cp "$model/tokenizer.json" "$model/config.json" "$tmp/$d/"; done
$ref drop "$model/model.safetensors" "$tmp/missing/model.safetensors" model.text.blocks.1.attn.qkv.bias
expect_fail "missing tensor 'text.blocks.1.attn.qkv.bias'" caption --model "$tmp/missing" "$img"
cp "$model/model.safetensors" "$tmp/shape/"
python3 - "$tmp/shape/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["config"]["text"]["ff_dim"] = 512
json.dump(c, open(sys.argv[1], "w"))
PY
expect_fail "has shape \[256, 128\], the config needs \[512, 128\]" caption --model "$tmp/shape" "$img"

# Other widths, heads and layers: a random model built from a changed config runs.
mkdir "$tmp/other"
cp "$model/tokenizer.json" "$tmp/other/"
$ref random "$model/config.json" "$tmp/other" text.dim=96 text.n_heads=3 text.n_kv_heads=3 text.n_layers=2 text.ff_dim=160 \
    vision.enc_dim=48 vision.enc_n_heads=3 vision.enc_n_layers=3 vision.enc_ff_dim=80 vision.proj_out_dim=96 \
    vision.proj_inner_dim=112 region.dim=96 region.inner_dim=64
"$tycho" caption --model "$tmp/other" "$img" --max-tokens 5 --temperature 0 --json >"$tmp/out"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['finish_reason'] in ('stop','length'), r" "$tmp/out"
"$tycho" detect --model "$tmp/other" "$img" --object thing --max-objects 2 --json >"$tmp/out"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert len(r['objects']) <= 2, r" "$tmp/out"

# --draw writes a PNG tycho can read back (and only detect/point take it).
"$tycho" detect --model "$model" "$img" --object x --max-objects 2 --draw "$tmp/boxes.png" >/dev/null
"$tycho" point --model "$model" "$img" --object x --max-objects 2 --draw "$tmp/points.png" >/dev/null
"$tycho" preprocess "$tmp/boxes.png" --out "$tmp/pp" >/dev/null
"$tycho" preprocess "$tmp/points.png" --out "$tmp/pp" >/dev/null
expect_fail "unknown option --draw" caption --model "$model" "$img" --draw "$tmp/x.png"
expect_fail "cannot write" detect --model "$model" "$img" --object x --draw /nonexistent/dir/x.png
echo "skill errors and --draw: all checks passed"
