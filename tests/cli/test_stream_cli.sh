#!/usr/bin/env bash
# Streaming: the streamed text equals the non-streamed answer (greedy and
# sampled); a seed makes sampled runs repeatable, another seed changes them.
set -euo pipefail
tycho=$1
data=$2
model=$data/golden/md2-tiny
img=$data/golden/images/b_378x378.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'], end='')"; }

for opts in "--temperature 0" "--temperature 1.0 --top-p 0.9 --seed 7"; do
    # shellcheck disable=SC2086
    "$tycho" caption --model "$model" "$img" --max-tokens 30 $opts --json | field caption >"$tmp/json"
    # shellcheck disable=SC2086
    "$tycho" caption --model "$model" "$img" --max-tokens 30 $opts --stream >"$tmp/stream"
    printf '\n' >>"$tmp/json"
    cmp "$tmp/json" "$tmp/stream" || { echo "stream differs ($opts)"; cat "$tmp/json" "$tmp/stream"; exit 1; }
    # shellcheck disable=SC2086
    "$tycho" query --model "$model" "$img" --question "What is this?" --max-tokens 30 $opts --json | field answer >"$tmp/json"
    # shellcheck disable=SC2086
    "$tycho" query --model "$model" "$img" --question "What is this?" --max-tokens 30 $opts --stream >"$tmp/stream"
    printf '\n' >>"$tmp/json"
    cmp "$tmp/json" "$tmp/stream" || { echo "query stream differs ($opts)"; exit 1; }
done
sample() { "$tycho" caption --model "$model" "$img" --max-tokens 30 --temperature 1.0 --top-p 1 --seed "$1" --json | field caption; }
[ "$(sample 11)" = "$(sample 11)" ] || { echo "same seed, different captions"; exit 1; }
[ "$(sample 11)" != "$(sample 12)" ] || { echo "seeds 11 and 12 gave the same caption"; exit 1; }
echo "stream: all checks passed"
