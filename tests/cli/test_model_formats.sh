#!/usr/bin/env bash
# The same model in every form the loader accepts gives the same outputs:
# HF names in one file, the same split into shards with an index, legacy
# training-checkpoint names (with "._orig_mod" and transposed feature tables),
# config.json bare instead of under "config", and a Hugging Face repo id
# resolved in a local HF cache (tokenizer from moondream/starmie-v1).
set -euo pipefail
tycho=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
ref="python3 $here/../tools/safetensors_ref.py"
model=$data/golden/md2-tiny
img=$data/golden/images/c_96x64.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() {  # run DIR -> caption and detect JSON without metrics
    "$tycho" caption --model "$1" "$img" --temperature 0 --max-tokens 12 --json | python3 -c "import json,sys; r=json.load(sys.stdin); r.pop('metrics'); print(json.dumps(r))"
    "$tycho" detect --model "$1" "$img" --object line --max-objects 3 --json | python3 -c "import json,sys; r=json.load(sys.stdin); r.pop('metrics'); print(json.dumps(r))"
}
run "$model" >"$tmp/want"
grep -q '"objects": \[{' "$tmp/want" || { echo "reference run found no objects"; cat "$tmp/want"; exit 1; }

mkdir "$tmp/sharded" "$tmp/legacy" "$tmp/bare"
for d in sharded legacy bare; do cp "$model/tokenizer.json" "$tmp/$d/"; done
cp "$model/config.json" "$tmp/sharded/"
cp "$model/config.json" "$tmp/legacy/"
$ref shard "$model/model.safetensors" "$tmp/sharded" 3
$ref legacy "$model/model.safetensors" "$tmp/legacy/model.safetensors"
# (to a file first: grep -q in a pipe would end tycho with SIGPIPE under pipefail)
"$tycho" inspect "$tmp/legacy" >"$tmp/legacy.txt" 2>/dev/null
grep -q "text_model._orig_mod.transformer.h.0.mixer.Wqkv.weight" "$tmp/legacy.txt"
ln -s "$model/model.safetensors" "$tmp/bare/model.safetensors"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); json.dump(c['config'], open(sys.argv[2],'w'))" \
    "$model/config.json" "$tmp/bare/config.json"
for d in sharded legacy bare; do
    run "$tmp/$d" >"$tmp/got"
    cmp "$tmp/want" "$tmp/got" || { echo "$d differs:"; diff "$tmp/want" "$tmp/got"; exit 1; }
done

# A local HF cache: refs/main names the snapshot; the tokenizer comes from starmie-v1.
hub=$tmp/hf/hub
snap=$hub/models--vikhyatk--moondream2/snapshots/0123abc
tsnap=$hub/models--moondream--starmie-v1/snapshots/4567def
mkdir -p "$snap" "$tsnap" "$hub/models--vikhyatk--moondream2/refs"
ln -s "$model/model.safetensors" "$snap/model.safetensors"
cp "$model/config.json" "$snap/"
echo "not the tokenizer to use" >"$snap/tokenizer.json"
cp "$model/tokenizer.json" "$tsnap/"
printf 0123abc >"$hub/models--vikhyatk--moondream2/refs/main"
for id in vikhyatk/moondream2 vikhyatk/moondream2@0123abc; do
    HF_HOME=$tmp/hf run "$id" >"$tmp/got"
    cmp "$tmp/want" "$tmp/got" || { echo "$id differs"; exit 1; }
done
rc=0
HF_HOME=$tmp/hf "$tycho" caption --model vikhyatk/moondream2@nope "$img" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "revision 'nope'" "$tmp/err" || { echo "bad revision: rc=$rc"; cat "$tmp/err"; exit 1; }
rc=0
HF_HOME=$tmp/hf "$tycho" caption --model someone/else "$img" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "Hugging Face cache" "$tmp/err" || { echo "unknown repo: rc=$rc"; cat "$tmp/err"; exit 1; }
echo "model formats: all checks passed"
