#!/usr/bin/env bash
# The CPU backend's op tests built for arm64 (NEON kernels and the portable
# ones) and run under qemu-user: the kernels CI's x86 machines cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -static \
    -Isrc -Itests -DTYCHO_TEST_DATA='"unused"' \
    src/backend/cpu/*.c src/core/pool.c src/core/err.c src/core/dtype.c tests/unit/test_cpu_ops.c \
    -o "$out/test_cpu_ops" -lm -lpthread
qemu-aarch64 "$out/test_cpu_ops"
