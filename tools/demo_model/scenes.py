"""Synthetic shapes scenes: the one definition shared by training and evaluation.

A scene is a canvas (width, height in [256, 640]) with a plain background and
1..4 objects (circle, square, triangle; red, green, blue, yellow; size d in
[40, 120] px), bounding boxes at least 8 px apart and inside the canvas.

Rasterisation is exact and hard-edged: a pixel (px, py) belongs to a shape when
its centre (px + 0.5, py + 0.5) passes an integer test (no antialiasing):
  square   x0 <= px < x0 + d and y0 <= py < y0 + d
  circle   (2px + 1 - 2x0 - d)^2 + (2py + 1 - 2y0 - d)^2 <= d^2
  triangle (apex up, base d at the bottom, height d)
           y0 <= py < y0 + d and 2|2px + 1 - 2x0 - d| <= 2py + 1 - 2y0
Two implementations produce identical pixels: render_py (pure Python, used by
evaluate.py on a machine without numpy) and render_np (numpy, used by
train.py). `python3 scenes.py --selftest` checks they agree (needs numpy).

Scene sampling uses only random.Random, so both paths see identical scenes.
"""
import math
import random
import struct
import zlib

BACKGROUNDS = [(255, 255, 255), (235, 235, 235), (250, 240, 220)]
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 200, 40)}
COLOR_NAMES = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]
NUM_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
GAP = 8


def sample_scene(rng):
    """A scene dict: width, height, bg (rgb), objects [{shape, color, x0, y0, d}]."""
    while True:
        w = rng.randint(256, 640)
        h = rng.randint(256, 640)
        bg = BACKGROUNDS[rng.randrange(len(BACKGROUNDS))]
        n = rng.randint(1, 4)
        objs = []
        tries = 0
        while len(objs) < n and tries < 200:
            tries += 1
            d = rng.randint(40, 120)
            if d > w or d > h:
                continue
            x0 = rng.randint(0, w - d)
            y0 = rng.randint(0, h - d)
            ok = True
            for o in objs:
                sep = (x0 + d + GAP <= o["x0"] or o["x0"] + o["d"] + GAP <= x0 or
                       y0 + d + GAP <= o["y0"] or o["y0"] + o["d"] + GAP <= y0)
                if not sep:
                    ok = False
                    break
            if ok:
                objs.append({"shape": SHAPES[rng.randrange(3)], "color": COLOR_NAMES[rng.randrange(4)],
                             "x0": x0, "y0": y0, "d": d})
        if len(objs) == n:
            return {"width": w, "height": h, "bg": bg, "objects": objs}


def inside(shape, x0, y0, d, px, py):
    """Integer pixel-centre test (px, py integers)."""
    if not (x0 <= px < x0 + d and y0 <= py < y0 + d):
        return False
    if shape == "square":
        return True
    if shape == "circle":
        a = 2 * px + 1 - 2 * x0 - d
        b = 2 * py + 1 - 2 * y0 - d
        return a * a + b * b <= d * d
    return 2 * abs(2 * px + 1 - 2 * x0 - d) <= 2 * py + 1 - 2 * y0


def point_inside(o, x, y):
    """Is the continuous point (x, y) in pixels inside object o (pixel containing it belongs)?"""
    return inside(o["shape"], o["x0"], o["y0"], o["d"], int(math.floor(x)), int(math.floor(y)))


def render_py(scene):
    """Pure Python: returns bytes of height*width*3 RGB."""
    w, h = scene["width"], scene["height"]
    img = bytearray(bytes(scene["bg"]) * (w * h))
    for o in scene["objects"]:
        col = bytes(COLORS[o["color"]])
        x0, y0, d, sh = o["x0"], o["y0"], o["d"], o["shape"]
        for py in range(y0, y0 + d):
            row = py * w
            for px in range(x0, x0 + d):
                if inside(sh, x0, y0, d, px, py):
                    i = (row + px) * 3
                    img[i:i + 3] = col
    return bytes(img)


def render_np(scene):
    """numpy: returns uint8 array (height, width, 3), identical to render_py."""
    import numpy as np
    w, h = scene["width"], scene["height"]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = np.array(scene["bg"], np.uint8)
    for o in scene["objects"]:
        x0, y0, d, sh = o["x0"], o["y0"], o["d"], o["shape"]
        py = np.arange(y0, y0 + d, dtype=np.int64)[:, None]
        px = np.arange(x0, x0 + d, dtype=np.int64)[None, :]
        if sh == "square":
            m = np.ones((d, d), bool)
        elif sh == "circle":
            a = 2 * px + 1 - 2 * x0 - d
            b = 2 * py + 1 - 2 * y0 - d
            m = a * a + b * b <= d * d
        else:
            m = 2 * np.abs(2 * px + 1 - 2 * x0 - d) <= 2 * py + 1 - 2 * y0
        sub = img[y0:y0 + d, x0:x0 + d]
        sub[m] = np.array(COLORS[o["color"]], np.uint8)
    return img


def write_png(path, width, height, rgb):
    """Minimal RGB8 PNG writer (stdlib zlib)."""
    raw = bytearray()
    stride = width * 3
    for y in range(height):
        raw.append(0)
        raw += rgb[y * stride:(y + 1) * stride]

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---- language -------------------------------------------------------------------------------

def plural(shape, n):
    return shape + ("s" if n != 1 else "")


def caption(scene):
    """Canonical caption: groups sorted by colour then shape, with counts."""
    counts = {}
    for o in scene["objects"]:
        k = (COLOR_NAMES.index(o["color"]), SHAPES.index(o["shape"]))
        counts[k] = counts.get(k, 0) + 1
    parts = [f"{NUM_WORDS[n]} {COLOR_NAMES[c]} {plural(SHAPES[s], n)}" for (c, s), n in sorted(counts.items())]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def count_question_shape(shape):
    return f"How many {shape}s are there?"


def count_question_color(color):
    return f"How many {color} shapes are there?"


def color_question(shape):
    return f"What color is the {shape}?"


def matches(o, obj_query):
    """Does object o match a detect/point query like 'circle' or 'red shape'?"""
    if obj_query in SHAPES:
        return o["shape"] == obj_query
    color = obj_query.split()[0]
    return o["color"] == color


def bbox(o):
    """Pixel bounding box [x_min, y_min, x_max, y_max) of an object."""
    return (o["x0"], o["y0"], o["x0"] + o["d"], o["y0"] + o["d"])


# ---- Moondream tiling (moondream.md §4), as tycho computes it ---------------------------------

def select_tiling(height, width, window=266, max_crops=12):
    h = float(height - 112)
    w = float(width - 112)
    if h <= window or w <= window:
        return (1, 1)
    min_h = math.ceil(h / window)
    min_w = math.ceil(w / window)
    if min_h * min_w > max_crops:
        r = math.sqrt(max_crops / (min_h * min_w))
        return (max(1, math.floor(min_h * r)), max(1, math.floor(min_w * r)))
    h_t = math.floor(math.sqrt(max_crops * h / w))
    w_t = math.floor(math.sqrt(max_crops * w / h))
    h_t = max(h_t, min_h)
    w_t = max(w_t, min_w)
    if h_t * w_t > max_crops:
        if w_t > h_t:
            w_t = math.floor(max_crops / h_t)
        else:
            h_t = math.floor(max_crops / w_t)
    return (max(1, h_t), max(1, w_t))


def _selftest():
    import numpy as np
    rng = random.Random(1234)
    for i in range(30):
        s = sample_scene(rng)
        a = np.frombuffer(render_py(s), np.uint8).reshape(s["height"], s["width"], 3)
        b = render_np(s)
        assert (a == b).all(), f"scene {i} differs"
    print("scenes selftest: render_py == render_np on 30 scenes")


if __name__ == "__main__":
    import sys
    if "--selftest" in sys.argv:
        _selftest()
