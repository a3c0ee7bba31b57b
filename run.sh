#!/usr/bin/env bash
# tycho's main job on a fresh Debian bookworm machine: install what is missing,
# build, and show what tycho does today — the Moondream preprocessing of an
# example image (tiling, global crop, resized image for the local crops).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
image=${1:-examples/photo.png}
echo "== tycho preprocess $image --out out/preprocess"
build/bin/tycho preprocess "$image" --out out/preprocess
echo "== wrote out/preprocess/global.png (crop 0, 378x378) and out/preprocess/resized.png (the local crops' source)"
echo "== tycho tokenize (the Moondream tiny-model tokenizer)"
echo '{"text": "What is in this image?"}' |
    build/bin/tycho tokenize --tokenizer tests/data/golden/md2-tiny/tokenizer.json
