#!/usr/bin/env bash
# tycho batch with the golden md2-tiny model: a JSONL mixing caption, query
# (plain, reasoning, spatial refs, text-only), detect and point over repeated
# and distinct images. Every result must equal what the single-request CLI
# (`tycho <skill> ... --json --temperature 0`) answers for the same input;
# bad lines give error lines naming their field while the others succeed; the
# output keeps the input order; the exit status says whether any line failed.
# Third argument "quick" (sanitizer builds) runs a smaller set.
set -euo pipefail
tycho=$1
data=$2
mode=${3:-full}
python3 - "$tycho" "$data" "$mode" <<'PY'
import base64, json, os, shutil, subprocess, sys, tempfile

tycho, data, mode = sys.argv[1:4]
tycho = os.path.abspath(tycho)
gold = os.path.abspath(data + "/golden")
model = gold + "/md2-tiny"
tmp = tempfile.mkdtemp(prefix="tycho_batch_")
failures = 0

def fail(*msg):
    global failures
    failures += 1
    print("FAIL", *msg)

# Images are referenced relative to the JSONL's directory (tmp/img -> golden
# images), by absolute path, and inline as a data URI.
os.symlink(gold + "/images", tmp + "/img")
S = {"max_tokens": 20, "temperature": 0}
D = {"max_objects": 4}
c_png = open(gold + "/images/c_96x64.png", "rb").read()
c_uri = "data:image/png;base64," + base64.b64encode(c_png).decode()
# (skill, image path for the CLI or None, JSONL fields)
good = [
    ("caption", "b_378x378.png", {"image": "img/b_378x378.png", "length": "short", "settings": S}),
    ("query", "b_378x378.png", {"image": "img/b_378x378.png", "question": "How many circles are there?", "settings": S}),
    ("detect", "b_378x378.png", {"image": "img/b_378x378.png", "object": "square", "settings": D}),
    ("point", "b_378x378.png", {"image": "img/b_378x378.png", "object": "square", "settings": D}),
    ("caption", "c_96x64.png", {"image": "img/c_96x64.png", "settings": S}),
    ("query", None, {"question": "Why is the sky blue?", "settings": S}),
    ("query", "c_96x64.png", {"image": "img/c_96x64.png", "question": "Describe the colors.", "reasoning": True, "settings": S}),
    ("point", "c_96x64.png", {"image_url": c_uri, "object": "line", "settings": D}),
    ("caption", "b_378x378.png", {"image": gold + "/images/b_378x378.png", "length": "long", "settings": S}),
]
if mode != "quick":
    good += [
        ("query", "g_400x300_rgba.png", {"image": "img/g_400x300_rgba.png", "question": "What is here?",
                                         "spatial_refs": [[0.25, 0.5], [0.1, 0.2, 0.4, 0.6]], "settings": S}),
        ("detect", "f_300x200_gray.png", {"image": "img/f_300x200_gray.png", "object": "line", "settings": D}),
        ("caption", "c_96x64.png", {"image_url": c_uri, "length": "short", "settings": S}),
        ("query", "g_400x300_rgba.png", {"image": "img/g_400x300_rgba.png", "question": "What is in this image?", "settings": S}),
        ("detect", "c_96x64.png", {"image": "img/c_96x64.png", "object": "line", "settings": D}),
        ("point", "f_300x200_gray.png", {"image": "img/f_300x200_gray.png", "object": "line", "settings": D}),
    ]
# (raw line, the param its error must name; None: no single field)
bad = [
    ("{not json", None),
    ('{"skill": "segment", "image": "img/b_378x378.png", "object": "x"}', "skill"),
    ('{"image": "img/b_378x378.png", "object": "x"}', "skill"),
    ('{"skill": "query", "image": "img/b_378x378.png", "question": "   "}', "question"),
    ('{"skill": "caption", "image": "img/missing.png"}', "image"),
    ('{"skill": "detect", "image": "img/b_378x378.png", "object": "x", "settings": {"max_objects": 0}}', "settings.max_objects"),
    ('{"skill": "caption", "image": "img/b_378x378.png", "settings": {"top_p": 2}}', "settings.top_p"),
    ('{"skill": "caption", "image": "img/b_378x378.png", "stream": "yes"}', "stream"),
    ('{"skill": "caption", "image_url": "data:image/png;base64,@@@@"}', "image_url"),
    ('{"skill": "caption", "image_url": "Zm9vYmFy"}', None),  # valid base64, not an image: fails in tycho_submit
    ("[1, 2]", None),
]

def cli_expected(skill, image, f):
    cmd = [tycho, skill, "--model", model, "--json", "--temperature", "0", "--threads", "2"]
    if image: cmd.append(gold + "/images/" + image)
    s = f.get("settings", {})
    if "max_tokens" in s: cmd += ["--max-tokens", str(s["max_tokens"])]
    if "max_objects" in s: cmd += ["--max-objects", str(s["max_objects"])]
    if "length" in f: cmd += ["--length", f["length"]]
    if "question" in f: cmd += ["--question", f["question"]]
    if f.get("reasoning"): cmd.append("--reasoning")
    for ref in f.get("spatial_refs", []): cmd += ["--spatial-ref", ",".join(repr(v) for v in ref)]
    if "object" in f: cmd += ["--object", f["object"]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail("single CLI", " ".join(cmd), p.stderr.strip())
        return None
    return json.loads(p.stdout)

ANSWER_KEYS = {"caption": ["caption"], "query": ["answer", "reasoning"], "detect": ["objects"], "point": ["points"]}

def answer(skill, r):
    return {k: r.get(k) for k in ANSWER_KEYS[skill] + ["finish_reason"]}

expected = {}
for i, (skill, image, f) in enumerate(good):
    e = cli_expected(skill, image, f)
    if e is not None:
        expected[i] = answer(skill, e)

# The JSONL: good and bad lines interleaved, blank lines, some with an "id".
lines, plan = [], []  # plan: per non-blank line (expected id, ("good", i) | ("bad", param))
bi = 0
for i, (skill, image, f) in enumerate(good):
    body = dict(f, skill=skill)
    if i % 3 == 1:
        body["id"] = "req-%d" % i
    elif i % 3 == 2:
        body["id"] = {"n": i}
    lines.append(json.dumps(body))
    plan.append((body.get("id", len(lines) - 1), ("good", i)))
    if i % 2 == 0 and bi < len(bad):
        lines.append(bad[bi][0])
        plan.append((len(lines) - 1, ("bad", bad[bi][1])))
        bi += 1
    if i == 3:
        lines += ["", "   \t"]
while bi < len(bad):
    lines.append(bad[bi][0])
    plan.append((len(lines) - 1, ("bad", bad[bi][1])))
    bi += 1
jsonl = tmp + "/requests.jsonl"
open(jsonl, "w").write("\n".join(lines) + "\n")

def run_batch(args, stdin=None, cwd="/"):
    # cwd "/" checks that relative image paths follow the JSONL, not the working directory.
    p = subprocess.run([tycho, "batch", "--model", model, "--threads", "2"] + args, input=stdin,
                       capture_output=True, text=True, cwd=cwd)
    out = []
    for ln in p.stdout.splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            fail("not a JSON line:", ln[:200])
    return p, out

def check_run(name, p, out, plan, want_rc):
    if p.returncode != want_rc:
        fail(name, "exit", p.returncode, "want", want_rc, p.stderr.strip()[-500:])
    if len(out) != len(plan):
        fail(name, "got", len(out), "result lines, want", len(plan), p.stderr.strip()[-500:])
        return
    for r, (want_id, (kind, what)) in zip(out, plan):
        if r.get("id") != want_id:
            fail(name, "order/id: got", r.get("id"), "want", want_id)
            continue
        if kind == "bad":
            err = r.get("error")
            if not isinstance(err, dict) or not err.get("message") or not err.get("code") or "caption" in r:
                fail(name, "line", want_id, "should be an error:", json.dumps(r)[:300])
            elif what is not None and err.get("param") != what:
                fail(name, "line", want_id, "error param", err.get("param"), "want", what, err.get("message"))
            continue
        skill = good[what][0]
        if "error" in r:
            fail(name, "request", want_id, "failed:", json.dumps(r["error"]))
            continue
        if what in expected and answer(skill, r) != expected[what]:
            fail(name, "request", want_id, skill, "got", json.dumps(answer(skill, r))[:300],
                 "want", json.dumps(expected[what])[:300])
        m = r.get("metrics", {})
        if not all(k in m for k in ("input_tokens", "output_tokens", "prefill_time_ms", "decode_time_ms", "ttft_ms", "cached_tokens")):
            fail(name, "request", want_id, "metrics missing:", json.dumps(m))

# 1. The mixed file: every good line equals the single CLI, bad lines are errors, order kept, exit 1.
p, out = run_batch([jsonl])
check_run("batch", p, out, plan, 1)
if mode != "quick":
    # 2. Batching and caching must not change answers: one at a time without the cache,
    #    and small batches (more waiting, more reuse of finished slots).
    for args in (["--max-batch-size", "1", "--no-prefix-cache"], ["--max-batch-size", "2", "--kv-pages", "512"]):
        p, out = run_batch(args + [jsonl])
        check_run("batch " + " ".join(args), p, out, plan, 1)

# 3. Only good lines, from stdin ("-": relative paths follow the working directory): exit 0.
good_lines = [json.dumps(dict(f, skill=s)) for s, _, f in good]
p, out = run_batch(["-"], stdin="\n".join(good_lines), cwd=tmp)  # no final newline on purpose
check_run("stdin", p, out, [(i, ("good", i)) for i in range(len(good))], 0)

# 4. Many lines: order and count kept through a small window (max batch 2 -> 8 in flight),
#    with failures sprinkled in.
n = 400 if mode != "quick" else 60
many, mplan = [], []
for i in range(n):
    if i % 7 == 3:
        many.append('{"skill": "query", "question": ""}')
        mplan.append((i, ("bad", "question")))
    else:
        many.append(json.dumps({"skill": "query", "question": "q%d" % i, "settings": {"max_tokens": 1 + i % 5, "temperature": 0}}))
        mplan.append((i, ("good", None)))
mfile = tmp + "/many.jsonl"
open(mfile, "w").write("\n".join(many) + "\n")
p, out = run_batch(["--max-batch-size", "2", mfile])
if p.returncode != 1 or [r.get("id") for r in out] != list(range(n)):
    fail("many: exit", p.returncode, "ids", [r.get("id") for r in out][:20], p.stderr.strip()[-300:])
for r, (i, (kind, _)) in zip(out, mplan):
    if (kind == "bad") != ("error" in r):
        fail("many: line", i, json.dumps(r)[:200])
    elif kind == "good" and r.get("metrics", {}).get("output_tokens", 0) > 1 + i % 5:
        fail("many: line", i, "more tokens than max_tokens", json.dumps(r)[:200])

# 5. Usage errors.
p = subprocess.run([tycho, "batch", jsonl], capture_output=True, text=True)
if p.returncode != 2: fail("no --model: exit", p.returncode)
p = subprocess.run([tycho, "batch", "--model", model, tmp + "/nope.jsonl"], capture_output=True, text=True)
if p.returncode != 1 or "nope.jsonl" not in p.stderr: fail("missing file: exit", p.returncode, p.stderr.strip())
p = subprocess.run([tycho, "batch", "--model", model, "--max-batch-size", "0", jsonl], capture_output=True, text=True)
if p.returncode != 2: fail("--max-batch-size 0: exit", p.returncode)

shutil.rmtree(tmp)
print(f"{len(good)} requests + {len(bad)} bad lines through tycho batch, {failures} failures")
sys.exit(1 if failures else 0)
PY
