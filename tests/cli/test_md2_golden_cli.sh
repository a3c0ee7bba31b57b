#!/usr/bin/env bash
# Every md2-tiny golden case through the CLI, exactly as users call it:
# `tycho caption|query|detect|point --model DIR IMAGE ... --json`, greedy,
# compared with the reference's return value. Under sanitizers (third
# argument "quick") only the cases of the small images and the text-only one run.
set -euo pipefail
tycho=$1
data=$2
mode=${3:-full}
python3 - "$tycho" "$data" "$mode" <<'PY'
import json, subprocess, sys
tycho, data, mode = sys.argv[1:4]
gold = data + "/golden"
cases = json.load(open(gold + "/md2-tiny/expected.json"))["cases"]
images = json.load(open(gold + "/images.json"))["images"]
failures = 0
ran = 0
for c in cases:
    img = c.get("image")
    if mode == "quick" and img not in (None, "b_378x378", "c_96x64"):
        continue
    cmd = [tycho, c["skill"], "--model", gold + "/md2-tiny", "--json", "--threads", "2"]
    if img:
        cmd.append(gold + "/" + images[img]["file"])
    s = c.get("settings", {})
    if "max_tokens" in s: cmd += ["--max-tokens", str(s["max_tokens"])]
    if "temperature" in s: cmd += ["--temperature", repr(s["temperature"])]
    if "max_objects" in s: cmd += ["--max-objects", str(s["max_objects"])]
    if "length" in c: cmd += ["--length", c["length"]]
    if "question" in c: cmd += ["--question", c["question"]]
    if c.get("reasoning"): cmd.append("--reasoning")
    for ref in c.get("spatial_refs") or []:
        cmd += ["--spatial-ref", ",".join(repr(v) for v in ref)]
    if "object" in c: cmd += ["--object", c["object"]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    ran += 1
    if p.returncode != 0:
        print("FAIL", c["id"], "exit", p.returncode, p.stderr.strip()); failures += 1; continue
    got = json.loads(p.stdout)
    want = c["result"]
    if c["skill"] == "caption":
        ok = got["caption"] == want
    elif c["skill"] == "query":
        ok = got["answer"] == want["answer"] and got.get("reasoning") == want.get("reasoning")
    else:
        key = "objects" if c["skill"] == "detect" else "points"
        ok = got[key] == want[key]
    if not ok and c["min_margin"] >= 1e-3:
        print("FAIL", c["id"], "got", json.dumps(got)[:300], "want", json.dumps(want)[:300]); failures += 1
    assert got["finish_reason"] in ("stop", "length")
print(f"{ran} cases through the CLI, {failures} failures")
sys.exit(1 if failures or ran == 0 else 0)
PY
