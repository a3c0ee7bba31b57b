#!/usr/bin/env bash
# Runs every fuzz target in DIR for SECONDS each, starting from the seed corpus
# tests/fuzz/corpus/<name> (and dictionary tests/fuzz/<name>.dict when present).
# New inputs go to a scratch directory, so the committed corpus stays small.
set -euo pipefail
dir=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for bin in "$dir"/fuzz_*; do
    name=$(basename "$bin")
    name=${name#fuzz_}
    mkdir -p "$scratch/$name"
    args=(-max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1)
    [ -f "$root/tests/fuzz/$name.dict" ] && args+=(-dict="$root/tests/fuzz/$name.dict")
    seeds=()
    [ -d "$root/tests/fuzz/corpus/$name" ] && seeds+=("$root/tests/fuzz/corpus/$name")
    echo "-- fuzz_$name"
    ASAN_OPTIONS=detect_leaks=1 \
        "$bin" "${args[@]}" "$scratch/$name" "${seeds[@]}" 2>"$scratch/$name.log" ||
        { tail -n 60 "$scratch/$name.log"; echo "fuzz_$name FAILED"; exit 1; }
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$scratch/$name.log" | tr "\n" " " || true
    echo
done
