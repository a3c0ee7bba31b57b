#!/usr/bin/env bash
# Moondream 3 checkpoints in every form the loader accepts give the same
# outputs: HF names split into shards with an index (and found as the HF repo
# id moondream/moondream3-preview in a local HF cache), the legacy/Kestrel
# names of moondream.md §3.4 with tau_wq/tau_wv or fused tau_wqwv, and a
# config.json without model_type or MoE shape (detected from the tensors).
# Other widths, expert counts, top-k and MoE start layers run without code
# changes, with either region head; broken checkpoints are refused clearly.
set -euo pipefail
tycho=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
ref="python3 $here/../tools/safetensors_ref.py"
model=$(cd "$data/golden/md3-tiny" && pwd)
img=$data/golden/images/c_96x64.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

strip() { python3 -c "import json,sys; r=json.load(sys.stdin); r.pop('metrics'); print(json.dumps(r))"; }
run() {  # run MODEL -> query answer JSON without metrics
    "$tycho" query --model "$1" "$img" --question "What is in this image?" --temperature 0 --max-tokens 12 --json | strip
}
expect_fail() {  # expect_fail NEEDLE tycho-args...
    local needle=$1 rc=0
    shift
    "$tycho" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then echo "expected a clean failure from: $*  (exit $rc)"; cat "$tmp/err"; exit 1; fi
    if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then echo "expected one error line from: $*"; cat "$tmp/err"; exit 1; fi
    grep -q -- "$needle" "$tmp/err" || { echo "error of '$*' lacks '$needle':"; cat "$tmp/err"; exit 1; }
}
edit_config() {  # edit_config FILE PYTHON-STATEMENTS (on c = the "config" object, full = the file)
    python3 - "$1" "$2" <<'PY'
import json, sys
full = json.load(open(sys.argv[1])); c = full["config"]
exec(sys.argv[2])
json.dump(full, open(sys.argv[1], "w"))
PY
}

run "$model" >"$tmp/want"
grep -q '"answer": " beg beg' "$tmp/want" || { echo "unexpected reference answer"; cat "$tmp/want"; exit 1; }

mkdir "$tmp/sharded" "$tmp/legacy" "$tmp/fused" "$tmp/detected"
for d in sharded legacy fused detected; do cp "$model/tokenizer.json" "$model/config.json" "$tmp/$d/"; done
$ref shard "$model/model.safetensors" "$tmp/sharded" 3
$ref legacy "$model/model.safetensors" "$tmp/legacy/model.safetensors"
$ref legacy "$model/model.safetensors" "$tmp/fused/model.safetensors" --fused-tau
"$tycho" inspect "$tmp/legacy" >"$tmp/legacy.txt" 2>/dev/null
for name in transformer.h.1.tau_wq transformer.h.1.tau_alpha transformer.h.2.gate.weight \
    transformer.h.2.mlp.experts.weight transformer.h.3.mlp.output_experts.weight transformer.h.0.mlp.fc1.weight; do
    grep -q "$name" "$tmp/legacy.txt" || { echo "legacy checkpoint lacks $name"; exit 1; }
done
"$tycho" inspect "$tmp/fused" >"$tmp/fused.txt" 2>/dev/null
grep -q "transformer.h.3.tau_wqwv" "$tmp/fused.txt" && ! grep -q "tau_wq " "$tmp/fused.txt"
# No model_type, no MoE shape but top-k: tau and MoE (start, experts, width) come from the tensors.
ln -sf "$model/model.safetensors" "$tmp/detected/model.safetensors"
edit_config "$tmp/detected/config.json" 'full.pop("model_type"); c.pop("rope_theta"); c["text"]["moe"] = {"experts_per_token": 3}'
for d in sharded legacy fused detected; do
    run "$tmp/$d" >"$tmp/got"
    cmp "$tmp/want" "$tmp/got" || { echo "$d differs:"; diff "$tmp/want" "$tmp/got"; exit 1; }
done

# The HF repo id in a local HF cache: shards + index, tokenizer from moondream/starmie-v1.
hub=$tmp/hf/hub
snap=$hub/models--moondream--moondream3-preview/snapshots/b976bef
tsnap=$hub/models--moondream--starmie-v1/snapshots/4567def
mkdir -p "$snap" "$tsnap"
cp "$tmp/sharded/"model-* "$tmp/sharded/model.safetensors.index.json" "$model/config.json" "$snap/"
cp "$model/tokenizer.json" "$tsnap/"
HF_HOME=$tmp/hf run moondream/moondream3-preview >"$tmp/got"
cmp "$tmp/want" "$tmp/got" || { echo "HF cache layout differs"; exit 1; }

# Other widths, expert counts, top-k and MoE start; random checkpoints (sharded), every region head.
for head in md3 md3-noln md2; do
    mkdir "$tmp/other-$head"
    cp "$model/tokenizer.json" "$tmp/other-$head/"
    $ref random "$model/config.json" "$tmp/other-$head" text.dim=96 text.n_heads=3 text.n_kv_heads=3 text.n_layers=3 \
        text.ff_dim=160 text.moe.num_experts=5 text.moe.experts_per_token=2 text.moe.start_layer=1 \
        text.moe.expert_inner_dim=48 vision.enc_dim=48 vision.enc_n_heads=3 vision.enc_n_layers=2 \
        vision.enc_ff_dim=80 vision.proj_out_dim=96 vision.proj_inner_dim=112 region.dim=96 region.inner_dim=64 \
        region_head=$head shards=2
    d=$tmp/other-$head
    "$tycho" caption --model "$d" "$img" --max-tokens 5 --temperature 0 --json >"$tmp/out"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['finish_reason'] in ('stop','length'), r" "$tmp/out"
    "$tycho" query --model "$d" "$img" --question hi --reasoning --max-tokens 5 --temperature 0 --json >"$tmp/out"
    "$tycho" query --model "$d" "$img" --question hi --spatial-ref 0.2,0.3 --max-tokens 5 --json >"$tmp/out"
    "$tycho" detect --model "$d" "$img" --object thing --max-objects 2 --json >"$tmp/out"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert len(r['objects']) <= 2, r" "$tmp/out"
    "$tycho" point --model "$d" "$img" --object thing --max-objects 2 --json >"$tmp/out"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert len(r['points']) <= 2, r" "$tmp/out"
done
# MoE from layer 0, one expert per token, text-only query.
mkdir "$tmp/all-moe"
cp "$model/tokenizer.json" "$tmp/all-moe/"
$ref random "$model/config.json" "$tmp/all-moe" text.n_layers=2 text.moe.num_experts=3 text.moe.experts_per_token=1 \
    text.moe.start_layer=0 text.moe.expert_inner_dim=32 vision.enc_n_layers=1
"$tycho" query --model "$tmp/all-moe" --question hi --max-tokens 4 --temperature 0 --json >"$tmp/out"

# Context: 4096 positions by default for Moondream 3; config.json may raise it (32K on the model card).
mkdir "$tmp/long"
cp "$model/tokenizer.json" "$model/config.json" "$tmp/long/"
ln -s "$model/model.safetensors" "$tmp/long/model.safetensors"
python3 -c "print('word ' * 4500)" >"$tmp/long.txt"
edit_config "$tmp/long/config.json" 'c["text"].pop("max_context")'
expect_fail "does not fit the context of 4096 positions" query --model "$tmp/long" --question "$(cat "$tmp/long.txt")"
edit_config "$tmp/long/config.json" 'c["text"]["max_context"] = 32768'
"$tycho" query --model "$tmp/long" --question "$(cat "$tmp/long.txt")" --max-tokens 3 --temperature 0 --json >"$tmp/out"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['metrics']['input_tokens'] > 4096, r" "$tmp/out"

# Refused: skills that need the region head md3-tiny lacks.
expect_fail "no region head: detect needs one" detect --model "$model" "$img" --object x
expect_fail "no region head: spatial_refs needs one" query --model "$model" "$img" --question hi --spatial-ref 0.1,0.2

# Refused checkpoints, each with a message naming what is wrong.
mkdir "$tmp/bad"
cp "$model/tokenizer.json" "$model/config.json" "$tmp/bad/"
$ref reshape "$model/model.safetensors" "$tmp/bad/model.safetensors" model.text.blocks.3.mlp.fc2.weight 8,128,32
expect_fail "tensor 'model.text.blocks.3.mlp.fc2.weight' has shape \[8, 128, 32\], the config needs \[8, 128, 64\]" \
    query --model "$tmp/bad" "$img" --question hi
$ref reshape "$model/model.safetensors" "$tmp/bad/model.safetensors" model.text.blocks.2.mlp.fc1.weight 7,128,128
expect_fail "tensor 'model.text.blocks.2.mlp.fc1.weight' has shape \[7, 128, 128\], the config needs \[8, 128, 128\]" \
    query --model "$tmp/bad" "$img" --question hi
$ref drop "$model/model.safetensors" "$tmp/bad/model.safetensors" model.text.blocks.3.mlp.router.weight
expect_fail "missing MoE router 'text.blocks.3.mlp.router.weight' (MoE starts at layer 2)" \
    query --model "$tmp/bad" "$img" --question hi
$ref drop "$model/model.safetensors" "$tmp/bad/model.safetensors" model.text.blocks.2.mlp.router.weight
expect_fail "missing MoE router 'text.blocks.2.mlp.router.weight'" query --model "$tmp/bad" "$img" --question hi
$ref drop "$model/model.safetensors" "$tmp/bad/model.safetensors" model.text.blocks.1.attn.tau.alpha
expect_fail "missing tensor 'text.blocks.1.attn.tau.alpha'" query --model "$tmp/bad" "$img" --question hi
ln -sf "$model/model.safetensors" "$tmp/bad/model.safetensors"
edit_config "$tmp/bad/config.json" 'c["text"]["moe"]["experts_per_token"] = 9'
expect_fail "experts_per_token 9 > num_experts 8" query --model "$tmp/bad" "$img" --question hi
edit_config "$tmp/bad/config.json" 'c["text"]["moe"] = {"experts_per_token": 9}'
expect_fail "experts_per_token 9 is larger than the 8 experts" query --model "$tmp/bad" "$img" --question hi
edit_config "$tmp/bad/config.json" 'c["text"]["moe"] = {"start_layer": 1}'
expect_fail "missing MoE router 'text.blocks.1.mlp.router.weight' (MoE starts at layer 1)" \
    query --model "$tmp/bad" "$img" --question hi
edit_config "$tmp/bad/config.json" 'c["text"]["moe"] = {"start_layer": 3}'
expect_fail "layer 2 has a MoE router but MoE starts at layer 3" query --model "$tmp/bad" "$img" --question hi
# A dense (Moondream 2) checkpoint under a config that asks for MoE.
md2=$(cd "$data/golden/md2-tiny" && pwd)
cp "$md2/config.json" "$tmp/bad/config.json"
ln -sf "$md2/model.safetensors" "$tmp/bad/model.safetensors"
edit_config "$tmp/bad/config.json" 'c["text"]["moe"] = {"num_experts": 4}'
expect_fail "no layer has a MoE router" caption --model "$tmp/bad" "$img"
echo "md3 formats: all checks passed"
