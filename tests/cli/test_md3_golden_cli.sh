#!/usr/bin/env bash
# Every md3-tiny golden case (Moondream 3: tau attention, MoE) through the CLI,
# as users call it: `tycho query --model DIR IMAGE --question Q --json`, greedy,
# 12 tokens as the reference generator ran; the answer must be identical.
set -euo pipefail
tycho=$1
data=$2
python3 - "$tycho" "$data" <<'PY'
import json, subprocess, sys
tycho, data = sys.argv[1:3]
gold = data + "/golden"
cases = json.load(open(gold + "/md3-tiny/expected.json"))["cases"]
images = json.load(open(gold + "/images.json"))["images"]
failures = 0
for c in cases:
    cmd = [tycho, c["skill"], "--model", gold + "/md3-tiny", gold + "/" + images[c["image"]]["file"],
           "--question", c["question"], "--temperature", "0", "--max-tokens", str(len(c["emitted_ids"])),
           "--json", "--threads", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("FAIL", c["id"], "exit", p.returncode, p.stderr.strip()); failures += 1; continue
    got = json.loads(p.stdout)
    if got["answer"] != c["answer"] and c["min_margin"] >= 1e-3:
        print("FAIL", c["id"], "got", repr(got["answer"]), "want", repr(c["answer"])); failures += 1
print(f"{len(cases)} md3-tiny cases through the CLI, {failures} failures")
sys.exit(1 if failures or not cases else 0)
PY
