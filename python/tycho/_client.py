"""The in-process client: tycho.vl(...) and what its methods return."""

import atexit
import base64
import codecs
import ctypes
import itertools
import json
import math
import os
import queue
import sys
import threading
import weakref

from . import _lib
from .errors import InvalidArgumentError, NotFoundError, TychoError, error, from_c

_WAIT_SLICE_MS = 200  # tycho_wait slices, so that Ctrl-C reaches a waiting thread


# ---- results ---------------------------------------------------------------


class Result(dict):
    """A method's return value: the dict Moondream's client returns
    ({"caption"}, {"answer", "reasoning"?}, {"objects"}, {"points"}), equal to
    a plain dict with the same keys, with the engine's envelope as attributes:

    finish_reason: "stop" or "length" (None while a stream is still running)
    metrics: {"input_tokens", "output_tokens", "cached_tokens", "queue_time_ms",
              "prefill_time_ms", "decode_time_ms", "ttft_ms"} (None while streaming)
    """

    finish_reason = None
    metrics = None


class EncodedImage:
    """An image whose prefix sits in the engine's cache (vl.encode_image).

    Pass it as `image` to any method: the request reuses the cached image
    instead of running the vision tower again. It keeps the image it came
    from, so when the engine has evicted the key (or it is used with another
    engine) the request quietly encodes the image again.
    """

    __slots__ = ("image_key", "_source", "__weakref__")

    def __init__(self, image_key, _source=None):
        if not isinstance(image_key, str):
            raise TypeError("image_key must be a str")
        self.image_key = image_key
        self._source = _source

    def __repr__(self):
        return "EncodedImage(image_key=%r)" % self.image_key

    def __eq__(self, other):
        return isinstance(other, EncodedImage) and other.image_key == self.image_key

    def __hash__(self):
        return hash(self.image_key)


# ---- inputs ----------------------------------------------------------------


class _Image:
    """One image as the C API takes it: encoded bytes, RGB pixels or a key."""

    __slots__ = ("kind", "data", "width", "height", "encoded")

    def __init__(self, kind, data=None, width=0, height=0, encoded=None):
        self.kind, self.data, self.width, self.height, self.encoded = kind, data, width, height, encoded


def _data_uri_bytes(text):
    if text.startswith("data:"):
        comma = text.find(",")
        if comma < 0 or ";base64" not in text[:comma]:
            raise InvalidArgumentError(_lib.E_ARG, "image: a data URI must be base64 ('data:image/...;base64,...')")
        text = text[comma + 1 :]
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(_lib.E_ARG, "image: invalid base64 (%s)" % e) from None


def _pil_image_class():
    mod = sys.modules.get("PIL.Image")  # a PIL image exists only if PIL was imported
    return getattr(mod, "Image", None) if mod is not None else None


def _image(image):
    """Turns what users pass as `image` into an _Image."""
    if isinstance(image, EncodedImage):
        return _Image("key", encoded=image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise InvalidArgumentError(_lib.E_ARG, "image: empty bytes")
        return _Image("bytes", data)
    if isinstance(image, str) and image.startswith("data:"):
        return _Image("bytes", _data_uri_bytes(image))
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return _Image("bytes", f.read())
    pil = _pil_image_class()
    if pil is not None and isinstance(image, pil):
        # As Moondream's reference does: PIL's convert("RGB") (alpha dropped,
        # gray replicated, palettes looked up), then the pixels as they are.
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        w, h = rgb.size
        return _Image("rgb", rgb.tobytes(), w, h)
    url = getattr(image, "image_url", None)  # moondream's Base64EncodedImage
    if isinstance(url, str):
        return _Image("bytes", _data_uri_bytes(url))
    raise TypeError(
        "image must be a path, bytes, a PIL image, a data URI or a tycho.EncodedImage, not %s" % type(image).__name__
    )


def _cstr(name, value, required=True):
    if value is None:
        if required:
            raise InvalidArgumentError(_lib.E_ARG, "%s is required" % name)
        return None
    if not isinstance(value, str):
        raise TypeError("%s must be a str, not %s" % (name, type(value).__name__))
    if "\0" in value:
        raise InvalidArgumentError(_lib.E_ARG, "%s contains a NUL character" % name)
    return value.encode("utf-8")


_INT_MAX = 2**31 - 1


def _apply_settings(p, settings):
    """Copies Moondream's settings dict into tycho_request_params p."""
    if settings is None:
        return
    if not hasattr(settings, "items"):
        raise InvalidArgumentError(_lib.E_ARG, "settings must be a dict, not %s" % type(settings).__name__)
    for key, value in settings.items():
        if value is None:
            continue
        if key in ("temperature", "top_p"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError(_lib.E_ARG, "settings.%s must be a number" % key)
            value = float(value)
            if math.isnan(value):
                raise InvalidArgumentError(_lib.E_ARG, "settings.%s must be a number, not NaN" % key)
            setattr(p, key, value)
        elif key in ("max_tokens", "max_objects"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentError(_lib.E_ARG, "settings.%s must be an integer" % key)
            if not 1 <= value <= _INT_MAX:
                raise InvalidArgumentError(_lib.E_ARG, "settings.%s must be in [1, %d]" % (key, _INT_MAX))
            setattr(p, key, value)
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
                raise InvalidArgumentError(_lib.E_ARG, "settings.seed must be an integer in [0, 2^64)")
            p.seed = value
            p.has_seed = 1
        else:
            raise InvalidArgumentError(
                _lib.E_ARG,
                "unknown setting %r (known: temperature, top_p, max_tokens, max_objects, seed)" % (key,),
            )


def _spatial_refs(refs):
    if refs is None:
        return None, 0
    try:
        refs = list(refs)
    except TypeError:
        raise InvalidArgumentError(_lib.E_ARG, "spatial_refs must be a list of [x, y] or [x_min, y_min, x_max, y_max]")
    arr = (_lib.SpatialRef * max(1, len(refs)))()
    for i, ref in enumerate(refs):
        try:
            vals = [float(v) for v in ref if not isinstance(v, bool)]
            ok = len(vals) == len(ref) and len(vals) in (2, 4)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidArgumentError(
                _lib.E_ARG, "spatial_refs[%d] must be [x, y] or [x_min, y_min, x_max, y_max]" % i
            )
        arr[i].n = len(vals)
        for j, v in enumerate(vals):
            arr[i].v[j] = v
    return arr, len(refs)


# ---- streaming -------------------------------------------------------------

# Text callbacks run on the engine's scheduler thread. One trampoline serves
# every stream; `user` is the stream's id in _streams, so a callback for a
# stream that is gone finds nothing, and the function pointer never dies.
_streams = {}
_stream_ids = itertools.count(1)
_END = object()


def _on_text(user, text, n):
    try:
        q = _streams.get(user or 0)
        if q is not None:
            q.put(ctypes.string_at(text, n))
    except BaseException:  # never unwind into C
        pass


_ON_TEXT = _lib.TEXT_FN(_on_text)


class _Pending:
    """A submitted request handle, freed exactly once, never while waited on.

    A stream's handle is waited on by a helper thread; whoever comes last of
    that thread (finished) and the consumer (released) frees it.
    """

    def __init__(self, lib, handle):
        self.lib = lib
        self.handle = handle
        self.lock = threading.Lock()
        self.finished = False
        self.released = False
        self.has_waiter = False
        self.status = None
        self.err = _lib.Error()

    def wait(self):
        """Waits in slices (Ctrl-C stays possible); returns the status."""
        while True:
            st = self.lib.tycho_wait(self.handle, _WAIT_SLICE_MS, ctypes.byref(self.err))
            if st != _lib.E_TIMEOUT:
                with self.lock:
                    self.status = st
                    self.finished = True
                return st

    def wait_then(self, on_done):
        st = self.lib.tycho_wait(self.handle, -1, ctypes.byref(self.err))
        with self.lock:
            self.status = st
            self.finished = True
            free = self.released
        on_done()
        if free:
            self._free()

    def release(self):
        """The consumer is done with the request: free it now if it ended;
        else cancel it, and free it once it ended (the waiter thread of a
        stream does; without one, wait here: a cancelled request ends at once)."""
        with self.lock:
            if self.released:
                return
            self.released = True
            finished = self.finished
            if not finished:
                self.lib.tycho_cancel(self.handle)
        if not finished and not self.has_waiter:
            self.lib.tycho_wait(self.handle, -1, ctypes.byref(self.err))
            finished = True
        if finished:
            self._free()

    def _free(self):
        with self.lock:
            h, self.handle = self.handle, None
        if h:
            self.lib.tycho_request_free(h)

    def exception(self):
        return from_c(self.status, self.err)

    def json(self):
        ptr = self.lib.tycho_request_json(self.handle, 1)
        if not ptr:
            raise error(_lib.E_NOMEM, "tycho_request_json failed")
        try:
            return json.loads(ctypes.string_at(ptr).decode("utf-8"))
        finally:
            self.lib.tycho_free(ptr)

    def image_key(self):
        key = self.lib.tycho_request_image_key(self.handle)
        return key.decode("ascii") if key else ""


def _release_stream(pending, sid):
    _streams.pop(sid, None)
    pending.release()


# ---- the client ------------------------------------------------------------

_live = weakref.WeakSet()


@atexit.register
def _close_all():
    # Engines stop before the interpreter does: their scheduler threads call
    # into Python (stream callbacks), which must not happen during teardown.
    for v in list(_live):
        try:
            v.close()
        except Exception:
            pass


_ENVELOPE = ("finish_reason", "metrics", "request_id")
_SKILL_KEYS = {
    _lib.SKILL_CAPTION: "caption",
    _lib.SKILL_QUERY: "answer",
    _lib.SKILL_DETECT: "objects",
    _lib.SKILL_POINT: "points",
}


def _result(body, target=None):
    r = target if target is not None else Result()
    for k, v in body.items():
        if k == "finish_reason":
            r.finish_reason = v
        elif k == "metrics":
            r.metrics = v
        elif k in _ENVELOPE or (k == "reasoning" and v is None):
            continue
        else:
            r[k] = v
    return r


class VL:
    """A Moondream model running in this process on tycho's engine.

    The methods are those of Moondream's Python client (md.vl): caption,
    query, detect, point, encode_image, with the same arguments and return
    shapes. They may be called from many threads at once: the engine runs
    concurrent requests as one batch.
    """

    def __init__(
        self,
        model,
        device="cpu",
        *,
        threads=0,
        max_batch_size=0,
        kv_cache_pages=0,
        kv_cache_bytes=0,
        page_size=0,
        max_batch_tokens=0,
        prefix_cache=None,
        max_queue=0,
        precision=None,
        lib_path=None,
    ):
        self._engine = None
        self._cv = threading.Condition()
        self._users = 0
        if model is None:
            raise InvalidArgumentError(_lib.E_ARG, "model is required (a model directory or a Hugging Face repo id)")
        self.model = os.fspath(model)
        self.device = device
        self._lib = lib = _lib.load(lib_path)
        o = _lib.Options()
        lib.tycho_options_default(ctypes.byref(o))
        self._model_b = _cstr("model", self.model)
        self._device_b = _cstr("device", device, required=False)
        o.model = self._model_b
        o.device = self._device_b
        self._precision_b = _cstr("precision", precision, required=False)
        o.precision = self._precision_b
        for name, value in (
            ("threads", threads),
            ("max_batch_size", max_batch_size),
            ("kv_cache_pages", kv_cache_pages),
            ("page_size", page_size),
            ("max_batch_tokens", max_batch_tokens),
            ("max_queue", max_queue),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not -_INT_MAX <= value <= _INT_MAX:
                raise InvalidArgumentError(_lib.E_ARG, "%s must be an integer" % name)
            setattr(o, name, value)
        if kv_cache_bytes:
            if isinstance(kv_cache_bytes, bool) or not isinstance(kv_cache_bytes, int) or kv_cache_bytes < 0:
                raise InvalidArgumentError(_lib.E_ARG, "kv_cache_bytes must be a non-negative integer")
            o.kv_cache_bytes = kv_cache_bytes
        if prefix_cache is not None:
            o.prefix_cache = 1 if prefix_cache else 0
        eng = ctypes.c_void_p()
        err = _lib.Error()
        st = lib.tycho_engine_init(ctypes.byref(eng), ctypes.byref(o), ctypes.byref(err))
        if st != _lib.OK:
            raise from_c(st, err)
        self._engine = eng.value
        _live.add(self)

    # ---- lifetime ----

    def close(self):
        """Cancels what is still running, stops the engine and frees the model.

        Requests waiting in other threads end with tycho.CancelledError;
        further calls raise TychoError. Safe to call more than once.
        """
        cv = getattr(self, "_cv", None)
        if cv is None:
            return
        with cv:
            eng, self._engine = self._engine, None
            while self._users:
                cv.wait()
        if eng:
            self._lib.tycho_engine_free(eng)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if isinstance(threading.current_thread(), threading._DummyThread):
                # collected on a thread Python did not start (the engine's
                # own, in a stream callback): it must not free its engine
                threading.Thread(target=self.close, daemon=True).start()
            else:
                self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._engine is None

    def _acquire(self):
        with self._cv:
            if self._engine is None:
                raise TychoError(_lib.E_ARG, "this tycho.vl is closed")
            self._users += 1
            return self._engine

    def _release(self):
        with self._cv:
            self._users -= 1
            if not self._users:
                self._cv.notify_all()

    def stats(self):
        """The engine's counters and gauges (tycho_engine_stats) as a dict."""
        s = _lib.EngineStats()
        eng = self._acquire()
        try:
            self._lib.tycho_engine_get_stats(eng, ctypes.byref(s))
        finally:
            self._release()
        return {name: getattr(s, name) for name, _ in s._fields_}

    # ---- requests ----

    def _submit_once(self, skill, src, key, fill, on_text, user):
        p = _lib.RequestParams()
        self._lib.tycho_request_params_default(ctypes.byref(p), skill)
        keep = fill(p)  # what p points into (besides p's own references), alive until submit returns
        if on_text is not None:
            p.on_text = on_text
            p.user = user
        if key is not None:
            p.image_key = key.encode("ascii", "replace")
        elif src is not None:
            keep = (keep, src.data)
            if src.kind == "bytes":
                p.image_bytes = ctypes.cast(ctypes.c_char_p(src.data), ctypes.c_void_p)
                p.image_len = len(src.data)
            else:
                p.image_rgb = ctypes.cast(ctypes.c_char_p(src.data), ctypes.c_void_p)
                p.image_width, p.image_height = src.width, src.height
        handle = ctypes.c_void_p()
        err = _lib.Error()
        eng = self._acquire()
        try:
            st = self._lib.tycho_submit(eng, ctypes.byref(p), ctypes.byref(handle), ctypes.byref(err))
        finally:
            self._release()
        del keep
        if st != _lib.OK:
            raise from_c(st, err)
        return _Pending(self._lib, handle.value)

    def _submit(self, skill, img, fill, on_text=None, user=None, from_source=False):
        """Submits; returns (_Pending, whether an EncodedImage was sent as its source image).

        img: an _Image or None. An EncodedImage is sent by key; when the key is
        no longer cached (or from_source), by the image it was made from.
        """
        if img is None or img.kind != "key":
            return self._submit_once(skill, img, None, fill, on_text, user), False
        enc = img.encoded
        if not from_source or enc._source is None:
            try:
                return self._submit_once(skill, None, enc.image_key, fill, on_text, user), False
            except NotFoundError:
                if enc._source is None:
                    raise
        return self._submit_once(skill, enc._source, None, fill, on_text, user), True

    def _run(self, skill, img, fill):
        """Submits, waits; returns (the parsed JSON body, the request's image key)."""
        from_source = False
        while True:
            pending, resubmitted = self._submit(skill, img, fill, from_source=from_source)
            try:
                st = pending.wait()
                if st != _lib.OK:
                    if st == _lib.E_NOT_FOUND and not resubmitted and img is not None and img.kind == "key" \
                            and img.encoded._source is not None:
                        from_source = True  # the key was evicted before the request ran
                        continue
                    raise pending.exception()
                body = pending.json() if skill != _lib.SKILL_ENCODE_IMAGE else {}
                key = pending.image_key()
            finally:
                pending.release()
            if resubmitted and key:
                img.encoded.image_key = key  # cached again, maybe under a new key
            return body, key

    def _stream(self, skill, img, fill, key):
        """Submits with a text callback; returns a Result whose `key` is a generator."""
        q = queue.Queue()
        sid = next(_stream_ids)
        _streams[sid] = q
        try:
            pending, resubmitted = self._submit(skill, img, fill, on_text=_ON_TEXT, user=sid)
        except BaseException:
            _streams.pop(sid, None)
            raise
        pending.has_waiter = True
        result = Result()
        waiter = threading.Thread(
            target=pending.wait_then, args=(lambda: q.put(_END),), name="tycho-stream-%d" % sid, daemon=True
        )
        waiter.start()
        gen = _stream_chunks(pending, q, sid, weakref.ref(result), img if resubmitted else None)
        weakref.finalize(gen, _release_stream, pending, sid)
        result[key] = gen
        return result

    # ---- Moondream's methods ----

    def encode_image(self, image):
        """Runs the image into the engine's prefix cache; returns a tycho.EncodedImage
        that every method accepts as `image` (an EncodedImage is returned as is)."""
        if isinstance(image, EncodedImage):
            return image
        img = _image(image)
        _, key = self._run(_lib.SKILL_ENCODE_IMAGE, img, lambda p: None)
        if not key:
            raise TychoError(_lib.E_ARG, "the engine returned no image key")
        return EncodedImage(key, img)

    def caption(self, image, length="normal", stream=False, settings=None):
        """{"caption": str}, or {"caption": generator of text chunks} with stream=True."""
        img = _image(image)
        length_b = _cstr("length", length, required=False)

        def fill(p):
            p.length = length_b
            _apply_settings(p, settings)

        if stream:
            return self._stream(_lib.SKILL_CAPTION, img, fill, "caption")
        body, _ = self._run(_lib.SKILL_CAPTION, img, fill)
        return _result(body)

    def query(self, image=None, question=None, stream=False, settings=None, reasoning=False, spatial_refs=None):
        """{"answer": str} (plus "reasoning": {"text", "grounding"} with reasoning=True),
        or {"answer": generator of text chunks} with stream=True. image=None: a
        text-only question."""
        if question is None:
            raise InvalidArgumentError(_lib.E_ARG, "question parameter is required")
        img = _image(image) if image is not None else None
        question_b = _cstr("question", question)
        refs, n_refs = _spatial_refs(spatial_refs)

        def fill(p):
            p.question = question_b
            p.reasoning = 1 if reasoning else 0
            if n_refs:
                p.spatial_refs = refs
                p.n_spatial_refs = n_refs
            _apply_settings(p, settings)
            return refs

        if stream:
            return self._stream(_lib.SKILL_QUERY, img, fill, "answer")
        body, _ = self._run(_lib.SKILL_QUERY, img, fill)
        return _result(body)

    def _locate(self, skill, image, object, settings, spatial_refs):
        img = _image(image)
        object_b = _cstr("object", object)
        refs, n_refs = _spatial_refs(spatial_refs)

        def fill(p):
            p.object = object_b
            if n_refs:
                p.spatial_refs = refs
                p.n_spatial_refs = n_refs
            _apply_settings(p, settings)
            return refs

        body, _ = self._run(skill, img, fill)
        return _result(body)

    def detect(self, image, object, settings=None):
        """{"objects": [{"x_min", "y_min", "x_max", "y_max"}, ...]}, normalised to [0, 1]."""
        return self._locate(_lib.SKILL_DETECT, image, object, settings, None)

    def point(self, image, object, settings=None, spatial_refs=None):
        """{"points": [{"x", "y"}, ...]}, normalised to [0, 1]."""
        return self._locate(_lib.SKILL_POINT, image, object, settings, spatial_refs)

    def __repr__(self):
        return "tycho.vl(model=%r, device=%r%s)" % (self.model, self.device, ", closed" if self.closed else "")


def _stream_chunks(pending, q, sid, result_ref, img):
    """The generator of a stream: text chunks as the engine releases them.

    When it ends, the Result gets finish_reason, metrics and (a query with
    reasoning) "reasoning"; a request that failed raises its TychoError here.
    Closing it early cancels the request.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            text = decoder.decode(item)
            if text:
                yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text
        if pending.status != _lib.OK:
            raise pending.exception()
        body = pending.json()
        if img is not None:
            key = pending.image_key()
            if key:
                img.encoded.image_key = key
        result = result_ref()
        if result is not None:
            for k in list(body):
                if k in ("caption", "answer"):
                    del body[k]  # the generator stays in the dict
            _result(body, result)
    finally:
        _release_stream(pending, sid)


def vl(model=None, device="cpu", **kwargs):
    """Loads a Moondream model into tycho's engine; returns a tycho.VL.

    model: a model directory or a Hugging Face repo id in the local cache.
    device: "cpu", "cuda" or "cuda:N" (a build with -DTYCHO_CUDA=ON). Keyword options: threads (0: every core), max_batch_size,
    kv_cache_pages, kv_cache_bytes, page_size, max_batch_tokens, prefix_cache
    (bool), max_queue, precision ("f32" or "bf16", GPU only), lib_path (else $TYCHO_LIB, else next to the package,
    else the repository's build/lib).
    """
    return VL(model, device, **kwargs)
