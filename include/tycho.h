// tycho: the C API of the tycho inference engine for Moondream models.
//
// An engine owns one loaded model, a KV page pool, a prefix cache and a
// scheduler thread that runs every request in flight as one continuous batch.
// Requests are submitted from any thread, streamed through a callback, and
// waited on, cancelled and freed from any thread.
//
//   tycho_options o;
//   tycho_options_default(&o);
//   o.model = "models/shapes";
//   tycho_engine *e;
//   tycho_error err;
//   if (tycho_engine_init(&e, &o, &err) != TYCHO_OK) { puts(err.message); ... }
//   tycho_request_params p;
//   tycho_request_params_default(&p, TYCHO_SKILL_CAPTION);
//   p.image_bytes = jpeg; p.image_len = n;
//   tycho_request *r;
//   if (tycho_submit(e, &p, &r, &err) == TYCHO_OK && tycho_wait(r, -1, &err) == TYCHO_OK)
//       puts(tycho_request_text(r));
//   tycho_request_free(r);
//   tycho_engine_free(e);
//
// Thread safety: every function may be called from any thread, except that a
// request handle must not be used after tycho_request_free, and an engine
// must outlive its requests' use (tycho_engine_free cancels and finishes all
// of them; their handles stay valid until freed). Stream callbacks run on
// the engine's scheduler thread: they must return quickly and must not call
// tycho_wait or tycho_engine_free.
#ifndef TYCHO_H
#define TYCHO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TYCHO_API __attribute__((visibility("default")))
#else
#define TYCHO_API
#endif

// Status codes (the same numbers as the library's internal codes).
typedef enum {
    TYCHO_OK = 0,
    TYCHO_E_ARG = 1,          // invalid argument (NULL, out of range, bad option)
    TYCHO_E_IO = 2,           // a file could not be opened or read
    TYCHO_E_FORMAT = 3,       // input bytes do not follow their format (image, checkpoint, JSON)
    TYCHO_E_UNSUPPORTED = 4,  // well-formed input tycho does not implement
    TYCHO_E_LIMIT = 5,        // over a limit: image size, prompt tokens, a request that can never fit the KV budget
    TYCHO_E_NOMEM = 6,        // out of memory
    TYCHO_E_NOT_FOUND = 7,    // a named thing does not exist (model file, image key no longer cached)
    TYCHO_E_BUSY = 8,         // the queue is full: retry later
    TYCHO_E_TIMEOUT = 9,      // tycho_wait timed out; the request is still running
    TYCHO_E_CANCELLED = 10,   // the request was cancelled
} tycho_status;

typedef struct {
    tycho_status code;
    char message[512];  // one line, for people
} tycho_error;

// Short stable name of a status: "ok", "invalid_argument", "limit", "busy", ...
TYCHO_API const char *tycho_status_name(tycho_status s);

// The OpenAI-style error body every frontend sends:
// {"error": {"message", "type", "param", "code"}} with type
// "invalid_request_error" (bad input: arg, format, unsupported, limit,
// not_found), "rate_limit_error" (busy), "timeout_error", "cancelled" or
// "server_error", param the request field at fault or null, and code the
// status name. Free with tycho_free.
TYCHO_API char *tycho_error_json(tycho_status code, const char *message, const char *param);

// ---- engine ----------------------------------------------------------------

typedef struct tycho_engine tycho_engine;

typedef struct {
    const char *model;       // model directory, or a Hugging Face repo id in the local cache ("vikhyatk/moondream2")
    const char *device;      // "cpu" (NULL: cpu)
    int threads;             // CPU threads; <= 0: every core
    int64_t kv_cache_bytes;  // KV budget in bytes; 0: max(max_batch_size, 8) full contexts, at most 4 GiB
    int kv_cache_pages;      // > 0: the KV budget in pages (overrides kv_cache_bytes)
    int page_size;           // positions per KV page; 0: 16
    int max_batch_size;      // requests running at once (more wait in the queue); 0: 16
    int max_batch_tokens;    // rows per forward step (decode rows + prefill chunks); 0: 2048; >= 730
    int prefix_cache;        // 1: reuse image and prompt prefixes across requests; 0: off
    int max_queue;           // waiting requests; submit beyond it fails with TYCHO_E_BUSY; 0: 4096
    // GPU matmul inputs: "f32" (NULL: the default) keeps activations exact (a bf16 hi + lo
    // pair per value: answers equal the CPU's except at near ties); "bf16" rounds them once
    // (about half the tensor-core work in prefill and vision; ~3e-3 relative logits error).
    // The CPU always computes in f32: "bf16" there is TYCHO_E_UNSUPPORTED.
    const char *precision;
} tycho_options;

TYCHO_API void tycho_options_default(tycho_options *o);

// Loads the model and starts the scheduler thread.
TYCHO_API tycho_status tycho_engine_init(tycho_engine **out, const tycho_options *o, tycho_error *err);
// Cancels every request still running or waiting, stops the thread, frees the model.
TYCHO_API void tycho_engine_free(tycho_engine *e);

// Counters and gauges for monitoring (/metrics).
typedef struct {
    int waiting, running;                     // requests queued / in the running batch
    int kv_pages_total, kv_pages_used;        // used includes pages held only by the prefix cache
    int kv_pages_cached;                      // pages held by the prefix cache (reusable, evictable when unreferenced)
    uint64_t prefix_hits, prefix_misses;      // image prefix lookups
    uint64_t cached_tokens;                   // positions served from the cache instead of computed
    uint64_t vision_images;                   // images run through the vision tower
    uint64_t requests_done, requests_failed, requests_cancelled;
    uint64_t input_tokens, output_tokens;
    uint64_t steps;                           // forward steps run
    int page_size, max_batch_size;
    int64_t device_memory_used;               // bytes in use on the GPU (all of it, by any process: cudaMemGetInfo),
    int64_t device_memory_total;              // and its size; both 0 when the backend cannot tell (the CPU)
} tycho_engine_stats;

TYCHO_API void tycho_engine_get_stats(tycho_engine *e, tycho_engine_stats *s);

// ---- requests --------------------------------------------------------------

typedef struct tycho_request tycho_request;

typedef enum {
    TYCHO_SKILL_CAPTION,
    TYCHO_SKILL_QUERY,
    TYCHO_SKILL_DETECT,
    TYCHO_SKILL_POINT,
    TYCHO_SKILL_ENCODE_IMAGE,  // only runs the image prefix into the cache; tycho_request_image_key names it
} tycho_skill;

typedef struct {
    int n;        // 2: a point [x, y]; 4: a box [x_min, y_min, x_max, y_max]; values in [0, 1]
    double v[4];
} tycho_spatial_ref;

// Called with each new piece of answer text (caption, query answer), in order;
// the pieces joined equal tycho_request_text. Runs on the scheduler thread.
typedef void (*tycho_text_fn)(void *user, const char *text, size_t len);

typedef struct {
    tycho_skill skill;
    // The image, one of (or none, for a text-only query):
    const void *image_bytes;  // encoded JPEG, PNG, WebP or GIF
    size_t image_len;
    const uint8_t *image_rgb;  // (image_height, image_width, 3) RGB pixels, row-major
    int image_width, image_height;
    const char *image_key;     // the key of an image encoded before (tycho_request_image_key)
    const char *length;        // caption: "short", "normal" (NULL) or "long"
    const char *question;      // query (required)
    int reasoning;             // query: think first, with grounding points
    const tycho_spatial_ref *spatial_refs;  // query with an image: regions the question refers to
    int n_spatial_refs;
    const char *object;        // detect, point (required)
    int max_tokens;            // >= 1 (default 768)
    float temperature;         // >= 0 (default 0.5 caption/query, 0 detect/point)
    float top_p;               // in (0, 1] (default 0.3)
    int max_objects;           // detect, point: >= 1 (default 50)
    uint64_t seed;             // sampling seed when has_seed; otherwise a fresh one
    int has_seed;
    tycho_text_fn on_text;     // streamed text (NULL: none)
    void *user;
} tycho_request_params;

TYCHO_API void tycho_request_params_default(tycho_request_params *p, tycho_skill skill);

// Validates p, decodes the image (on the calling thread) and queues the
// request. Everything p points to is copied: the caller may free it at once.
// Fails alone with a clear error: bad parameters (TYCHO_E_ARG), a bad image
// (TYCHO_E_FORMAT/LIMIT), an image key no longer cached (TYCHO_E_NOT_FOUND),
// a full queue (TYCHO_E_BUSY).
TYCHO_API tycho_status tycho_submit(tycho_engine *e, const tycho_request_params *p, tycho_request **out,
                                    tycho_error *err);

// Asks the request to stop. A waiting request is removed at once; a running
// one stops before the next step and frees its KV pages. Finishes with
// finish reason "cancelled". Safe to call more than once, and after it ended.
TYCHO_API void tycho_cancel(tycho_request *r);

// Waits until the request ends (timeout_ms < 0: no limit). Returns TYCHO_OK
// when it finished normally (finish reason "stop" or "length"),
// TYCHO_E_CANCELLED when cancelled, the request's own error when it failed,
// and TYCHO_E_TIMEOUT when it is still running.
TYCHO_API tycho_status tycho_wait(tycho_request *r, int timeout_ms, tycho_error *err);

// Cancels the request if it is still running and frees the handle.
TYCHO_API void tycho_request_free(tycho_request *r);

// ---- results (valid once tycho_wait returned anything but TYCHO_E_TIMEOUT) ----

// "stop", "length", "cancelled" or "error".
TYCHO_API const char *tycho_request_finish_reason(const tycho_request *r);
// The caption or answer ("" for detect/point).
TYCHO_API const char *tycho_request_text(const tycho_request *r);
// The reasoning text of a query with reasoning, else NULL.
TYCHO_API const char *tycho_request_reasoning(const tycho_request *r);
// Grounding of the reasoning: spans (code point offsets) with points.
TYCHO_API int tycho_request_grounding_count(const tycho_request *r);
TYCHO_API int tycho_request_grounding(const tycho_request *r, int i, int *start_idx, int *end_idx,
                                      const double **points /* (n, 2) */);  // returns n
// Detect: boxes (x_min, y_min, x_max, y_max); point: points (x, y, -, -). Normalised to [0, 1].
TYCHO_API int tycho_request_object_count(const tycho_request *r);
TYCHO_API void tycho_request_object(const tycho_request *r, int i, double out[4]);
// The 32-hex-digit key of the request's image in the prefix cache ("" without an image).
TYCHO_API const char *tycho_request_image_key(const tycho_request *r);

typedef struct {
    int input_tokens;        // prompt positions, image prefix included
    int output_tokens;       // generated tokens
    int cached_tokens;       // prompt positions served from the prefix cache
    double queue_time_ms;    // submit to admission
    double prefill_time_ms;  // admission to the first generated token (vision tower included)
    double decode_time_ms;   // first generated token to the end
    double ttft_ms;          // submit to the first generated token
} tycho_metrics;

TYCHO_API void tycho_request_metrics(const tycho_request *r, tycho_metrics *m);

// The Moondream API response body: {"caption"} | {"answer", "reasoning"?} |
// {"objects"} | {"points"} | {"image_key"}, plus "finish_reason" and, when
// with_metrics, "metrics" (the names of tycho_metrics). For a failed request:
// the body of tycho_error_json. Free with tycho_free.
TYCHO_API char *tycho_request_json(const tycho_request *r, int with_metrics);

TYCHO_API void tycho_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
