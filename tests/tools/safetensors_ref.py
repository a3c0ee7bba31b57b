#!/usr/bin/env python3
"""An independent safetensors reader/writer (Python stdlib only) used as the
oracle for `tycho inspect`. It prints the same JSON lines as `tycho inspect
--json --values N` and can split a checkpoint into shards with an index.

  safetensors_ref.py dump FILE N            -> JSON lines, name order
  safetensors_ref.py shard FILE OUTDIR K    -> OUTDIR/model-0000i-of-0000K.safetensors + index
"""
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


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "shard":
        shard(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("unknown command")
