#!/usr/bin/env bash
# tycho's main job on a fresh Debian bookworm machine: install what is missing,
# build, and run Moondream end to end on the CPU with the project's demo model
# (models/shapes: a 6M-parameter Moondream 2 trained on synthetic coloured
# shapes; see models/shapes/MODEL_CARD.md): a caption, a query and a detect of
# examples/shapes.png, the detections drawn to out/shapes-detect.png.
# usage: ./run.sh [IMAGE] [MODEL]   (MODEL: a directory or an HF repo id in the local cache)
#        DEVICE=cuda ./run.sh ...     the same on GPU 0 (DEVICE=cuda:N: GPU N). The build
#        includes the CUDA backend wherever nvcc is found (CMake option TYCHO_CUDA).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
image=${1:-examples/shapes.png}
model=${2:-models/shapes}
device=${DEVICE:-cpu}
mkdir -p out
echo "== tycho caption --model $model $image --device $device"
build/bin/tycho caption --model "$model" "$image" --temperature 0 --device "$device"
echo "== tycho query --model $model $image --question 'How many circles are there?' --device $device"
build/bin/tycho query --model "$model" "$image" --question "How many circles are there?" --temperature 0 --device "$device"
echo "== tycho detect --model $model $image --object triangle --draw out/shapes-detect.png --device $device   (x_min y_min x_max y_max)"
build/bin/tycho detect --model "$model" "$image" --object triangle --draw out/shapes-detect.png --device "$device"
