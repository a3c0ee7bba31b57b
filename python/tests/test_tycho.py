"""Tests of the Python package (python/tycho) over libtycho.so.

They run the golden tiny Moondream 2 (tests/data/golden/md2-tiny: random
weights, the reference's outputs for greedy decoding in expected.json), so
answers are gibberish but exact. Environment: TYCHO_LIB (the library; else
the package's own search), TYCHO_TEST_DATA (else the repository's tests/data),
TYCHO_TEST_QUICK=1 (sanitizer builds: fewer, cheaper cases).
"""

import base64
import concurrent.futures
import ctypes
import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import types

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import tycho  # noqa: E402
from tycho import _lib  # noqa: E402

DATA = pathlib.Path(os.environ.get("TYCHO_TEST_DATA") or HERE.parent.parent / "tests" / "data")
GOLDEN = DATA / "golden"
MODEL = GOLDEN / "md2-tiny"
IMAGES = GOLDEN / "images"
QUICK = os.environ.get("TYCHO_TEST_QUICK") == "1"
GREEDY = {"temperature": 0.0, "max_tokens": 20}

with open(MODEL / "expected.json") as _f:
    CASES = {c["id"]: c for c in json.load(_f)["cases"]}


def plain_env(**extra):
    """The environment for child processes, without a sanitizer preload."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    env.update(extra)
    return env


def image_path(name):
    for ext in (".png", ".jpg"):
        p = IMAGES / (name + ext)
        if p.exists():
            return p
    raise FileNotFoundError(name)


B = str(image_path("b_378x378"))  # one crop: the cheapest image
C = str(image_path("c_96x64"))


def expected(case_id):
    c = CASES[case_id]
    r = c["result"]
    return {"caption": r} if c["skill"] == "caption" else r


def call(md, case):
    """Runs one golden case through the Moondream-style method."""
    img = str(image_path(case["image"])) if case["image"] else None
    s = case.get("settings")
    if case["skill"] == "caption":
        return md.caption(img, length=case.get("length", "normal"), settings=s)
    if case["skill"] == "query":
        return md.query(
            img, case["question"], settings=s, reasoning=case.get("reasoning", False),
            spatial_refs=case.get("spatial_refs"),
        )
    return getattr(md, case["skill"])(img, case["object"], settings=s)


@pytest.fixture(scope="module")
def md():
    with tycho.vl(model=str(MODEL), device="cpu") as m:
        yield m


# ---- the package itself -----------------------------------------------------


def test_import_and_surface():
    assert tycho.__version__
    for name in ("caption", "query", "detect", "point", "encode_image", "close"):
        assert callable(getattr(tycho.VL, name))
    assert issubclass(tycho.InvalidArgumentError, tycho.TychoError)
    assert issubclass(tycho.InvalidArgumentError, ValueError)
    assert issubclass(tycho.FormatError, ValueError)
    e = tycho.TychoError(tycho.E_LIMIT, "too big")
    assert e.code == tycho.E_LIMIT and e.status == "limit" and "too big" in str(e)


def test_import_from_repo_root():
    root = HERE.parent.parent
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0,'python'); import tycho; print(tycho.vl.__name__)"],
        cwd=root, capture_output=True, text=True, env=plain_env(TYCHO_LIB="/nonexistent/libtycho.so"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "vl"


def test_struct_layouts_match_header():
    """The ctypes structs have the header's sizes and offsets (compiled with cc)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    header = HERE.parent.parent / "include" / "tycho.h"
    if not cc or not header.exists():
        pytest.skip("no C compiler or header")
    structs = {
        "tycho_options": _lib.Options,
        "tycho_request_params": _lib.RequestParams,
        "tycho_engine_stats": _lib.EngineStats,
        "tycho_metrics": _lib.Metrics,
        "tycho_error": _lib.Error,
        "tycho_spatial_ref": _lib.SpatialRef,
    }
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "tycho.h"', "int main(void) {"]
    want = []
    for cname, py in structs.items():
        lines.append('printf("%%zu\\n", sizeof(%s));' % cname)
        want.append(ctypes.sizeof(py))
        for fname, _ in py._fields_:
            lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (cname, fname))
            want.append(getattr(py, fname).offset)
    lines.append("return 0; }")
    tmp = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / ("tycho_layout_%d" % os.getpid())
    tmp.mkdir(exist_ok=True)
    try:
        (tmp / "l.c").write_text("\n".join(lines))
        subprocess.run(
            [cc, "-I", str(header.parent), str(tmp / "l.c"), "-o", str(tmp / "l")], check=True, env=plain_env()
        )
        out = subprocess.run([str(tmp / "l")], capture_output=True, text=True, env=plain_env())
        got = [int(x) for x in out.stdout.split()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert got == want


def test_bad_lib_path():
    with pytest.raises(OSError):
        tycho.vl(model=str(MODEL), lib_path="/nonexistent/libtycho.so")


def test_bad_model():
    with pytest.raises(tycho.TychoError) as ei:
        tycho.vl(model=str(DATA / "no-such-model"))
    assert ei.value.code in (tycho.E_NOT_FOUND, tycho.E_IO)
    with pytest.raises(TypeError):
        tycho.vl(model=str(MODEL), no_such_option=1)


# ---- golden results ------------------------------------------------------------

GOLDEN_CASES = [
    "b_378x378.caption.short",
    "c_96x64.caption.normal",
    "c_96x64.query",
    "c_96x64.query.reasoning",
    "c_96x64.detect",
    "b_378x378.point",
    "textonly.query",
]
if not QUICK:
    GOLDEN_CASES += [
        "g_400x300_rgba.caption.long",
        "f_300x200_gray.query",
        "g_400x300_rgba.query.spatial",
        "d_1024x768.detect",
        "a_640x480.point",
        "e_500x2000.query.reasoning",
    ]


@pytest.mark.parametrize("case_id", GOLDEN_CASES)
def test_golden(md, case_id):
    r = call(md, CASES[case_id])
    assert isinstance(r, dict)
    assert r == expected(case_id)
    assert r.finish_reason in ("stop", "length")
    m = r.metrics
    for k in ("input_tokens", "output_tokens", "cached_tokens", "prefill_time_ms", "decode_time_ms", "ttft_ms"):
        assert k in m
    if CASES[case_id]["skill"] in ("caption", "query"):
        assert m["output_tokens"] >= 1


def test_result_shapes(md):
    r = md.caption(B, settings=GREEDY)
    assert set(r) == {"caption"} and isinstance(r["caption"], str)
    r = md.query(B, "What is this?", settings=GREEDY)
    assert set(r) == {"answer"} and isinstance(r["answer"], str)
    r = md.query(B, "What is this?", settings=GREEDY, reasoning=True)
    assert set(r) == {"answer", "reasoning"}
    assert set(r["reasoning"]) == {"text", "grounding"}
    for g in r["reasoning"]["grounding"]:
        assert set(g) == {"start_idx", "end_idx", "points"}
    r = md.detect(B, "square", settings={"max_objects": 4})
    assert set(r) == {"objects"}
    for o in r["objects"]:
        assert set(o) == {"x_min", "y_min", "x_max", "y_max"}
    r = md.point(B, "square", settings={"max_objects": 4})
    assert set(r) == {"points"}
    for p in r["points"]:
        assert set(p) == {"x", "y"}
    json.dumps(r)  # plain JSON values


# ---- image inputs -----------------------------------------------------------------


def test_image_inputs(md):
    want = expected("b_378x378.caption.short")
    data = pathlib.Path(B).read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    for image in (B, pathlib.Path(B), data, bytearray(data), memoryview(data), uri):
        assert md.caption(image, length="short", settings=GREEDY) == want, type(image)


def test_moondream_base64_encoded_image(md):
    class Base64EncodedImage:  # the shape of moondream.types.Base64EncodedImage
        def __init__(self, image_url):
            self.image_url = image_url

    data = pathlib.Path(C).read_bytes()
    img = Base64EncodedImage("data:image/png;base64," + base64.b64encode(data).decode())
    assert md.query(img, "Describe the colors.", settings=GREEDY) == expected("c_96x64.query")


def test_pil_images(md):
    Image = pytest.importorskip("PIL.Image")
    # The reference decodes with PIL's convert("RGB"): RGBA and gray images
    # passed as PIL images give its exact answers.
    cases = ["b_378x378.caption.short", "g_400x300_rgba.caption.long", "f_300x200_gray.detect"]
    for case_id in cases:
        case = CASES[case_id]
        with Image.open(image_path(case["image"])) as im:
            im.load()
            assert im.mode == {"b": "RGB", "g": "RGBA", "f": "L"}[case_id[0]]
            if case["skill"] == "caption":
                r = md.caption(im, length=case["length"], settings=case["settings"])
            else:
                r = md.detect(im, case["object"], settings=case["settings"])
        assert r == expected(case_id), case_id


def test_encode_image(md):
    enc = md.encode_image(C)
    assert isinstance(enc, tycho.EncodedImage)
    assert len(enc.image_key) == 32 and int(enc.image_key, 16) >= 0
    assert md.encode_image(enc) is enc
    before = md.stats()
    assert md.query(enc, "Describe the colors.", settings=GREEDY) == expected("c_96x64.query")
    assert md.detect(enc, "line", settings={"max_objects": 4}) == expected("c_96x64.detect")
    assert md.caption(enc, length="normal", settings=GREEDY) == expected("c_96x64.caption.normal")
    after = md.stats()
    assert after["vision_images"] == before["vision_images"]  # the tower did not run again
    assert after["prefix_hits"] >= before["prefix_hits"] + 3


def test_encoded_image_unknown_key(md):
    with pytest.raises(tycho.NotFoundError) as ei:
        md.caption(tycho.EncodedImage("0123456789abcdef" * 2), settings=GREEDY)
    assert ei.value.code == tycho.E_NOT_FOUND
    assert isinstance(ei.value, tycho.TychoError)
    with pytest.raises(ValueError):
        md.caption(tycho.EncodedImage("not a key"), settings=GREEDY)


def test_zero_image_key_after_text_only_query():
    """The all-zero key is not the text-only prefix (in a child process: a crash fails the test)."""
    code = (
        "import sys; sys.path.insert(0, %r); import tycho\n"
        "md = tycho.vl(model=%r)\n"
        "md.query(None, 'Why is the sky blue?', settings={'temperature': 0.0, 'max_tokens': 5})\n"
        "try:\n"
        "    md.caption(tycho.EncodedImage('0' * 32), settings={'max_tokens': 5})\n"
        "except tycho.NotFoundError:\n"
        "    print('not found')\n"
    ) % (str(HERE.parent), str(MODEL))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "not found", (out.returncode, out.stdout, out.stderr[-2000:])


def test_encoded_image_reencoded_elsewhere(md):
    """An EncodedImage used where its key is not cached (another engine) is
    encoded again from the image it keeps."""
    enc = md.encode_image(B)
    with tycho.vl(model=str(MODEL)) as other:
        assert other.caption(enc, length="short", settings=GREEDY) == expected("b_378x378.caption.short")
        assert other.stats()["vision_images"] == 1


# ---- streaming ------------------------------------------------------------------


def test_stream_caption(md):
    s = {"temperature": 0.0, "max_tokens": 60}
    full = md.caption(B, length="long", settings=s)["caption"]
    r = md.caption(B, length="long", stream=True, settings=s)
    assert set(r) == {"caption"}
    gen = r["caption"]
    assert isinstance(gen, types.GeneratorType)
    chunks = list(gen)
    assert all(isinstance(c, str) and c for c in chunks)
    assert "".join(chunks) == full
    assert len(chunks) >= 3, chunks
    assert r.finish_reason in ("stop", "length")
    assert r.metrics["output_tokens"] >= 1


def test_stream_golden(md):
    for case_id in ("b_378x378.caption.short", "c_96x64.query", "textonly.query"):
        case = CASES[case_id]
        img = str(image_path(case["image"])) if case["image"] else None
        if case["skill"] == "caption":
            r = md.caption(img, length=case["length"], stream=True, settings=case["settings"])
            assert "".join(r["caption"]) == case["result"]
        else:
            r = md.query(img, case["question"], stream=True, settings=case["settings"])
            assert "".join(r["answer"]) == case["result"]["answer"]


def test_stream_query_with_reasoning(md):
    case = CASES["c_96x64.query.reasoning"]
    r = md.query(C, case["question"], stream=True, settings=case["settings"], reasoning=True)
    assert "".join(r["answer"]) == case["result"]["answer"]
    assert r["reasoning"] == case["result"]["reasoning"]  # added when the stream ends


def test_stream_encoded_image(md):
    enc = md.encode_image(B)
    r = md.caption(enc, length="short", stream=True, settings=GREEDY)
    assert "".join(r["caption"]) == expected("b_378x378.caption.short")["caption"]


def test_stream_closed_early_and_abandoned(md):
    s = {"temperature": 0.0, "max_tokens": 200}
    gen = md.caption(B, length="long", stream=True, settings=s)["caption"]
    first = next(gen)
    assert first
    gen.close()  # cancels the request
    abandoned = md.query(B, "What is this?", stream=True, settings=s)  # never read
    del abandoned
    gc.collect()
    # the engine still answers, and nothing stays running
    assert md.caption(B, length="short", settings=GREEDY) == expected("b_378x378.caption.short")
    st = md.stats()
    assert st["running"] == 0 and st["waiting"] == 0


def test_stream_error_raises_at_call(md):
    with pytest.raises(tycho.FormatError):
        md.caption(b"not an image at all", stream=True)
    with pytest.raises(ValueError):
        md.query(B, "", stream=True)


# ---- settings ---------------------------------------------------------------------


def test_settings(md):
    r = md.caption(B, settings={"temperature": 0.0, "max_tokens": 3})
    assert r.finish_reason == "length"
    assert r.metrics["output_tokens"] == 3
    assert expected("b_378x378.caption.normal")["caption"].startswith(r["caption"])
    r = md.detect(C, "line", settings={"max_objects": 1})
    assert r == {"objects": expected("c_96x64.detect")["objects"][:1]}
    r = md.point(B, "square", settings={"max_objects": 2})
    assert r == {"points": expected("b_378x378.point")["points"][:2]}
    # sampling with a seed repeats
    s = {"temperature": 1.0, "top_p": 0.9, "max_tokens": 12, "seed": 1234}
    assert md.query(B, "What is this?", settings=s) == md.query(B, "What is this?", settings=s)
    # None values mean "not given"
    assert md.caption(B, length="short", settings={**GREEDY, "top_p": None}) == expected("b_378x378.caption.short")


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"max_tokens": 0},
        {"max_tokens": "10"},
        {"max_tokens": 2.5},
        {"max_tokens": True},
        {"max_objects": 0},
        {"temperature": float("nan")},
        {"seed": -1},
        {"temprature": 0.5},
        "temperature=0",
    ],
)
def test_bad_settings(md, settings):
    with pytest.raises(ValueError) as ei:
        md.caption(B, settings=settings)
    assert isinstance(ei.value, tycho.TychoError) and ei.value.code == tycho.E_ARG


# ---- errors ------------------------------------------------------------------------


def test_errors(md):
    with pytest.raises(tycho.FormatError) as ei:
        md.caption(b"\x89PNG\r\n\x1a\n but not really")
    assert ei.value.code == tycho.E_FORMAT and ei.value.message
    with pytest.raises(ValueError):
        md.detect(b"garbage", "circle")
    with pytest.raises(FileNotFoundError):
        md.caption(str(IMAGES / "no-such.png"))
    with pytest.raises(TypeError):
        md.caption(12345)
    with pytest.raises(ValueError):
        md.caption("data:image/png;base64,@@@")
    with pytest.raises(ValueError):
        md.query(B)  # question is required
    for q in ("", "   "):
        with pytest.raises(ValueError) as ei:
            md.query(B, q)
        assert ei.value.code == tycho.E_ARG
    with pytest.raises(ValueError):
        md.caption(B, length="medium")
    for obj in ("", None):
        with pytest.raises(ValueError):
            md.detect(B, obj)
        with pytest.raises(ValueError):
            md.point(B, obj)
    with pytest.raises(TypeError):
        md.detect(B, 7)
    with pytest.raises(ValueError):
        md.query(B, "What?", spatial_refs=[[0.5]])
    with pytest.raises(ValueError):
        md.query(B, "What?", spatial_refs=[[1.5, 0.5]])
    with pytest.raises(ValueError):
        md.query(B, "What?", spatial_refs=[[0.6, 0.2, 0.4, 0.8]])  # x_min > x_max
    with pytest.raises(ValueError):
        md.caption(b"")
    with pytest.raises(tycho.LimitError) as ei:  # prompt + max_tokens over the context
        md.caption(B, settings={"max_tokens": 100000})
    assert ei.value.code == tycho.E_LIMIT and isinstance(ei.value, ValueError)
    # the engine is fine afterwards
    assert md.caption(B, length="short", settings=GREEDY) == expected("b_378x378.caption.short")


# ---- threads ------------------------------------------------------------------------


def test_concurrent_calls_match_sequential(md):
    enc = md.encode_image(C)
    jobs = [
        lambda: md.caption(B, length="short", settings=GREEDY),
        lambda: md.query(C, "Describe the colors.", settings=GREEDY),
        lambda: md.detect(C, "line", settings={"max_objects": 4}),
        lambda: md.point(B, "square", settings={"max_objects": 4}),
        lambda: md.query(None, "Why is the sky blue?", settings=GREEDY),
        lambda: md.query(enc, "Describe the colors.", settings=GREEDY, reasoning=True),
        lambda: {"caption": "".join(md.caption(C, stream=True, settings=GREEDY)["caption"])},
        lambda: md.caption(B, length="long", settings={"temperature": 0.0, "max_tokens": 40}),
    ]
    if not QUICK:
        jobs = jobs * 2
    sequential = [job() for job in jobs]
    assert sequential[0] == expected("b_378x378.caption.short")
    assert sequential[5] == expected("c_96x64.query.reasoning")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as ex:
        start = threading.Barrier(len(jobs))

        def run(job):
            start.wait()
            return job()

        concurrent_results = list(ex.map(run, jobs))
    assert concurrent_results == sequential


# ---- options and lifetime -------------------------------------------------------------


def test_options():
    with tycho.vl(
        model=MODEL, device="cpu", threads=1, max_batch_size=2, kv_cache_pages=256, prefix_cache=False
    ) as m:
        assert m.caption(B, length="short", settings=GREEDY) == expected("b_378x378.caption.short")
        st = m.stats()
        assert st["max_batch_size"] == 2
        assert st["kv_pages_total"] == 256
    with pytest.raises(tycho.TychoError):
        tycho.vl(model=str(MODEL), device="tpu")
    with pytest.raises(tycho.InvalidArgumentError, match="precision"):
        tycho.vl(model=str(MODEL), precision="fp8")
    with pytest.raises(tycho.TychoError, match="cuda"):  # the CPU computes in f32 only
        tycho.vl(model=str(MODEL), precision="bf16")
    with tycho.vl(model=str(MODEL), precision="f32", threads=1) as m:
        assert m.caption(B, length="short", settings=GREEDY) == expected("b_378x378.caption.short")


def test_close():
    m = tycho.vl(model=str(MODEL))
    gen = m.caption(B, stream=True, settings={"temperature": 0.0, "max_tokens": 500})["caption"]
    m.close()
    assert m.closed
    m.close()  # twice is fine
    with pytest.raises(tycho.TychoError):
        m.caption(B)
    # a stream cut by close ends, with its text so far or a CancelledError
    try:
        for _ in gen:
            pass
    except tycho.CancelledError:
        pass
    with tycho.vl(model=str(MODEL)) as m2:
        pass
    assert m2.closed
    m3 = tycho.vl(model=str(MODEL))
    del m3
    gc.collect()
