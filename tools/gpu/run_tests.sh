#!/usr/bin/env bash
# On a GPU machine (the device tool): unpacks .gpu/bundle.tar.xz (made here by
# tools/gpu/bundle.sh) and runs the CUDA op test, the golden md2-tiny / md3-tiny
# tests and the engine golden test on the GPU, the demo model through the CLI on
# the GPU against the CPU, and tycho serve --device cuda answering over HTTP
# what the CLI answers. Logs go to $OUT (or /tmp/gpu-out).
# usage (device tool): tools/gpu/run_tests.sh [SECTION...]  (ops golden engine cli serve; default all)
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out" /tmp/gpu
tar -C /tmp/gpu -xJf .gpu/bundle.tar.xz
export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# The tests were built with TEST_DATA under /work/main/tests/data.
[ -e /work/main/tests/data ] || { mkdir -p /work && ln -sfn "$root" /work/main; }
bin=/tmp/gpu/bin
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(ops golden engine cli serve)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
failures=0
step() {  # step NAME CMD...: runs it, logs to $out/NAME.log, reports pass/fail with the time
    local name=$1 t0=$SECONDS
    shift
    if "$@" >"$out/$name.log" 2>&1; then echo "PASS $name ($((SECONDS - t0)) s)"; else
        echo "FAIL $name ($((SECONDS - t0)) s)"; tail -20 "$out/$name.log"; failures=$((failures + 1)); fi
}
for s in "${sections[@]}"; do
    case $s in
    ops) step cuda_ops "$bin/test_cuda_ops" ;;
    golden)
        step md2_golden env TYCHO_TEST_DEVICE=cuda "$bin/test_md2_golden"
        step md3_golden env TYCHO_TEST_DEVICE=cuda "$bin/test_md3_golden"
        grep -h "excused\|MISMATCH\|cases identical" "$out"/md?_golden.log ;;
    engine) step engine_golden env TYCHO_TEST_DEVICE=cuda "$bin/test_engine_golden"
        grep -h "excused\|batch" "$out/engine_golden.log" ;;
    cli)
        for d in cpu cuda; do
            "$bin/tycho" caption --device $d --model models/shapes examples/shapes.png >"$out/caption_$d.txt" 2>&1
            "$bin/tycho" detect --device $d --model models/shapes examples/shapes.png --object triangle --json \
                >"$out/detect_$d.txt" 2>&1
        done
        step cli_same cmp "$out/caption_cpu.txt" "$out/caption_cuda.txt"
        step cli_detect_same python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(a["objects"] != b["objects"])' "$out/detect_cpu.txt" "$out/detect_cuda.txt"
        cat "$out/caption_cuda.txt" "$out/detect_cuda.txt" ;;
    serve)
        "$bin/tycho" serve --device cuda --model models/shapes --port 18123 >"$out/serve.log" 2>&1 &
        srv=$!
        for _ in $(seq 100); do curl -sf localhost:18123/health >/dev/null && break; sleep 0.2; done
        img=$(base64 -w0 examples/shapes.png)
        printf '{"image_url": "data:image/png;base64,%s"}' "$img" >/tmp/req_caption.json
        printf '{"image_url": "data:image/png;base64,%s", "question": "How many circles are there?"}' "$img" \
            >/tmp/req_query.json
        curl -s localhost:18123/v1/caption -d @/tmp/req_caption.json >"$out/serve_caption.json"
        curl -s localhost:18123/v1/query -d @/tmp/req_query.json >"$out/serve_query.json"
        "$bin/tycho" query --device cuda --model models/shapes examples/shapes.png --question "How many circles are there?" \
            >"$out/query_cuda.txt" 2>&1
        python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
cap = json.load(open(out + "/serve_caption.json"))["caption"]
ans = json.load(open(out + "/serve_query.json"))["answer"]
want_cap = open(out + "/caption_cuda.txt").read().strip()
want_ans = open(out + "/query_cuda.txt").read().strip()
print("serve caption:", repr(cap), "cli:", repr(want_cap))
print("serve answer:", repr(ans), "cli:", repr(want_ans))
sys.exit(0 if cap == want_cap and ans == want_ans else 1)
PY
        [ $? -eq 0 ] && echo "PASS serve_same_as_cli" || { echo "FAIL serve_same_as_cli"; failures=$((failures + 1)); }
        curl -s localhost:18123/metrics | grep -E "^tycho_(requests|prefix)" | head -5
        kill -TERM $srv; wait $srv; echo "serve exit $?" ;;
    esac
done
echo "gpu tests: $failures failed"
exit $((failures > 0))
