#!/usr/bin/env bash
# Builds bench_cuda_gemm from the objects that src/backend/cuda/build_test.sh
# left in BUILD_DIR/obj (a bare GPU machine has no CMake build) and runs it.
# Usage: bench/cuda_gemm.sh BUILD_DIR [REPS]   (TYCHO_CUDA_ARCHS: default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/cuda_gemm.sh BUILD_DIR [REPS]}
arch=${TYCHO_CUDA_ARCHS:-90}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$nvcc" -O2 -std=c++17 -arch=sm_"$arch" -D_GNU_SOURCE -DTYCHO_CUDA=1 -Isrc -c bench/bench_cuda_gemm.cu \
    -o "$out/bench_cuda_gemm.o"
objs=()
for o in "$out"/obj/*.o; do [[ $o == */test_cuda_ops.c.o ]] || objs+=("$o"); done
"$nvcc" -arch=sm_"$arch" "${objs[@]}" "$out/bench_cuda_gemm.o" -o "$out/bench_cuda_gemm" -lcublasLt -lpthread -lm
"$out/bench_cuda_gemm" "${2:-200}"
