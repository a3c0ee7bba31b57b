#!/usr/bin/env bash
# The whole test suite: unit, golden-parity and CLI tests (ctest) in a release
# build and again under AddressSanitizer + UndefinedBehaviorSanitizer, the CPU
# op tests built for arm64 under qemu, then every libFuzzer target for a
# bounded time. FUZZ_SECONDS sets that time.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}

echo "== golden data is byte-identical to what was copied"
(cd tests/data/golden && sha256sum --quiet -c ../golden.sha256)

echo "== release build + tests"
# With nvcc (CI has it, no GPU) the CUDA backend is built too: every kernel compiles for
# every architecture, test_cuda_ops reports "skipped" without a GPU, the rest runs on the CPU.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
echo "CUDA backend: $(sed -n 's/^TYCHO_CUDA:BOOL=//p' build/CMakeCache.txt)"
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== ASan + UBSan build + tests"
# CPU only: nvcc-compiled objects take no -fsanitize link flags (also the default there).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTYCHO_SANITIZE=ON -DTYCHO_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== arm64: NEON and portable kernels under qemu"
scripts/test-arm64.sh

echo "== fuzzing (${fuzz_seconds}s per target)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DTYCHO_FUZZ=ON -DTYCHO_SANITIZE=ON -DTYCHO_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" >/dev/null
scripts/fuzz.sh build-fuzz/fuzz "$fuzz_seconds"
echo "== all tests passed"
