#!/usr/bin/env bash
# How libtycho.so and the CLI link CUDA. off (-DTYCHO_CUDA=OFF): no CUDA library
# needed and no CUDA symbol named, so the CPU-only build runs where no CUDA was
# ever installed. on: libcudart and libcublasLt needed, and the loader finds
# them from the binaries' run path alone (no LD_LIBRARY_PATH: python's ctypes
# loads libtycho.so as is).
# Usage: test_cuda_linkage.sh LIBTYCHO_SO TYCHO_BIN on|off
set -euo pipefail
lib=$1 bin=$2 mode=$3
fail=0
for f in "$lib" "$bin"; do
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    cuda_libs=$(grep -E '^lib(cuda|cudart|cublas|cublasLt|nvrtc|nvJitLink)\.' <<<"$needed" || true)
    if [[ $mode == off ]]; then
        if [[ -n $cuda_libs ]]; then
            echo "FAIL: $f needs CUDA libraries in a CPU-only build: $cuda_libs"
            fail=1
        fi
        syms=$(nm -D "$f" | grep -E ' (cuda|cublas|__cuda)[A-Za-z_]' || true)
        if [[ -n $syms ]]; then
            echo "FAIL: $f names CUDA symbols in a CPU-only build:"
            head -5 <<<"$syms"
            fail=1
        fi
    else
        for want in libcudart libcublasLt; do
            if ! grep -q "^$want\." <<<"$cuda_libs"; then
                echo "FAIL: $f does not need $want in a CUDA build"
                fail=1
            fi
        done
        missing=$(env -u LD_LIBRARY_PATH ldd "$f" | grep 'not found' || true)
        if [[ -n $missing ]]; then
            echo "FAIL: the loader cannot find libraries of $f:"
            echo "$missing"
            fail=1
        fi
    fi
done
[[ $fail == 0 ]] && echo "cuda linkage ($mode): ok"
exit $fail
