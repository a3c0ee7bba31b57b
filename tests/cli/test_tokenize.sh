#!/usr/bin/env bash
# tycho tokenize against the HF vectors (ids and decoded text must be equal),
# then its failures: bad input lines, missing or unsupported tokenizer files.
# usage: test_tokenize.sh <tycho binary> <tests/data dir>
set -u
TYCHO=$1
DATA=$2
TOK=$DATA/golden/tokenizer
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
check() {  # check <description> <command...>: the command must succeed
    local what=$1
    shift
    if ! "$@"; then
        echo "FAIL: $what" >&2
        fail=1
    fi
}

# ---- every vector, through the CLI ----
compare_vectors() {  # compare_vectors <tokenizer.json> <vectors.json>
    local tok=$1 vec=$2 name
    name=$(basename "$vec" .json)
    python3 -c '
import json, sys
for v in json.load(open(sys.argv[1]))["vectors"]:
    print(json.dumps({"text": v["text"]}))
' "$vec" >"$TMP/$name.in" || return 1
    "$TYCHO" tokenize --tokenizer "$tok" <"$TMP/$name.in" >"$TMP/$name.out" 2>"$TMP/$name.err" || {
        cat "$TMP/$name.err" >&2
        return 1
    }
    python3 -c '
import json, sys
want = json.load(open(sys.argv[1]))["vectors"]
got = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
bad = 0
if len(got) != len(want):
    print(f"{sys.argv[1]}: {len(got)} output lines for {len(want)} vectors")
    sys.exit(1)
for i, (w, g) in enumerate(zip(want, got)):
    if g != {"ids": w["ids"], "decoded": w["decoded"]}:
        bad += 1
        if bad <= 3:
            print(f"vector {i} {w['text']!r}: got {g}, want ids {w['ids']} decoded {w['decoded']!r}")
print(f"{sys.argv[1]}: {len(want)} vectors, {bad} mismatches")
sys.exit(1 if bad else 0)
' "$vec" "$TMP/$name.out"
}
check "gpt2 vectors" compare_vectors "$TOK/gpt2.json" "$TOK/gpt2.vectors.json"
check "gpt2 merge-pairs vectors" compare_vectors "$TOK/gpt2-merge-pairs.json" "$TOK/gpt2-merge-pairs.vectors.json"
check "md-tiny vectors" compare_vectors "$DATA/golden/md2-tiny/tokenizer.json" "$TOK/md-tiny.vectors.json"

# ---- failures: exit status 1 and one line on stderr that says why ----
expect_fail() {  # expect_fail <description> <stderr pattern> <stdin text> <tycho args...>
    local what=$1 pattern=$2 input=$3 rc
    shift 3
    printf '%s' "$input" | "$TYCHO" tokenize "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ "$rc" -eq 0 ] || [ "$rc" -gt 2 ] || ! grep -q -- "$pattern" "$TMP/err" || [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
        echo "FAIL: $what: exit $rc, stderr: $(cat "$TMP/err")" >&2
        fail=1
    fi
}
MD=$DATA/golden/md2-tiny/tokenizer.json
expect_fail "malformed JSON line" "line 2: not valid JSON" $'{"text":"a"}\n{"text":\n{"text":"b"}\n' --tokenizer "$MD"
expect_fail "trailing junk" "line 1: not valid JSON" $'{"text":"a"} x\n' --tokenizer "$MD"
expect_fail "missing text" 'line 1: expected an object with a string "text"' $'{"txt":"a"}\n' --tokenizer "$MD"
expect_fail "text not a string" 'line 1: expected an object' $'{"text":5}\n' --tokenizer "$MD"
expect_fail "invalid UTF-8 text" 'line 1: text is not valid UTF-8' $'{"text":"a\xffb"}\n' --tokenizer "$MD"
expect_fail "NUL in text" 'line 1: text with' $'{"text":"a\\u0000b"}\n' --tokenizer "$MD"
expect_fail "no tokenizer option" "missing --tokenizer" ""
expect_fail "unknown option" "unexpected argument" "" --tokenizer "$DATA/golden/md2-tiny/tokenizer.json" --frobnicate
expect_fail "missing tokenizer file" "no-such.json" "" --tokenizer "$TMP/no-such.json"
printf '{"model":' >"$TMP/truncated.json"
expect_fail "truncated tokenizer.json" "not valid JSON" "" --tokenizer "$TMP/truncated.json"
python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
j["normalizer"] = {"type": "NFKC"}
json.dump(j, open(sys.argv[2], "w"))
' "$MD" "$TMP/nfkc.json"
expect_fail "unsupported normalizer" "normalizer type 'NFKC' is not supported" "" --tokenizer "$TMP/nfkc.json"

printf '{"text":"a\0b"}\n' | "$TYCHO" tokenize --tokenizer "$MD" >/dev/null 2>"$TMP/err"
check "NUL byte in a line is refused" grep -q "line 1: line contains a NUL byte" "$TMP/err"

# The lines before a bad one are answered; blank lines are skipped.
printf '{"text":"a"}\n\n{"text":"b"}\n{oops\n{"text":"c"}\n' | "$TYCHO" tokenize --tokenizer "$MD" >"$TMP/out" 2>/dev/null
check "lines before the bad one are answered" [ "$(wc -l <"$TMP/out")" -eq 2 ]
# Escaping: quotes, backslashes and control characters survive the round trip.
printf '%s\n' '{"text":"q\"b\\\\t\tnl\n<|endoftext|>é"}' | "$TYCHO" tokenize --tokenizer "$MD" >"$TMP/out"
check "escaped output round-trips" python3 -c '
import json, sys
g = json.loads(open(sys.argv[1], encoding="utf-8").read())
assert g["decoded"] == "q\"b\\\\t\tnl\né", g
assert 0 in g["ids"], g
' "$TMP/out"

[ "$fail" -eq 0 ] && echo "test_tokenize: all passed"
exit "$fail"
