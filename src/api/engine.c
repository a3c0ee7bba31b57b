// The engine behind include/tycho.h: a loaded model, a scheduler and the one
// thread that runs it. Other threads only queue requests and set cancel
// flags; everything the scheduler owns is touched by the engine thread alone.
//
// Locks: e->mu guards the incoming queue, the stop flag and the published
// stats; r->mu guards a request's done state. The engine thread never holds
// e->mu while it runs a step or calls back into a request.
#include "api/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "backend/cuda/backend_cuda.h"
#include "io/hub.h"

enum { DEFAULT_PAGE_SIZE = 16, DEFAULT_MAX_BATCH = 16, DEFAULT_MAX_ROWS = 2048, DEFAULT_MAX_QUEUE = 4096 };

// ---- a request as the scheduler sees it ----------------------------------------

static const skill_feed *seq_next_feed(void *owner) {
    tycho_request *r = owner;
    return r->sk ? skill_next_feed(r->sk) : NULL;
}

static ty_status seq_consume(void *owner, float *logits, const float *hidden, ty_err *err) {
    tycho_request *r = owner;
    return skill_consume(r->sk, logits, hidden, err);
}

static void inflight_remove(tycho_engine *e, tycho_request *r) {
    if (r->prev) r->prev->next = r->next;
    else if (e->inflight == r) e->inflight = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void publish_stats(tycho_engine *e);

// Ends a request: results are final, waiters wake. Engine thread only (or
// before the request reached it).
static void request_finish(tycho_engine *e, tycho_request *r, ty_status st, const ty_err *err) {
    r->t_done = sched_now_ms();
    crop_job_release(&r->crop);  // off the crop queue (cancelled or failed before its vision ran)
    // A skill that ended on its own already has its reason; this only fills it in.
    if (r->sk) skill_abort(r->sk, st == TY_E_CANCELLED ? FINISH_CANCELLED : st == TY_OK ? FINISH_STOP : FINISH_ERROR);
    if (st == TY_OK) e->counters.requests_done++;
    else if (st == TY_E_CANCELLED) e->counters.requests_cancelled++;
    else e->counters.requests_failed++;
    if (r->sk) {
        e->counters.input_tokens += (uint64_t)(r->seq.prefix + skill_prompt_tokens(r->sk));
        e->counters.output_tokens += (uint64_t)skill_output_tokens(r->sk);
    }
    publish_stats(e);  // so a waiter that wakes sees counters that include this request
    pthread_mutex_lock(&r->mu);
    r->status = st;
    if (st != TY_OK && err) r->err = *err;
    else if (st != TY_OK) ty_err_set(&r->err, st, "%s", ty_status_name(st));
    r->done = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
}

static void seq_done(void *owner, ty_status st, const ty_err *err) {
    tycho_request *r = owner;
    inflight_remove(r->e, r);
    request_finish(r->e, r, st, err);
}

// The pixels are not needed once the prefix is in the KV cache: a long queue
// of big images holds memory only until each is admitted.
static void seq_image_used(void *owner) {
    tycho_request *r = owner;
    crop_job_release(&r->crop);  // before the pixels it reads
    image_rgb_free(&r->img);
    r->seq.image = NULL;
}

static const sched_seq_ops SEQ_OPS = {seq_next_feed, seq_consume, seq_done, seq_image_used};

// ---- the engine thread -----------------------------------------------------------

static void publish_stats(tycho_engine *e) {
    const scheduler *s = &e->sch;
    tycho_engine_stats st = e->counters;
    st.running = s->n_running;
    st.waiting = s->n_waiting;
    st.kv_pages_total = s->pool.n_pages;
    st.kv_pages_used = kv_pages_used(&s->pool);
    st.kv_pages_cached = prefix_cache_pages(&s->cache);
    st.prefix_hits = s->cache.hits;
    st.prefix_misses = s->cache.misses;
    st.cached_tokens = s->stats.cached_tokens;
    st.vision_images = s->stats.vision_images;
    st.steps = s->stats.steps;
    st.page_size = s->pool.page_size;
    st.max_batch_size = s->max_batch;
    pthread_mutex_lock(&e->mu);
    e->sched_waiting = st.waiting;
    st.waiting += e->n_incoming;
    e->stats = st;
    pthread_mutex_unlock(&e->mu);
}

// Device memory into the counters (CUDA: cudaMemGetInfo), at most every
// 100 ms: a step can be shorter than the call. Engine thread (or before it starts).
static void poll_memory(tycho_engine *e) {
    double now = sched_now_ms();
    if (!e->be->ops->memory || (e->t_memory && now - e->t_memory < 100.0)) return;
    size_t used = 0, total = 0;
    e->be->ops->memory(e->be, &used, &total);
    e->counters.device_memory_used = (int64_t)used;
    e->counters.device_memory_total = (int64_t)total;
    e->t_memory = now;
}

static void *engine_main(void *arg) {
    tycho_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        tycho_request *in = e->incoming;
        e->incoming = NULL;
        e->incoming_tail = NULL;
        e->n_incoming = 0;
        int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        // New requests into the scheduler (or straight to done when cancelled or refused).
        while (in) {
            tycho_request *r = in;
            in = in->next;
            r->next = NULL;
            ty_err err = {0};
            ty_status st = stop || r->cancel ? TY_E_CANCELLED : sched_submit(&e->sch, &r->seq, &err);
            if (st != TY_OK) {
                if (st == TY_E_CANCELLED) ty_err_set(&err, st, "cancelled");
                request_finish(e, r, st, &err);
                continue;
            }
            r->next = e->inflight;
            if (e->inflight) e->inflight->prev = r;
            e->inflight = r;
        }
        // Cancellations (and everything, when stopping).
        for (tycho_request *r = e->inflight, *next; r; r = next) {
            next = r->next;
            if (stop || r->cancel) sched_cancel(&e->sch, &r->seq);
        }
        if (stop) break;
        int idle = 1;
        if (e->sch.n_running || e->sch.n_waiting) sched_step(&e->sch, &idle);
        poll_memory(e);
        publish_stats(e);
        if (idle) {
            pthread_mutex_lock(&e->mu);
            if (!e->incoming && !e->stop && !e->wake_pending) {
                if (e->sch.n_waiting) {  // waiting on something a step frees: poll gently (cannot happen today)
                    struct timespec ts;
                    clock_gettime(CLOCK_REALTIME, &ts);
                    ts.tv_nsec += 1000000;
                    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
                    pthread_cond_timedwait(&e->wake, &e->mu, &ts);
                } else {
                    pthread_cond_wait(&e->wake, &e->mu);
                }
            }
            e->wake_pending = 0;
            pthread_mutex_unlock(&e->mu);
        }
    }
    publish_stats(e);
    return NULL;
}

void engine_wake(tycho_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->wake_pending = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

// ---- init / free -----------------------------------------------------------------

static uint64_t model_fingerprint(const md_model *m, const char *dir) {
    XXH64_state_t *h = XXH64_createState();
    if (!h) return 0;
    XXH64_reset(h, 0);
    XXH64_update(h, dir, strlen(dir));
    XXH64_update(h, &m->cfg, sizeof m->cfg);
    XXH64_update(h, &m->st, sizeof m->st);  // the mapping: a different load is a different model
    uint64_t v = XXH64_digest(h);
    XXH64_freeState(h);
    return v;
}

// "cpu" (or NULL) -> -1; "cuda" -> GPU 0; "cuda:N" -> GPU N.
static ty_status parse_device(const char *device, int *gpu, ty_err *err) {
    *gpu = -1;
    if (!device || !strcmp(device, "cpu")) return TY_OK;
    if (strncmp(device, "cuda", 4))
        return ty_err_set(err, TY_E_ARG, "device '%s': expected \"cpu\", \"cuda\" or \"cuda:N\"", device);
    const char *p = device + 4;
    if (!*p) {
        *gpu = 0;
        return TY_OK;
    }
    char *end;
    long n = *p == ':' && p[1] >= '0' && p[1] <= '9' ? strtol(p + 1, &end, 10) : -1;
    if (n < 0 || n > 1024 || *end)
        return ty_err_set(err, TY_E_ARG, "device '%s': expected \"cpu\", \"cuda\" or \"cuda:N\"", device);
    *gpu = (int)n;
    return TY_OK;
}

ty_status engine_init(tycho_engine **out, const tycho_options *o, ty_err *err) {
    return engine_init_source(out, o, NULL, err);
}

ty_status engine_init_source(tycho_engine **out, const tycho_options *o, const engine_model_source *src, ty_err *err) {
    *out = NULL;
    const engine_model_source *mem = src && src->checkpoint ? src : NULL;  // else o->model, loaded as usual
    if (mem && (!o || !mem->cfg || !mem->tokenizer || !mem->name))
        return ty_err_set(err, TY_E_ARG, "a model in memory needs a config, a tokenizer and a name");
    if (!mem && (!o || !o->model || !*o->model)) return ty_err_set(err, TY_E_ARG, "options.model is required");
    int gpu = -1;  // -1: the CPU
    ty_status s = parse_device(o->device, &gpu, err);
    if (s != TY_OK) return s;
    int bf16 = o->precision && !strcmp(o->precision, "bf16");
    if (o->precision && !bf16 && strcmp(o->precision, "f32"))
        return ty_err_set(err, TY_E_ARG, "precision '%s': expected \"f32\" or \"bf16\"", o->precision);
    if (bf16 && gpu < 0) return ty_err_set(err, TY_E_UNSUPPORTED, "precision \"bf16\" needs device \"cuda\"");
    if (o->page_size < 0 || o->max_batch_size < 0 || o->max_batch_tokens < 0 || o->kv_cache_pages < 0 ||
        o->kv_cache_bytes < 0 || o->max_queue < 0)
        return ty_err_set(err, TY_E_ARG, "engine options must not be negative");
    tycho_engine *e = calloc(1, sizeof *e);
    if (!e) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    e->max_queue = o->max_queue ? o->max_queue : DEFAULT_MAX_QUEUE;
    hub_paths paths = {0};
    e->ignore_eos = src && src->ignore_eos;
    s = mem ? TY_OK : hub_resolve(o->model, &paths, err);
    if (s == TY_OK) s = image_init(err);
    if (s == TY_OK) s = gpu < 0 ? backend_cpu_init(&e->be, o->threads, err) : backend_cuda_init(&e->be, gpu, err);
    if (s == TY_OK && bf16) backend_cuda_set_bf16_activations(e->be, 1);
    if (s == TY_OK && mem) {
        s = md_model_init_memory(&e->m, mem->cfg, mem->checkpoint, mem->checkpoint_len, e->be, err);
        if (s == TY_OK) s = tokenizer_init_from_file(&e->tok, mem->tokenizer, err);
    } else if (s == TY_OK) {
        s = md_model_init(&e->m, paths.model_dir, e->be, err);
        if (s == TY_OK) s = tokenizer_init_from_file(&e->tok, paths.tokenizer, err);
    }
    if (s == TY_OK) {
        const md_text_config *c = &e->m->cfg.text;
        int page_size = o->page_size ? o->page_size : DEFAULT_PAGE_SIZE;
        int max_batch = o->max_batch_size ? o->max_batch_size : DEFAULT_MAX_BATCH;
        int64_t bytes_per_pos = (int64_t)c->n_layers * 2 * c->n_kv_heads * (c->dim / c->n_heads) * (int64_t)sizeof(float);
        int64_t n_pages = o->kv_cache_pages;
        if (!n_pages) {
            // Default: room for max(max_batch, 8) full contexts (running requests
            // plus cached image prefixes), at most 4 GiB, at least one context.
            int64_t contexts = max_batch > 8 ? max_batch : 8, ctx_bytes = (int64_t)c->max_context * bytes_per_pos;
            int64_t bytes = contexts * ctx_bytes;
            if (bytes > ((int64_t)4 << 30)) bytes = (int64_t)4 << 30 > ctx_bytes ? (int64_t)4 << 30 : ctx_bytes;
            if (o->kv_cache_bytes) bytes = o->kv_cache_bytes;
            n_pages = bytes / (bytes_per_pos * page_size);
        }
        if (page_size > 4096) s = ty_err_set(err, TY_E_ARG, "page_size must be at most 4096");
        else if (n_pages < 1 || n_pages > INT32_MAX / page_size)
            s = ty_err_set(err, TY_E_ARG, "the KV budget gives %lld pages of %d positions: need at least one",
                           (long long)n_pages, page_size);
        e->model_key = model_fingerprint(e->m, mem ? mem->name : paths.model_dir);
        sched_options so = {.n_pages = (int)n_pages, .page_size = page_size, .max_batch = max_batch,
                            .max_rows = o->max_batch_tokens ? o->max_batch_tokens : DEFAULT_MAX_ROWS,
                            .use_cache = o->prefix_cache};
        if (s == TY_OK) s = md_runner_init(&e->run, e->m, so.n_pages, page_size, err);
        if (s == TY_OK) {
            sched_model sm = md_runner_model(&e->run);
            s = sched_init(&e->sch, &sm, &so, err);
        }
        if (s == TY_OK) e->sch_ready = 1;
        // Crops made ahead for at most a batch and a few more images (about 4 MB each).
        if (s == TY_OK) s = crop_pool_init(&e->crops, 0, max_batch + 8, err);
    }
    if (s == TY_OK) poll_memory(e);  // the weights' footprint, before the first step
    if (s == TY_OK && pthread_create(&e->thread, NULL, engine_main, e)) s = ty_err_set(err, TY_E_NOMEM, "cannot start the engine thread");
    if (s != TY_OK) {
        engine_free(e);
        return s;
    }
    e->thread_running = 1;
    publish_stats(e);
    *out = e;
    return TY_OK;
}

void engine_free(tycho_engine *e) {
    if (!e) return;
    if (e->thread_running) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    crop_pool_free(e->crops);  // every request has ended: no job is queued
    if (e->sch_ready) sched_free(&e->sch);
    md_runner_free(&e->run);
    tokenizer_free(e->tok);
    md_model_free(e->m);
    if (e->be) e->be->ops->free(e->be);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    free(e);
}

// ---- submit ----------------------------------------------------------------------

pc_key engine_image_key(const tycho_engine *e, const image_rgb *img) {
    XXH3_state_t *h = XXH3_createState();
    pc_key k = {0, 0};
    if (!h) return k;
    XXH3_128bits_reset_withSeed(h, e->model_key);
    int32_t dims[2] = {img->width, img->height};
    XXH3_128bits_update(h, dims, sizeof dims);
    XXH3_128bits_update(h, img->rgb, (size_t)img->width * img->height * 3);
    XXH128_hash_t v = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    k.lo = v.low64;
    k.hi = v.high64;
    if (!k.lo && !k.hi) k.lo = 1;  // all-zero is the text-only root
    return k;
}

// Whether the crops of this image were queued lately (and notes them now),
// under e->mu. A repeat waits for the first request's prefix and reuses it
// from the cache, so its crops would go unused; should that request fail
// instead, the repeat's crops are made when its vision runs.
static int crops_already_queued(tycho_engine *e, pc_key key) {
    if (!e->sch.use_cache) return 0;
    for (int i = 0; i < e->n_recent; i++)
        if (e->recent_keys[i].lo == key.lo && e->recent_keys[i].hi == key.hi) return 1;
    e->recent_keys[e->recent_next] = key;
    e->recent_next = (e->recent_next + 1) % 64;
    if (e->n_recent < 64) e->n_recent++;
    return 0;
}

ty_status engine_submit(tycho_engine *e, tycho_request *r, ty_err *err) {
    r->e = e;
    r->seq.ops = &SEQ_OPS;
    r->seq.owner = r;
    r->t_submit = sched_now_ms();
    pthread_mutex_lock(&e->mu);
    int queued = e->n_incoming + e->sched_waiting;
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        return ty_err_set(err, TY_E_ARG, "the engine is shutting down");
    }
    if (queued >= e->max_queue) {
        pthread_mutex_unlock(&e->mu);
        return ty_err_set(err, TY_E_BUSY, "the queue is full (%d requests waiting): retry later", queued);
    }
    if (r->image.crops && !crops_already_queued(e, r->seq.image_key)) crop_pool_queue(e->crops, r->image.crops);
    if (e->incoming_tail) e->incoming_tail->next = r;
    else e->incoming = r;
    e->incoming_tail = r;
    e->n_incoming++;
    e->wake_pending = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    return TY_OK;
}

void engine_get_stats(tycho_engine *e, tycho_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->stats;
    pthread_mutex_unlock(&e->mu);
}
