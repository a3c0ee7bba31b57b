#!/usr/bin/env bash
# `tycho inspect` against an independent Python reader: every tensor of the
# golden checkpoints with the same name, dtype, shape, first values and the sum
# of all values; a sharded copy reads the same as the single file; bad input
# fails with one line on stderr and a non-zero status.
set -euo pipefail
tycho=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
ref="python3 $here/../tools/safetensors_ref.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for m in md2-tiny md3-tiny; do
    f=$data/golden/$m/model.safetensors
    "$tycho" inspect "$f" --json --values 16 >"$tmp/$m.tycho"
    $ref dump "$f" 16 >"$tmp/$m.ref"
    python3 - "$tmp/$m.tycho" "$tmp/$m.ref" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
for x, y in zip(a, b):
    assert x == y, (x["name"], y["name"])
print("ok", len(a), "tensors")
PY
done

# Sharded: 3 shards + index, opened through the directory and through the index.
mkdir "$tmp/sharded"
$ref shard "$data/golden/md2-tiny/model.safetensors" "$tmp/sharded" 3
"$tycho" inspect "$data/golden/md2-tiny/model.safetensors" --json --values 4 >"$tmp/single"
"$tycho" inspect "$tmp/sharded" --json --values 4 >"$tmp/dir"
"$tycho" inspect "$tmp/sharded/model.safetensors.index.json" --json --values 4 >"$tmp/index"
cmp "$tmp/single" "$tmp/dir"
cmp "$tmp/single" "$tmp/index"

# Bad input: one line on stderr, exit status 1, no crash.
expect_fail() {
    local rc=0
    "$tycho" inspect "$1" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 1 ] || { echo "expected exit 1 for $1, got $rc"; cat "$tmp/err"; exit 1; }
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "expected one error line for $1"; cat "$tmp/err"; exit 1; }
    grep -q "$2" "$tmp/err" || { echo "error for $1 lacks '$2':"; cat "$tmp/err"; exit 1; }
}
: >"$tmp/empty.safetensors"
expect_fail "$tmp/empty.safetensors" "too short"
head -c 20000 "$data/golden/md2-tiny/model.safetensors" >"$tmp/trunc.safetensors"
expect_fail "$tmp/trunc.safetensors" "runs past the end"
head -c 50000 "$data/golden/md2-tiny/model.safetensors" >"$tmp/trunc2.safetensors"
expect_fail "$tmp/trunc2.safetensors" "outside the data area"
expect_fail "$tmp/missing.safetensors" "No such file\|no such file"
rm "$tmp/sharded/model-00002-of-00003.safetensors"
expect_fail "$tmp/sharded" "model-00002-of-00003"
echo "inspect: all checks passed"
