#!/usr/bin/env python3
"""An independent safetensors reader/writer (Python stdlib only) used as the
oracle for `tycho inspect`. It prints the same JSON lines as `tycho inspect
--json --values N` and can split a checkpoint into shards with an index.

  safetensors_ref.py dump FILE N            -> JSON lines, name order
  safetensors_ref.py shard FILE OUTDIR K    -> OUTDIR/model-0000i-of-0000K.safetensors + index
  safetensors_ref.py drop FILE OUT NAME     -> OUT without tensor NAME
  safetensors_ref.py legacy FILE OUT [--fused-tau]
                                            -> OUT with the legacy training-checkpoint names
                                               (moondream.md 3.2, "._orig_mod" in some, features transposed;
                                               Moondream 3 as 3.4: tau_wq/tau_wv/tau_alpha or fused tau_wqwv,
                                               gate, mlp.experts, mlp.output_experts, coordinate_head, size_head)
  safetensors_ref.py reshape FILE OUT NAME D0,D1,...
                                            -> OUT with tensor NAME replaced by zeros of that shape
  safetensors_ref.py random CONFIG OUTDIR key=value...
                                            -> OUTDIR/config.json with the changes ("text.dim=96",
                                               "text.moe.num_experts=4") and a random bf16 checkpoint of those
                                               widths (HF names): Moondream 3 (tau, MoE from moe.start_layer)
                                               when the config's model_type is "moondream3", else Moondream 2.
                                               Options: region_head=md2|md3|md3-noln|none (default: md2 for
                                               Moondream 2, md3 for Moondream 3; md3-noln: single Linear decoders
                                               without region.ln), shards=K (K files + index)
"""
import random as rnd
import json
import struct
import sys

SIZES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "U8": 1, "I8": 1, "I32": 4, "I64": 8}


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    return header, buf[8 + n:]


def values(info, data):
    b, e = info["data_offsets"]
    raw = data[b:e]
    dt = info["dtype"]
    if dt == "BF16":
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                for (h,) in struct.iter_unpack("<H", raw)]
    if dt == "F16":
        return [v for (v,) in struct.iter_unpack("<e", raw)]
    if dt == "F32":
        return [v for (v,) in struct.iter_unpack("<f", raw)]
    if dt == "F64":
        return [v for (v,) in struct.iter_unpack("<d", raw)]
    return None


def dump(path, n_values):
    header, data = read(path)
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        out = {"name": name, "dtype": info["dtype"], "shape": info["shape"]}
        vals = values(info, data)
        if vals is not None:
            out["values"] = vals[:n_values]
            s = 0.0
            for v in vals:  # same order as tycho: element order, float64
                s += v
            out["sum"] = "%.17g" % s
        print(json.dumps(out))


def write(path, tensors):
    """tensors: list of (name, info-without-offsets, raw bytes)."""
    header, off, blobs = {}, 0, []
    for name, info, raw in tensors:
        header[name] = dict(info, data_offsets=[off, off + len(raw)])
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def shard(path, outdir, k):
    header, data = read(path)
    names = sorted(n for n in header if n != "__metadata__")
    weight_map = {}
    for i in range(k):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, k)
        part = names[i::k]
        tensors = []
        for n in part:
            info = {"dtype": header[n]["dtype"], "shape": header[n]["shape"]}
            b, e = header[n]["data_offsets"]
            tensors.append((n, info, data[b:e]))
            weight_map[n] = fname
        write(outdir + "/" + fname, tensors)
    with open(outdir + "/model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": len(data)}, "weight_map": weight_map}, f)


def drop(path, out, name):
    header, data = read(path)
    tensors = []
    for n in sorted(k for k in header if k != "__metadata__" and k != name):
        b, e = header[n]["data_offsets"]
        tensors.append((n, {"dtype": header[n]["dtype"], "shape": header[n]["shape"]}, data[b:e]))
    write(out, tensors)


LEGACY = [  # canonical prefix -> legacy prefix, first match wins ("{i}" = layer)
    ("vision.patch_emb.", "vision_encoder.encoder.model.visual.patch_embed.linear."),
    ("vision.pos_emb", "vision_encoder.encoder.model.visual.pos_embed"),
    ("vision.post_ln.", "vision_encoder._orig_mod.encoder.model.visual.norm."),
    ("vision.proj_mlp.", "vision_encoder.projection.mlp."),
    ("vision.blocks.{i}.ln1.", "vision_encoder.encoder.model.visual.blocks.{i}.norm1."),
    ("vision.blocks.{i}.ln2.", "vision_encoder.encoder.model.visual.blocks.{i}.norm2."),
    ("vision.blocks.{i}.", "vision_encoder.encoder.model.visual.blocks.{i}."),
    ("text.wte", "text_model.transformer.embd.wte.weight"),
    ("text.blocks.{i}.attn.qkv.", "text_model._orig_mod.transformer.h.{i}.mixer.Wqkv."),
    ("text.blocks.{i}.attn.proj.", "text_model.transformer.h.{i}.mixer.out_proj."),
    ("text.blocks.{i}.attn.tau.wq", "text_model.transformer.h.{i}.tau_wq"),
    ("text.blocks.{i}.attn.tau.wv", "text_model.transformer.h.{i}.tau_wv"),
    ("text.blocks.{i}.attn.tau.alpha", "text_model.transformer.h.{i}.tau_alpha"),
    ("text.blocks.{i}.mlp.router.", "text_model.transformer.h.{i}.gate."),
    ("text.blocks.{i}.", "text_model.transformer.h.{i}."),
    ("text.post_ln.", "text_model.lm_head.ln."),
    ("text.lm_head.", "text_model.lm_head.linear."),
    ("region.coord_features", "region_model.coordinate_features.weight"),
    ("region.size_features", "region_model.size_features.weight"),
    ("region.coord_encoder.", "region_model.coordinate_encoder."),
    ("region.coord_decoder.fc", "region_model.coordinate_decoder.fc"),
    ("region.coord_decoder.", "region_model.coordinate_head."),
    ("region.size_decoder.fc", "region_model.size_decoder.fc"),
    ("region.size_decoder.", "region_model.size_head."),
    ("region.", "region_model."),
]


def legacy_name(canonical):
    import re
    for pat, leg in LEGACY:
        rx = "^" + re.escape(pat).replace(re.escape("{i}"), "([0-9]+)")
        m = re.match(rx, canonical)
        if m:
            out = leg.replace("{i}", m.group(1)) if m.groups() else leg
            return out + canonical[m.end():]
    raise ValueError(canonical)


def legacy(path, out, fused_tau=False):
    header, data = read(path)
    tensors = []
    tau = {}
    for n in sorted(k for k in header if k != "__metadata__"):
        info = header[n]
        b, e = info["data_offsets"]
        raw, shape = data[b:e], list(info["shape"])
        canonical = n[len("model."):] if n.startswith("model.") else n
        if canonical in ("region.coord_features", "region.size_features"):
            rows, cols = shape
            es = SIZES[info["dtype"]]
            raw = b"".join(raw[(r * cols + c) * es:(r * cols + c + 1) * es] for c in range(cols) for r in range(rows))
            shape = [cols, rows]
        name = legacy_name(canonical)
        if len(shape) == 3 and canonical.endswith(".mlp.fc1.weight"):  # MoE experts (3.4)
            name = name.replace(".mlp.fc1.weight", ".mlp.experts.weight")
        if len(shape) == 3 and canonical.endswith(".mlp.fc2.weight"):
            name = name.replace(".mlp.fc2.weight", ".mlp.output_experts.weight")
        if fused_tau and (name.endswith(".tau_wq") or name.endswith(".tau_wv")):
            tau[name] = (info, shape, raw)
            continue
        tensors.append((name, {"dtype": info["dtype"], "shape": shape}, raw))
    for name in sorted(k for k in tau if k.endswith(".tau_wq")):  # fused: wq rows, then wv rows
        info, shape, wq = tau[name]
        wv = tau[name[:-2] + "wv"][2]
        tensors.append((name + "wv", {"dtype": info["dtype"], "shape": [2 * shape[0], shape[1]]}, wq + wv))
    write(out, sorted(tensors, key=lambda t: t[0]))


def reshape(path, out, name, dims):
    header, data = read(path)
    tensors = []
    for n in sorted(k for k in header if k != "__metadata__"):
        info = header[n]
        b, e = info["data_offsets"]
        shape, raw = info["shape"], data[b:e]
        if n == name:
            shape = [int(x) for x in dims.split(",")]
            raw = bytes(_numel(shape) * SIZES[info["dtype"]])
        tensors.append((n, {"dtype": info["dtype"], "shape": shape}, raw))
    write(out, tensors)


def md2_shapes(c):
    """Tensor shapes of a Moondream 2 checkpoint for config c (moondream.md 3.1)."""
    t, v, r = c["text"], c["vision"], c["region"]
    d, vd, ff, vff = t["dim"], v["enc_dim"], t["ff_dim"], v["enc_ff_dim"]
    s = {"vision.patch_emb.weight": [vd, 588], "vision.patch_emb.bias": [vd], "vision.pos_emb": [1, 729, vd],
         "vision.post_ln.weight": [vd], "vision.post_ln.bias": [vd],
         "vision.proj_mlp.fc1.weight": [v["proj_inner_dim"], 2 * vd], "vision.proj_mlp.fc1.bias": [v["proj_inner_dim"]],
         "vision.proj_mlp.fc2.weight": [v["proj_out_dim"], v["proj_inner_dim"]],
         "vision.proj_mlp.fc2.bias": [v["proj_out_dim"]],
         "text.wte": [t["vocab_size"], d], "text.post_ln.weight": [d], "text.post_ln.bias": [d],
         "text.lm_head.weight": [t["vocab_size"], d], "text.lm_head.bias": [t["vocab_size"]],
         "region.coord_features": [1, r["coord_feat_dim"] // 2], "region.size_features": [2, r["size_feat_dim"] // 2],
         "region.coord_encoder.weight": [d, r["coord_feat_dim"]], "region.coord_encoder.bias": [d],
         "region.size_encoder.weight": [d, r["size_feat_dim"]], "region.size_encoder.bias": [d]}
    for which, out in (("coord", r["coord_out_dim"]), ("size", r["size_out_dim"])):
        s[f"region.{which}_decoder.fc1.weight"] = [r["inner_dim"], d]
        s[f"region.{which}_decoder.fc1.bias"] = [r["inner_dim"]]
        s[f"region.{which}_decoder.fc2.weight"] = [out, r["inner_dim"]]
        s[f"region.{which}_decoder.fc2.bias"] = [out]
    for i in range(v["enc_n_layers"]):
        p = f"vision.blocks.{i}."
        for ln in ("ln1", "ln2"):
            s[p + ln + ".weight"] = [vd]; s[p + ln + ".bias"] = [vd]
        for name, o, n in (("attn.qkv", 3 * vd, vd), ("attn.proj", vd, vd), ("mlp.fc1", vff, vd), ("mlp.fc2", vd, vff)):
            s[p + name + ".weight"] = [o, n]; s[p + name + ".bias"] = [o]
    for i in range(t["n_layers"]):
        p = f"text.blocks.{i}."
        s[p + "ln.weight"] = [d]; s[p + "ln.bias"] = [d]
        for name, o, n in (("attn.qkv", 3 * d, d), ("attn.proj", d, d), ("mlp.fc1", ff, d), ("mlp.fc2", d, ff)):
            s[p + name + ".weight"] = [o, n]; s[p + name + ".bias"] = [o]
    return s


def md3_shapes(c):
    """Moondream 3 (moondream.md 3.3): tau in every layer, MoE from moe.start_layer."""
    s = md2_shapes(c)
    t, moe = c["text"], c["text"].get("moe", {})
    d, h = t["dim"], t["n_heads"]
    qkv = 3 * d
    start = moe.get("start_layer", t["n_layers"]) if moe else t["n_layers"]
    for i in range(t["n_layers"]):
        p = f"text.blocks.{i}."
        s[p + "attn.tau.wq"] = [h, qkv]
        s[p + "attn.tau.wv"] = [h, qkv]
        s[p + "attn.tau.alpha"] = [h]
        if i >= start:
            e, inner = moe["num_experts"], moe["expert_inner_dim"]
            for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
                del s[p + "mlp." + k]
            s[p + "mlp.router.weight"] = [e, d]
            s[p + "mlp.router.bias"] = [e]
            s[p + "mlp.fc1.weight"] = [e, 2 * inner, d]
            s[p + "mlp.fc2.weight"] = [e, d, inner]
    return s


def region_shapes(s, c, head):
    """Replaces md2_shapes' region decoders by Moondream 3's (head "md3", "md3-noln": without
    region.ln) or drops the region ("none")."""
    r, d = c["region"], c["text"]["dim"]
    if head == "md2":
        return s
    for k in [k for k in s if k.startswith("region.")]:
        if head == "none" or "_decoder." in k:
            del s[k]
    if head.startswith("md3"):
        if head == "md3":
            s["region.ln.weight"] = [d]
            s["region.ln.bias"] = [d]
        s["region.coord_decoder.weight"] = [r["coord_out_dim"], d]
        s["region.coord_decoder.bias"] = [r["coord_out_dim"]]
        s["region.size_decoder.weight"] = [r["size_out_dim"], d]
        s["region.size_decoder.bias"] = [r["size_out_dim"]]
    return s


def random_model(config_path, outdir, changes, seed=5):
    full = json.load(open(config_path))
    c = full.get("config", full)
    opts = {}
    for ch in changes:
        key, value = ch.split("=")
        if "." not in key:
            opts[key] = value
            continue
        path = key.split(".")
        sec = c
        for part in path[:-1]:
            sec = sec.setdefault(part, {})
        sec[path[-1]] = int(value)
    json.dump(full, open(outdir + "/config.json", "w"))
    md3 = full.get("model_type") == "moondream3"
    for sec, defaults in (("region", {"coord_feat_dim": 256, "coord_out_dim": 1024, "size_feat_dim": 512,
                                      "size_out_dim": 2048, "inner_dim": 8192}),):
        for k, v in defaults.items():
            c.setdefault(sec, {}).setdefault(k, v)
    head = opts.get("region_head", "md3" if md3 else "md2")
    shapes = md3_shapes(c) if md3 else md2_shapes(c)
    shapes = sorted(region_shapes(shapes, c, head).items())
    g = rnd.Random(seed)
    total = sum(_numel(s) for _, s in shapes)
    # Real-size checkpoints (billions of values) reuse slices of one random pool
    # per fan-in: the values are meaningless either way, only the costs matter.
    pools = {}

    def make(name, shape):
        n = _numel(shape)
        fan_in = shape[-1] if len(shape) > 1 else 1
        scale = 1.0 if name.endswith(("ln.weight", "ln1.weight", "ln2.weight")) else fan_in ** -0.5
        if total < 20_000_000:
            return _bf16([g.gauss(0.0, 1.0) * scale for _ in range(n)])
        pool = pools.get(scale)
        if pool is None:
            pool = pools[scale] = _bf16([g.gauss(0.0, 1.0) * scale for _ in range(1 << 20)])
        start = g.randrange(0, len(pool) // 2) * 2
        reps = (2 * n + start) // len(pool) + 1
        return (pool * reps)[start:start + 2 * n] if reps < 64 else _tile(pool, start, 2 * n)

    items = [("model." + name, {"dtype": "BF16", "shape": shape}, 2 * _numel(shape), make) for name, shape in shapes]
    k = int(opts.get("shards", "1"))
    if k == 1:
        write_stream([(outdir + "/model.safetensors", items)])
        return
    files = ["model-%05d-of-%05d.safetensors" % (i + 1, k) for i in range(k)]
    weight_map = {it[0]: files[j % k] for j, it in enumerate(items)}  # name order, round robin, as `shard` does
    write_stream([(outdir + "/" + f, [it for it in items if weight_map[it[0]] == f]) for f in files])
    with open(outdir + "/model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": sum(it[2] for it in items)}, "weight_map": weight_map}, f)


def write_stream(files):
    """files: (path, items), items (name, info, nbytes, make(name, shape) -> bytes). Headers first,
    then one tensor in memory at a time, made in name order over all files (so the random values
    do not depend on how a checkpoint is split)."""
    outs = {}
    for path, items in files:
        header, off = {}, 0
        for name, info, nbytes, _ in items:
            header[name] = dict(info, data_offsets=[off, off + nbytes])
            off += nbytes
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        f = open(path, "wb")
        f.write(struct.pack("<Q", len(h)) + h)
        for name, *_ in items:
            outs[name] = f
    for name, info, nbytes, make in sorted((it for _, items in files for it in items), key=lambda it: it[0]):
        raw = make(name[len("model."):], info["shape"])
        assert len(raw) == nbytes
        outs[name].write(raw)
    for f in set(outs.values()):
        f.close()


def _numel(shape):
    n = 1
    for x in shape:
        n *= x
    return n


def _bf16(vals):
    return b"".join(struct.pack("<f", x)[2:] for x in vals)


def _tile(pool, start, nbytes):
    out = bytearray(nbytes)
    at, src = 0, start
    while at < nbytes:
        k = min(len(pool) - src, nbytes - at)
        out[at:at + k] = pool[src:src + k]
        at += k
        src = 0
    return bytes(out)


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "shard":
        shard(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "drop":
        drop(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "legacy":
        legacy(sys.argv[2], sys.argv[3], "--fused-tau" in sys.argv[4:])
    elif sys.argv[1] == "reshape":
        reshape(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "random":
        random_model(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("unknown command")
