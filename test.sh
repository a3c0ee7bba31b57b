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
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== ASan + UBSan build + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTYCHO_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== arm64: NEON and portable kernels under qemu"
scripts/test-arm64.sh

echo "== fuzzing (${fuzz_seconds}s per target)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DTYCHO_FUZZ=ON -DTYCHO_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j"$jobs" >/dev/null
scripts/fuzz.sh build-fuzz/fuzz "$fuzz_seconds"
echo "== all tests passed"
