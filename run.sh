#!/usr/bin/env bash
# tycho's main job on a fresh Debian bookworm machine: install what is missing,
# build, and run Moondream end to end on the CPU — the preprocessing of an
# example image, then a caption of it. Until the project's demo model lands the
# model is the tiny random-weight Moondream 2 of the golden tests, so the
# caption is the reference's exact output for those weights, not sense.
# usage: ./run.sh [IMAGE] [MODEL]   (MODEL: a directory or an HF repo id in the local cache)
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
image=${1:-examples/photo.png}
model=${2:-tests/data/golden/md2-tiny}
echo "== tycho preprocess $image --out out/preprocess"
build/bin/tycho preprocess "$image" --out out/preprocess
echo "== tycho caption --model $model $image --temperature 0 --max-tokens 24 --json"
build/bin/tycho caption --model "$model" "$image" --temperature 0 --max-tokens 24 --json
