#!/usr/bin/env bash
# The demo model sees: on examples/shapes.png (a blue triangle, a yellow
# circle, a yellow square and a yellow triangle, as its generator drew it) the
# caption names exactly those objects, the count of circles is 1, and detect
# and point find one box / point per triangle. (The full 300-scene accuracy
# table is tools/demo_model/evaluate.py; it takes ~20 minutes.)
set -euo pipefail
tycho=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
m=$root/models/shapes
img=$root/examples/shapes.png
cap=$("$tycho" caption --model "$m" "$img" --temperature 0)
[ "$cap" = "a blue triangle, a yellow circle, a yellow square and a yellow triangle" ] || { echo "caption: $cap"; exit 1; }
ans=$("$tycho" query --model "$m" "$img" --question "How many circles are there?" --temperature 0)
[ "$ans" = "1" ] || { echo "count: $ans"; exit 1; }
[ "$("$tycho" detect --model "$m" "$img" --object triangle | wc -l)" -eq 2 ] || { echo "detect"; exit 1; }
[ "$("$tycho" point --model "$m" "$img" --object triangle | wc -l)" -eq 2 ] || { echo "point"; exit 1; }
echo "demo model: all checks passed"
