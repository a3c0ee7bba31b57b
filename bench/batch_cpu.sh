#!/usr/bin/env bash
# Throughput of `tycho batch` against the same requests one by one, with the
# tiny golden model (tests/data/golden/md2-tiny) on the CPU.
#
# 16 generated images (1x1 tiling, 2 crops each), 64 requests: for each image
# a short caption, a query, a detect and a point (greedy, 20 tokens, 4
# objects), ordered skill by skill so the 4 requests of an image are 16 lines
# apart. Timed, median of RUNS (default 3), all in the same run:
#   batch          tycho batch (defaults: max batch 16, prefix cache on)
#   batch-serial   tycho batch --max-batch-size 1 --no-prefix-cache (in-process, one at a time)
#   cli            64 separate `tycho <skill>` invocations (each loads the model)
# The answers of batch are checked against batch-serial (must be equal).
# usage: bench/batch_cpu.sh [TYCHO] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
tycho=$(realpath "${1:-build/bin/tycho}")
runs=${2:-3}
threads=${THREADS:-$(nproc)}
model=$(realpath tests/data/golden/md2-tiny)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 - "$dir" <<'PY'
# 16 distinct RGB PNGs (stdlib only: zlib + struct) and the 64-request JSONL.
import json, random, struct, sys, zlib
d = sys.argv[1]
def png(path, w, h, px):
    raw = b"".join(b"\0" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
sizes = [(378, 378), (320, 240), (256, 256), (300, 200), (200, 300), (378, 250), (240, 320), (128, 96)]
for i in range(16):
    rnd = random.Random(i)
    w, h = sizes[i % len(sizes)]
    bg = [rnd.randrange(256) for _ in range(3)]
    px = bytearray()
    shapes = [(rnd.randrange(w), rnd.randrange(h), rnd.randrange(10, 80), [rnd.randrange(256) for _ in range(3)])
              for _ in range(4)]
    for y in range(h):
        for x in range(w):
            c = [(bg[k] + (x * (k + 1) + y * (3 - k)) // 4) % 256 for k in range(3)]
            for cx, cy, r, col in shapes:
                if (x - cx) ** 2 + (y - cy) ** 2 < r * r:
                    c = col
            px += bytes(c)
    png(f"{d}/img{i:02d}.png", w, h, px)
S = {"max_tokens": 20, "temperature": 0}
D = {"max_objects": 4}
reqs = []
for skill, f in [("caption", {"length": "short", "settings": S}),
                 ("query", {"question": "What is in this image?", "settings": S}),
                 ("detect", {"object": "circle", "settings": D}),
                 ("point", {"object": "circle", "settings": D})]:
    for i in range(16):
        reqs.append(dict(f, skill=skill, image=f"img{i:02d}.png"))
with open(f"{d}/requests.jsonl", "w") as out:
    for r in reqs:
        out.write(json.dumps(r) + "\n")
# The same requests as CLI argument lists, one per line.
with open(f"{d}/cli.txt", "w") as out:
    for r in reqs:
        a = [r["skill"], f"{d}/{r['image']}", "--json", "--temperature", "0"]
        s = r["settings"]
        if "max_tokens" in s: a += ["--max-tokens", str(s["max_tokens"])]
        if "max_objects" in s: a += ["--max-objects", str(s["max_objects"])]
        if "length" in r: a += ["--length", r["length"]]
        if "question" in r: a += ["--question", r["question"]]
        if "object" in r: a += ["--object", r["object"]]
        out.write("\t".join(a) + "\n")
PY

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# Each mode runs under /usr/bin/time; "wall cpu" (cpu = user + sys of every
# process) goes to $dir/time.txt. CPU time shows how much of a wall-clock
# difference is work saved rather than a busy machine.
timed() { /usr/bin/time -f "%e %U %S" -o "$dir/time.txt" "$@"; awk '{printf "%.3f %.3f\n", $1, $2 + $3}' "$dir/time.txt"; }

run_batch() {  # extra batch options; answers to $dir/out.jsonl
    "$tycho" batch --model "$model" --threads "$threads" "$@" "$dir/requests.jsonl" >"$dir/out.jsonl" 2>"$dir/err.txt" ||
        { cat "$dir/err.txt" >&2; exit 1; }
}
run_cli() {
    while IFS=$'\t' read -r -a args; do
        "$tycho" "${args[0]}" --model "$model" --threads "$threads" "${args[@]:1}" >/dev/null
    done <"$dir/cli.txt"
}
export -f run_batch run_cli
export tycho model threads dir

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -a tb ts tc cb cs cc
for r in $(seq "$runs"); do
    read -r w c < <(timed bash -c run_batch)
    tb+=("$w"); cb+=("$c")
    cp "$dir/out.jsonl" "$dir/out.batch.jsonl"
    summary=$(cat "$dir/err.txt")
    read -r w c < <(timed bash -c 'run_batch --max-batch-size 1 --no-prefix-cache')
    ts+=("$w"); cs+=("$c")
    read -r w c < <(timed bash -c run_cli)
    tc+=("$w"); cc+=("$c")
    printf 'run %d (wall / cpu s): batch %.2f / %.2f, batch-serial %.2f / %.2f, cli %.2f / %.2f\n' "$r" \
        "${tb[-1]}" "${cb[-1]}" "${ts[-1]}" "${cs[-1]}" "${tc[-1]}" "${cc[-1]}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Same answers with and without batching/caching (metrics differ, answers must not).
python3 - "$dir/out.batch.jsonl" "$dir/out.jsonl" <<'PY'
import json, sys
strip = lambda r: {k: v for k, v in r.items() if k != "metrics"}
a = [strip(json.loads(l)) for l in open(sys.argv[1])]
b = [strip(json.loads(l)) for l in open(sys.argv[2])]
assert len(a) == 64 and a == b, "batch and batch-serial answers differ"
print("answers: batch == batch-serial for all 64 requests")
PY

mb=$(median "${tb[@]}"); ms=$(median "${ts[@]}"); mc=$(median "${tc[@]}")
cpb=$(median "${cb[@]}"); cps=$(median "${cs[@]}"); cpc=$(median "${cc[@]}")
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, --threads $threads"
echo "batch stats: $summary"
printf 'median of %d, wall: batch %.2f s | batch-serial %.2f s | cli x64 %.2f s\n' "$runs" "$mb" "$ms" "$mc"
printf 'median of %d, cpu:  batch %.2f s | batch-serial %.2f s | cli x64 %.2f s\n' "$runs" "$cpb" "$cps" "$cpc"
printf 'speedup (wall): vs cli %.2fx, vs batch-serial %.2fx\n' "$(echo "$mc / $mb" | bc -l)" "$(echo "$ms / $mb" | bc -l)"
printf 'speedup (cpu):  vs cli %.2fx, vs batch-serial %.2fx\n' "$(echo "$cpc / $cpb" | bc -l)" "$(echo "$cps / $cpb" | bc -l)"
