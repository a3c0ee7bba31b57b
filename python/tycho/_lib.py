"""ctypes bindings of include/tycho.h (the C API of libtycho.so).

Every struct here mirrors the header field for field; keep them in step.
The library is loaded lazily (the first tycho.vl()), so `import tycho` works
without it.
"""

import ctypes
import ctypes.util
import os
import threading

# ---- status codes (tycho_status) --------------------------------------------

OK = 0
E_ARG = 1
E_IO = 2
E_FORMAT = 3
E_UNSUPPORTED = 4
E_LIMIT = 5
E_NOMEM = 6
E_NOT_FOUND = 7
E_BUSY = 8
E_TIMEOUT = 9
E_CANCELLED = 10

# tycho_status_name() of each code, for errors raised before the library is loaded.
STATUS_NAMES = {
    OK: "ok",
    E_ARG: "invalid_argument",
    E_IO: "io",
    E_FORMAT: "format",
    E_UNSUPPORTED: "unsupported",
    E_LIMIT: "limit",
    E_NOMEM: "out_of_memory",
    E_NOT_FOUND: "not_found",
    E_BUSY: "busy",
    E_TIMEOUT: "timeout",
    E_CANCELLED: "cancelled",
}

# tycho_skill
SKILL_CAPTION = 0
SKILL_QUERY = 1
SKILL_DETECT = 2
SKILL_POINT = 3
SKILL_ENCODE_IMAGE = 4


# ---- structs ---------------------------------------------------------------


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]


class Options(ctypes.Structure):
    _fields_ = [
        ("model", ctypes.c_char_p),
        ("device", ctypes.c_char_p),
        ("threads", ctypes.c_int),
        ("kv_cache_bytes", ctypes.c_int64),
        ("kv_cache_pages", ctypes.c_int),
        ("page_size", ctypes.c_int),
        ("max_batch_size", ctypes.c_int),
        ("max_batch_tokens", ctypes.c_int),
        ("prefix_cache", ctypes.c_int),
        ("max_queue", ctypes.c_int),
        ("precision", ctypes.c_char_p),
    ]


class EngineStats(ctypes.Structure):
    _fields_ = [
        ("waiting", ctypes.c_int),
        ("running", ctypes.c_int),
        ("kv_pages_total", ctypes.c_int),
        ("kv_pages_used", ctypes.c_int),
        ("kv_pages_cached", ctypes.c_int),
        ("prefix_hits", ctypes.c_uint64),
        ("prefix_misses", ctypes.c_uint64),
        ("cached_tokens", ctypes.c_uint64),
        ("vision_images", ctypes.c_uint64),
        ("requests_done", ctypes.c_uint64),
        ("requests_failed", ctypes.c_uint64),
        ("requests_cancelled", ctypes.c_uint64),
        ("input_tokens", ctypes.c_uint64),
        ("output_tokens", ctypes.c_uint64),
        ("steps", ctypes.c_uint64),
        ("page_size", ctypes.c_int),
        ("max_batch_size", ctypes.c_int),
        ("device_memory_used", ctypes.c_int64),
        ("device_memory_total", ctypes.c_int64),
    ]


class SpatialRef(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("v", ctypes.c_double * 4)]


# void (*)(void *user, const char *text, size_t len)
TEXT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class RequestParams(ctypes.Structure):
    _fields_ = [
        ("skill", ctypes.c_int),
        ("image_bytes", ctypes.c_void_p),
        ("image_len", ctypes.c_size_t),
        ("image_rgb", ctypes.c_void_p),
        ("image_width", ctypes.c_int),
        ("image_height", ctypes.c_int),
        ("image_key", ctypes.c_char_p),
        ("length", ctypes.c_char_p),
        ("question", ctypes.c_char_p),
        ("reasoning", ctypes.c_int),
        ("spatial_refs", ctypes.POINTER(SpatialRef)),
        ("n_spatial_refs", ctypes.c_int),
        ("object", ctypes.c_char_p),
        ("max_tokens", ctypes.c_int),
        ("temperature", ctypes.c_float),
        ("top_p", ctypes.c_float),
        ("max_objects", ctypes.c_int),
        ("seed", ctypes.c_uint64),
        ("has_seed", ctypes.c_int),
        ("on_text", TEXT_FN),
        ("user", ctypes.c_void_p),
    ]


class Metrics(ctypes.Structure):
    _fields_ = [
        ("input_tokens", ctypes.c_int),
        ("output_tokens", ctypes.c_int),
        ("cached_tokens", ctypes.c_int),
        ("queue_time_ms", ctypes.c_double),
        ("prefill_time_ms", ctypes.c_double),
        ("decode_time_ms", ctypes.c_double),
        ("ttft_ms", ctypes.c_double),
    ]


# ---- functions -------------------------------------------------------------

_P = ctypes.c_void_p  # opaque handles (tycho_engine *, tycho_request *)
_I = ctypes.c_int

_SIGNATURES = {
    "tycho_status_name": (ctypes.c_char_p, [_I]),
    "tycho_options_default": (None, [ctypes.POINTER(Options)]),
    "tycho_engine_init": (_I, [ctypes.POINTER(_P), ctypes.POINTER(Options), ctypes.POINTER(Error)]),
    "tycho_engine_free": (None, [_P]),
    "tycho_engine_get_stats": (None, [_P, ctypes.POINTER(EngineStats)]),
    "tycho_request_params_default": (None, [ctypes.POINTER(RequestParams), _I]),
    "tycho_submit": (_I, [_P, ctypes.POINTER(RequestParams), ctypes.POINTER(_P), ctypes.POINTER(Error)]),
    "tycho_cancel": (None, [_P]),
    "tycho_wait": (_I, [_P, _I, ctypes.POINTER(Error)]),
    "tycho_request_free": (None, [_P]),
    "tycho_request_finish_reason": (ctypes.c_char_p, [_P]),
    "tycho_request_text": (ctypes.c_char_p, [_P]),
    "tycho_request_reasoning": (ctypes.c_char_p, [_P]),
    "tycho_request_object_count": (_I, [_P]),
    "tycho_request_object": (None, [_P, _I, ctypes.POINTER(ctypes.c_double)]),
    "tycho_request_image_key": (ctypes.c_char_p, [_P]),
    "tycho_request_metrics": (None, [_P, ctypes.POINTER(Metrics)]),
    # char * that must go back through tycho_free: keep it a raw pointer.
    "tycho_request_json": (ctypes.c_void_p, [_P, _I]),
    "tycho_free": (None, [ctypes.c_void_p]),
}

_LIB_NAME = "libtycho.so"
_HERE = os.path.dirname(os.path.abspath(__file__))


def candidate_paths(lib_path=None):
    """Where the library is looked for, in order."""
    if lib_path:
        return [os.fspath(lib_path)]
    env = os.environ.get("TYCHO_LIB")
    if env:
        return [env]
    paths = [
        os.path.join(_HERE, _LIB_NAME),  # installed next to the package
        os.path.normpath(os.path.join(_HERE, "..", "..", "build", "lib", _LIB_NAME)),  # the repository's build
    ]
    found = ctypes.util.find_library("tycho")
    if found:
        paths.append(found)
    return paths


_loaded = {}
_load_lock = threading.Lock()


def load(lib_path=None):
    """Loads libtycho.so (once per path) and declares its functions.

    lib_path, else $TYCHO_LIB, else libtycho.so next to the package, else
    build/lib/libtycho.so of the repository the package sits in, else the
    system's library path. Raises OSError when none loads.
    """
    tried = []
    for path in candidate_paths(lib_path):
        explicit = bool(lib_path) or bool(os.environ.get("TYCHO_LIB"))
        if not explicit and os.sep in path and not os.path.exists(path):
            tried.append(path + " (absent)")
            continue
        key = os.path.realpath(path) if os.path.exists(path) else path
        with _load_lock:
            lib = _loaded.get(key)
            if lib is not None:
                return lib
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                if explicit:
                    break
                continue
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _loaded[key] = lib
            return lib
    raise OSError(
        "cannot load libtycho.so; build it (cmake --build build) or pass lib_path= / set TYCHO_LIB. Tried: "
        + "; ".join(tried)
    )
