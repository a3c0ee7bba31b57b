#!/usr/bin/env bash
# Builds tests/unit/test_cuda_ops from the backend sources alone (no libvips,
# cJSON, xxhash or libmicrohttpd: what a bare GPU machine lacks) and runs it.
# Usage: src/backend/cuda/build_test.sh [OUT_DIR]   (TYCHO_CUDA_ARCHS: default 90)
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-build-cuda-min}
arch=${TYCHO_CUDA_ARCHS:-90}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p "$out/obj"
cflags=(-O2 -std=c11 -D_GNU_SOURCE -DTYCHO_CUDA=1 -Wall -Wextra -Wno-unused-parameter -Isrc -Itests
        -I"$(dirname "$nvcc")/../include" -DTYCHO_TEST_DATA='"unused"')
pids=()
for f in src/backend/cuda/*.cu; do
    "$nvcc" -O2 -std=c++17 -arch=sm_"$arch" -D_GNU_SOURCE -DTYCHO_CUDA=1 -Isrc \
        -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter -c "$f" -o "$out/obj/$(basename "$f").o" &
    pids+=($!)
done
for f in src/backend/cpu/*.c src/core/pool.c src/core/err.c src/core/dtype.c tests/unit/test_cuda_ops.c; do
    gcc "${cflags[@]}" -c "$f" -o "$out/obj/$(basename "$f").o" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$nvcc" -arch=sm_"$arch" "$out"/obj/*.o -o "$out/test_cuda_ops" -lcublasLt -lpthread -lm
"$out/test_cuda_ops"
