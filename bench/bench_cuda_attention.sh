#!/usr/bin/env bash
# Builds and runs bench/bench_cuda_attention.cu against the objects that
# src/backend/cuda/build_test.sh left in OUT_DIR (run that first: it builds the
# backend from its sources alone, as a bare GPU machine needs).
# Usage: bench/bench_cuda_attention.sh [OUT_DIR]   (default build-cuda-min)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-cuda-min}
arch=${TYCHO_CUDA_ARCHS:-90}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$nvcc" -O2 -std=c++17 -arch=sm_"$arch" -D_GNU_SOURCE -DTYCHO_CUDA=1 -Isrc -c bench/bench_cuda_attention.cu \
    -o "$out/bench_cuda_attention.o"
objs=()
for o in "$out"/obj/*.o; do [[ $(basename "$o") == test_* ]] || objs+=("$o"); done
"$nvcc" -arch=sm_"$arch" "$out/bench_cuda_attention.o" "${objs[@]}" -o "$out/bench_cuda_attention" -lcublasLt -lpthread -lm
"$out/bench_cuda_attention"
