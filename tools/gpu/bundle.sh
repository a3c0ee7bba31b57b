#!/usr/bin/env bash
# Packs a CUDA build of tycho and the libraries the bare GPU machines lack
# into .gpu/bundle.tar.xz, for the device tool (see tools/gpu/README.md).
# usage: tools/gpu/bundle.sh [TARGET...]   (default: tycho and the GPU-run tests)
#   BUILD (default build-cuda) is configured with -DTYCHO_CUDA=ON if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build-cuda}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tycho tycho_shared test_cuda_ops test_md2_golden test_md3_golden test_engine_golden
                                    test_engine_api test_md3_region)
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTYCHO_CUDA=ON >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target "${targets[@]}" >"$build/bundle-build.log" 2>&1 ||
    { tail -30 "$build/bundle-build.log"; echo "bundle: build failed" >&2; exit 1; }

# Libraries never called by tycho (libvips's SVG, PDF, FITS, MAT, EXR, TIFF,
# JPEG 2000, FFT, colour-management, text and GIF/PNG-save dependencies):
# replaced by stand-ins that only load (tools/gpu/stub_lib.py).
stubs=" librsvg-2.so.2 libpangocairo-1.0.so.0 libpango-1.0.so.0 libcairo.so.2 libpangoft2-1.0.so.0 libfontconfig.so.1
 libcfitsio.so.10 libmatio.so.11 libOpenEXR-3_1.so.30 libopenjp2.so.7 libfftw3.so.3 libgsf-1.so.114 libtiff.so.6
 libimagequant.so.0 libcgif.so.0 liblcms2.so.2 "
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .gpu
bins=()
for t in "${targets[@]}"; do
    f=$(find "$build" -name "$t" -type f -perm -u+x | head -1)
    [ "$t" = tycho_shared ] && f=$build/lib/libtycho.so
    [ -n "$f" ] || { echo "bundle: no built $t" >&2; exit 1; }
    cp "$f" "$stage/bin/"
    bins+=("$f")
done
# The closure of needed libraries, not descending into stand-ins; kept when the
# GPU machine lacks them (tools/gpu/device_libs.txt: its ldconfig -p, 2026-11-26).
declare -A seen
queue=()
for f in "${bins[@]}"; do queue+=($(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')); done
while [ ${#queue[@]} -gt 0 ]; do
    lib=${queue[0]}
    queue=("${queue[@]:1}")
    [ -z "${seen[$lib]:-}" ] || continue
    seen[$lib]=1
    if [[ "$stubs" == *" $lib "* ]]; then
        python3 tools/gpu/stub_lib.py "/lib/x86_64-linux-gnu/$lib" "$stage/lib" >/dev/null
        continue
    fi
    grep -qx "$lib" tools/gpu/device_libs.txt && continue
    # awk reads to the end (no exit): an early exit closes the pipe, ldconfig dies of
    # SIGPIPE and pipefail made the whole script stop here without a word.
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !p {p = $NF} END {if (p) print p}')
    [ -n "$path" ] || { echo "bundle: $lib not found here" >&2; exit 1; }
    cp -L "$path" "$stage/lib/$lib"
    queue+=($(readelf -d "$path" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'))
done
tar -C "$stage" -cJf .gpu/bundle.tar.xz bin lib
echo "bundle: .gpu/bundle.tar.xz $(du -h .gpu/bundle.tar.xz | cut -f1): $(ls "$stage/bin" | tr '\n' ' ')"
echo "bundle: libraries: $(ls "$stage/lib" | tr '\n' ' ')"
