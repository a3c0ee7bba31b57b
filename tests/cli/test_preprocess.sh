#!/usr/bin/env bash
# tycho preprocess against the golden preprocessing data, through the CLI:
# the JSON line must match images.json and the written PNGs must hold the
# golden pixels. PNGs are decoded by a small stdlib-only Python reader (zlib +
# the five PNG filters), independent of libvips, so the check does not trust
# the code under test to read its own output. Then bad input: every error is
# one line on stderr, a non-zero exit, nothing on stdout, and no crash.
# usage: test_preprocess.sh TYCHO_BINARY TESTS_DATA_DIR
set -u
tycho=$1
data=$2
golden=$data/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# Pixel comparison of two 8-bit PNGs (decoded to RGB), and the JSON check.
cat >"$tmp/check.py" <<'EOF'
import json, struct, sys, zlib
from itertools import accumulate

def png_rgb(path):
    """(width, height, rgb bytes) of an 8-bit, non-interlaced gray/RGB/RGBA PNG."""
    d = open(path, 'rb').read()
    if d[:8] != b'\x89PNG\r\n\x1a\n':
        raise ValueError(path + ': not a PNG')
    pos, idat, hdr = 8, [], None
    while pos < len(d):
        n, kind = struct.unpack('>I4s', d[pos:pos + 8])
        body = d[pos + 8:pos + 8 + n]
        if zlib.crc32(d[pos + 4:pos + 8 + n]) != struct.unpack('>I', d[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError(path + ': bad CRC')
        if kind == b'IHDR':
            hdr = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat.append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    bands = {0: 1, 2: 3, 6: 4}.get(ctype)
    if depth != 8 or bands is None or interlace:
        raise ValueError('%s: unsupported PNG layout %r' % (path, hdr))
    raw = zlib.decompress(b''.join(idat))
    stride = w * bands
    n = stride
    m7, m8 = int.from_bytes(b'\x7f' * n, 'big'), int.from_bytes(b'\x80' * n, 'big')
    prev, out = bytes(stride), bytearray()
    for y in range(h):
        f = raw[y * (stride + 1)]
        row = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if f == 0:
            cur = row
        elif f == 1:   # Sub: a running sum per channel
            cur = bytearray(stride)
            for c in range(bands):
                cur[c::bands] = bytes(v & 255 for v in accumulate(row[c::bands]))
        elif f == 2:   # Up: bytewise add without carries, on whole rows at once
            a, b = int.from_bytes(row, 'big'), int.from_bytes(prev, 'big')
            cur = (((a & m7) + (b & m7)) ^ ((a ^ b) & m8)).to_bytes(n, 'big')
        else:
            cur = bytearray(row)
            for i in range(stride):
                left = cur[i - bands] if i >= bands else 0
                up = prev[i]
                if f == 3:
                    cur[i] = (cur[i] + ((left + up) >> 1)) & 255
                elif f == 4:
                    ul = prev[i - bands] if i >= bands else 0
                    p = left + up - ul
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                    cur[i] = (cur[i] + pred) & 255
                else:
                    raise ValueError('%s: bad filter %d' % (path, f))
        prev = bytes(cur)
        out += prev
    if bands == 1:
        out = bytes(v for v in out for _ in range(3))
    elif bands == 4:
        out = bytes(v for i, v in enumerate(out) if i % 4 != 3)
    return w, h, bytes(out)

def same_pixels(a, b):
    wa, ha, pa = png_rgb(a)
    wb, hb, pb = png_rgb(b)
    if (wa, ha) != (wb, hb):
        return '%s is %dx%d, %s is %dx%d' % (a, wa, ha, b, wb, hb)
    if pa != pb:
        nd = sum(1 for x, y in zip(pa, pb) if x != y)
        return '%s and %s: %d samples differ' % (a, b, nd)
    return None

cmd = sys.argv[1]
if cmd == 'same':        # same A B
    err = same_pixels(sys.argv[2], sys.argv[3])
elif cmd == 'json':      # json STDOUT_FILE IMAGES_JSON NAME
    lines = open(sys.argv[2]).read().split('\n')
    want = json.load(open(sys.argv[3]))['images'][sys.argv[4]]
    err = None
    if len(lines) != 2 or lines[1] != '':
        err = 'expected exactly one line on stdout, got %r' % lines
    else:
        got = json.loads(lines[0])
        exp = {'tiling': want['tiling'], 'n_crops': want['n_crops'], 'resized': want['resized_hw']}
        if got != exp:
            err = 'got %s, want %s' % (got, exp)
elif cmd == 'names':     # names IMAGES_JSON -> "name file" lines
    for name, v in json.load(open(sys.argv[2]))['images'].items():
        print(name, v['file'])
    err = None
if err:
    print(err, file=sys.stderr)
    sys.exit(1)
EOF
check() { python3 "$tmp/check.py" "$@"; }

# ---- golden parity ----
names=$(check names "$golden/images.json") || fail "cannot read images.json"
while read -r name file; do
    [ -n "$name" ] || continue
    out=$tmp/out/$name
    if ! "$tycho" preprocess "$golden/$file" --out "$out" >"$tmp/stdout" 2>"$tmp/stderr"; then
        fail "$name: tycho preprocess failed: $(cat "$tmp/stderr")"
        continue
    fi
    [ -s "$tmp/stderr" ] && fail "$name: unexpected stderr: $(cat "$tmp/stderr")"
    check json "$tmp/stdout" "$golden/images.json" "$name" || fail "$name: JSON line"
    for kind in global resized; do
        if [ ! -f "$out/$kind.png" ]; then
            fail "$name: $kind.png not written"
        else
            check same "$out/$kind.png" "$golden/preprocess/$name.$kind.png" || fail "$name: $kind pixels"
        fi
    done
done <<<"$names"

# --out may name a directory that does not exist yet, several levels deep.
if "$tycho" preprocess "$golden/images/c_96x64.png" --out="$tmp/deep/er/dir" >/dev/null 2>"$tmp/stderr"; then
    [ -f "$tmp/deep/er/dir/global.png" ] || fail "--out=DIR: nested directory not created"
else
    fail "--out=DIR: $(cat "$tmp/stderr")"
fi

# ---- errors: one line on stderr, non-zero exit (not a crash), empty stdout ----
expect_error() {
    local what=$1
    shift
    "$tycho" preprocess "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    local rc=$?
    if [ $rc -eq 0 ]; then
        fail "$what: exit status 0"
    elif [ $rc -ge 128 ]; then
        fail "$what: crashed (exit $rc): $(head -c 2000 "$tmp/stderr")"
    fi
    [ -s "$tmp/stdout" ] && fail "$what: wrote to stdout: $(head -c 200 "$tmp/stdout")"
    local lines
    lines=$(wc -l <"$tmp/stderr")
    [ "$lines" -eq 1 ] || fail "$what: $lines lines on stderr: $(head -c 2000 "$tmp/stderr")"
    grep -q '^tycho preprocess: ' "$tmp/stderr" || fail "$what: message: $(cat "$tmp/stderr")"
}

head -c 3000 /dev/urandom >"$tmp/random.bin"
printf 'this is not an image\n' >"$tmp/text.png"
: >"$tmp/empty.jpg"
head -c 60000 "$golden/images/d_1024x768.jpg" >"$tmp/cut.jpg"
head -c 100000 "$golden/images/a_640x480.png" >"$tmp/cut.png"
printf 'P6\n2 1\n255\n\001\002\003\004\005\006' >"$tmp/x.ppm"
printf 'BM\072\000\000\000\000\000\000\000\066\000\000\000' >"$tmp/x.bmp"
: >"$tmp/a_file"

expect_error "no arguments"
expect_error "no --out" "$golden/images/c_96x64.png"
expect_error "--out without a value" "$golden/images/c_96x64.png" --out
expect_error "no image" --out "$tmp/o"
expect_error "unknown option" "$golden/images/c_96x64.png" --out "$tmp/o" --frobnicate
expect_error "two images" "$golden/images/c_96x64.png" "$golden/images/b_378x378.png" --out "$tmp/o"
expect_error "missing file" "$tmp/does-not-exist.png" --out "$tmp/o"
expect_error "a directory as image" "$tmp" --out "$tmp/o"
expect_error "random bytes" "$tmp/random.bin" --out "$tmp/o"
expect_error "text" "$tmp/text.png" --out "$tmp/o"
expect_error "empty file" "$tmp/empty.jpg" --out "$tmp/o"
expect_error "truncated JPEG" "$tmp/cut.jpg" --out "$tmp/o"
expect_error "truncated PNG" "$tmp/cut.png" --out "$tmp/o"
expect_error "PPM" "$tmp/x.ppm" --out "$tmp/o"
expect_error "BMP" "$tmp/x.bmp" --out "$tmp/o"
expect_error "output under a file" "$golden/images/c_96x64.png" --out "$tmp/a_file/sub"
grep -q 'not a directory' "$tmp/stderr" || fail "output under a file: message: $(cat "$tmp/stderr")"

if [ $failures -ne 0 ]; then
    echo "test_preprocess: $failures failures" >&2
    exit 1
fi
echo "test_preprocess: ok"
