"""Evaluate the shapes demo model through the tycho CLI (not PyTorch).

Renders fresh scenes with scenes.py (pure Python; stdlib only), saves every
other one as JPEG (quality 85, via the `vips` CLI from libvips-tools), runs
`tycho caption|query|detect|point --temperature 0 --json` for each task and
prints the accuracy table.

  python3 tools/demo_model/evaluate.py [--n 300] [--model models/shapes] [--tycho build/bin/tycho]
                                        [--jobs 2] [--seed 4242] [--out results.json]

Per scene: caption (normal); "How many {shape}s are there?" (random shape);
"How many {colour} shapes are there?" (random colour); "What color is the
{shape}?" (a shape present exactly once, when there is one); detect and point
for one random shape name and one random "{colour} shape".
"""
import argparse
import collections
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes as S  # noqa: E402

NUM = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
CAP_RE = re.compile(r"\b(a|an|one|two|three|four|\d+)\s+(red|green|blue|yellow)\s+(circle|square|triangle)s?\b")


def caption_multiset(text):
    c = collections.Counter()
    for n, col, sh in CAP_RE.findall(text.lower()):
        c[(col, sh)] += int(n) if n.isdigit() else NUM[n]
    return c


def truth_multiset(scene):
    return collections.Counter((o["color"], o["shape"]) for o in scene["objects"])


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def match_boxes(pred, true, thr=0.5):
    """Greedy one-to-one matching by IoU; returns (#true matched, #pred unmatched)."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(true)), reverse=True)
    used_p, used_t = set(), set()
    for v, i, j in pairs:
        if v < thr:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
    return len(used_t), len(pred) - len(used_p)


def run_tycho(tycho, model, cmd, image, extra):
    args = [tycho, cmd, "--model", model, image, "--temperature", "0", "--json", "--threads", "1"] + extra
    t = time.time()
    p = subprocess.run(args, capture_output=True, text=True)
    dt = time.time() - t
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:]}, dt
    return json.loads(p.stdout), dt


def api_body(cmd, extra):
    """The Moondream API request body of a CLI-style task (greedy)."""
    body = {"settings": {"temperature": 0}}
    opts = dict(zip(extra[::2], extra[1::2]))
    if cmd == "caption":
        body["length"] = opts.get("--length", "normal")
    elif cmd == "query":
        body["question"] = opts["--question"]
    else:
        body["object"] = opts["--object"]
    return body


def run_batch(args, jobs, scenes):
    """Every task in one `tycho batch` run: the engine batches them."""
    path = os.path.join(args.workdir, "tasks.jsonl")
    with open(path, "w") as f:
        for i, kind, cmd, extra, meta in jobs:
            f.write(json.dumps(dict(api_body(cmd, extra), skill=cmd, image=os.path.abspath(scenes[i]["image"]))) + "\n")
    t = time.time()
    p = subprocess.run([args.tycho, "batch", "--model", args.model, "--seed", "0", path], capture_output=True, text=True)
    dt = (time.time() - t) / max(len(jobs), 1)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if len(lines) != len(jobs):
        raise SystemExit(f"tycho batch gave {len(lines)} results for {len(jobs)} tasks: {p.stderr[-500:]}")
    return [(job, res, dt) for job, res in zip(jobs, lines)]


def run_http(args, jobs, scenes):
    """Every task as an HTTP request to `tycho serve` on a loopback port."""
    import base64, socket, urllib.error, urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([args.tycho, "serve", "--model", args.model, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(base + "/health", timeout=1).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)

        def post(job):
            i, kind, cmd, extra, meta = job
            img = scenes[i]["image"]
            mime = "jpeg" if img.endswith(".jpg") else "png"
            body = dict(api_body(cmd, extra), image_url=f"data:image/{mime};base64," +
                        base64.b64encode(open(img, "rb").read()).decode())
            req = urllib.request.Request(f"{base}/v1/{cmd}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            t = time.time()
            try:
                res = json.loads(urllib.request.urlopen(req, timeout=600).read())
            except urllib.error.HTTPError as e:
                res = {"error": e.read().decode(errors="replace")[-500:]}
            return job, res, time.time() - t

        with ThreadPoolExecutor(max(args.jobs, 16)) as ex:
            return list(ex.map(post, jobs))
    finally:
        server.terminate()
        server.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=4242, help="scene seed (training uses other streams)")
    ap.add_argument("--model", default="models/shapes")
    ap.add_argument("--tycho", default="build/bin/tycho")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--workdir", default="/tmp/tycho_shapes_eval")
    ap.add_argument("--out", default=None, help="write per-task results as JSON")
    ap.add_argument("--via", choices=["cli", "batch", "http"], default="cli",
                    help="cli: one tycho call per task; batch: every task in one `tycho batch` (the engine "
                         "batching them); http: every task as a request to `tycho serve` (--jobs at a time)")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.time()
    rng = random.Random(args.seed)
    jobs = []  # (scene index, kind, cmd, extra, meta)
    scenes = []
    for i in range(args.n):
        sc = S.sample_scene(rng)
        scenes.append(sc)
        png = os.path.join(args.workdir, f"scene{i:04d}.png")
        S.write_png(png, sc["width"], sc["height"], S.render_py(sc))
        img = png
        if i % 2 == 1:
            img = png[:-4] + ".jpg"
            subprocess.run(["vips", "copy", png, f"{img}[Q={args.quality}]"], check=True)
        sc["image"] = img
        objs = sc["objects"]
        jobs.append((i, "caption", "caption", ["--length", "normal"], None))
        sh = rng.choice(S.SHAPES)
        jobs.append((i, "count", "query", ["--question", S.count_question_shape(sh)],
                     sum(o["shape"] == sh for o in objs)))
        c = rng.choice(S.COLOR_NAMES)
        jobs.append((i, "count", "query", ["--question", S.count_question_color(c)],
                     sum(o["color"] == c for o in objs)))
        singles = [s for s in S.SHAPES if sum(o["shape"] == s for o in objs) == 1]
        if singles:
            sh1 = rng.choice(singles)
            jobs.append((i, "color", "query", ["--question", S.color_question(sh1)],
                         [o["color"] for o in objs if o["shape"] == sh1][0]))
        qs = [rng.choice(S.SHAPES), rng.choice(S.COLOR_NAMES) + " shape"]
        for q in qs:
            for skill in ("detect", "point"):
                jobs.append((i, skill, skill, ["--object", q], q))
    t_render = time.time() - t0

    def work(job):
        i, kind, cmd, extra, meta = job
        res, dt = run_tycho(args.tycho, args.model, cmd, scenes[i]["image"], extra)
        return job, res, dt

    t1 = time.time()
    if args.via == "batch":
        results = run_batch(args, jobs, scenes)
    elif args.via == "http":
        results = run_http(args, jobs, scenes)
    else:
        with ThreadPoolExecutor(args.jobs) as ex:
            results = list(ex.map(work, jobs))
    t_run = time.time() - t1

    st = collections.defaultdict(lambda: collections.Counter())
    records = []
    errors = 0
    for (i, kind, cmd, extra, meta), res, dt in results:
        sc = scenes[i]
        fmt = "jpg" if sc["image"].endswith(".jpg") else "png"
        W, H = sc["width"], sc["height"]
        rec = {"scene": i, "format": fmt, "task": kind, "args": extra, "seconds": round(dt, 2), "output": res,
               "truth": S.caption(sc), "size": [W, H]}
        if "error" in res:
            errors += 1
            rec["ok"] = False
            records.append(rec)
            for k in ("all", fmt):
                st[(kind, k)]["n"] += 1
            continue
        for k in ("all", fmt):
            s = st[(kind, k)]
            if kind == "caption":
                ok = caption_multiset(res.get("caption", "")) == truth_multiset(sc)
                s["n"] += 1
                s["ok"] += ok
            elif kind == "count":
                nums = [int(x) for x in re.findall(r"\d+", res.get("answer", ""))]
                ok = nums == [meta]
                s["n"] += 1
                s["ok"] += ok
            elif kind == "color":
                words = set(re.findall(r"[a-z]+", res.get("answer", "").lower())) & set(S.COLOR_NAMES)
                ok = words == {meta}
                s["n"] += 1
                s["ok"] += ok
            elif kind == "detect":
                true = [S.bbox(o) for o in sc["objects"] if S.matches(o, meta)]
                pred = [(b["x_min"] * W, b["y_min"] * H, b["x_max"] * W, b["y_max"] * H) for b in res["objects"]]
                tm, pu = match_boxes(pred, true)
                s["true"] += len(true)
                s["matched"] += tm
                s["pred"] += len(pred)
                s["unmatched"] += pu
                ok = tm == len(true) and pu == 0
                s["n"] += 1
                s["ok"] += ok
            elif kind == "point":
                objs = [o for o in sc["objects"] if S.matches(o, meta)]
                pts = [(p["x"] * W, p["y"] * H) for p in res["points"]]
                hit = sum(any(S.point_inside(o, x, y) for x, y in pts) for o in objs)
                out = sum(not any(S.point_inside(o, x, y) for o in objs) for x, y in pts)
                s["true"] += len(objs)
                s["hit"] += hit
                s["pred"] += len(pts)
                s["outside"] += out
                ok = hit == len(objs) and out == 0 and len(pts) == len(objs)
                s["n"] += 1
                s["ok"] += ok
        rec["ok"] = bool(ok)
        records.append(rec)

    def pct(a, b):
        return f"{100.0 * a / b:6.1f}%" if b else "    n/a"

    print(f"scenes: {args.n} (half JPEG q{args.quality}), seed {args.seed}, model {args.model}")
    print(f"tycho calls: {len(jobs)} via {args.via} ({errors} errors), {args.jobs} parallel; render {t_render:.0f}s, "
          f"run {t_run:.0f}s ({sum(r[2] for r in results) / max(1, len(results)):.2f}s per call)")
    print()
    print("| metric | all | PNG | JPEG | target |")
    print("|---|---|---|---|---|")
    rows = [("caption: exact object multiset", "caption", "ok", "n", ">= 90%"),
            ("counting: answer is the right digit", "count", "ok", "n", ">= 95%"),
            ("colour: right colour", "color", "ok", "n", ">= 95%"),
            ("detect: true objects matched (IoU >= 0.5)", "detect", "matched", "true", ">= 90%"),
            ("detect: boxes unmatched", "detect", "unmatched", "pred", "<= 10%"),
            ("point: true objects with a point inside", "point", "hit", "true", ">= 90%"),
            ("point: points outside every matching object", "point", "outside", "pred", "<= 10%")]
    summary = {}
    for name, kind, a, b, target in rows:
        cells = []
        for k in ("all", "png", "jpg"):
            s = st[(kind, k)]
            cells.append(pct(s[a], s[b]) + f" ({s[a]}/{s[b]})")
        summary[name] = {"all": [st[(kind, "all")][a], st[(kind, "all")][b]]}
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {target} |")
    print()
    for kind in ("detect", "point"):
        s = st[(kind, "all")]
        print(f"{kind}: queries fully right {s['ok']}/{s['n']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
