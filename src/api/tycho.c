// The public C API (include/tycho.h): options and parameters in, results out.
// The engine thread and the scheduler glue are in engine.c.
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/engine.h"
#include "core/json.h"

_Static_assert((int)TYCHO_E_CANCELLED == (int)TY_E_CANCELLED, "public and internal status codes must agree");
_Static_assert((int)TYCHO_E_NOT_FOUND == (int)TY_E_NOT_FOUND, "public and internal status codes must agree");

static tycho_status fail(tycho_error *out, const ty_err *e) {
    if (out) {
        out->code = (tycho_status)e->code;
        snprintf(out->message, sizeof out->message, "%s", e->msg);
    }
    return (tycho_status)e->code;
}

const char *tycho_status_name(tycho_status s) { return ty_status_name((ty_status)s); }

static const char *error_type(tycho_status s) {
    switch (s) {
    case TYCHO_E_ARG:
    case TYCHO_E_FORMAT:
    case TYCHO_E_UNSUPPORTED:
    case TYCHO_E_LIMIT:
    case TYCHO_E_NOT_FOUND: return "invalid_request_error";
    case TYCHO_E_BUSY: return "rate_limit_error";
    case TYCHO_E_TIMEOUT: return "timeout_error";
    case TYCHO_E_CANCELLED: return "cancelled";
    default: return "server_error";
    }
}

static void add_error(cJSON *o, tycho_status code, const char *message, const char *param) {
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message ? message : "");
    cJSON_AddStringToObject(e, "type", error_type(code));
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", tycho_status_name(code));
}

char *tycho_error_json(tycho_status code, const char *message, const char *param) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    add_error(o, code, message, param);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void tycho_options_default(tycho_options *o) {
    memset(o, 0, sizeof *o);
    o->device = "cpu";
    o->prefix_cache = 1;
}

tycho_status tycho_engine_init(tycho_engine **out, const tycho_options *o, tycho_error *err) {
    ty_err e = {0};
    if (!out) {
        ty_err_set(&e, TY_E_ARG, "out is NULL");
        return fail(err, &e);
    }
    ty_status s = engine_init(out, o, &e);
    return s == TY_OK ? TYCHO_OK : fail(err, &e);
}

void tycho_engine_free(tycho_engine *e) { engine_free(e); }

void tycho_engine_get_stats(tycho_engine *e, tycho_engine_stats *s) { engine_get_stats(e, s); }

void tycho_request_params_default(tycho_request_params *p, tycho_skill skill) {
    memset(p, 0, sizeof *p);
    skill_params d;
    skill_params_default(&d, skill == TYCHO_SKILL_QUERY ? SKILL_QUERY : SKILL_CAPTION);
    p->skill = skill;
    p->max_tokens = d.max_tokens;
    p->temperature = skill == TYCHO_SKILL_DETECT || skill == TYCHO_SKILL_POINT ? 0.0f : d.temperature;
    p->top_p = d.top_p;
    p->max_objects = d.max_objects;
}

// ---- submit ----------------------------------------------------------------------

static ty_status to_skill_params(const tycho_request_params *p, int has_image, skill_params *sp, ty_err *err) {
    static const skill_kind kinds[] = {SKILL_CAPTION, SKILL_QUERY, SKILL_DETECT, SKILL_POINT};
    if ((unsigned)p->skill > TYCHO_SKILL_POINT) return ty_err_set(err, TY_E_ARG, "unknown skill %d", (int)p->skill);
    skill_params_default(sp, kinds[p->skill]);
    sp->has_image = has_image;
    if (p->skill == TYCHO_SKILL_CAPTION) {
        if (!p->length || !strcmp(p->length, "normal")) sp->length = CAPTION_NORMAL;
        else if (!strcmp(p->length, "short")) sp->length = CAPTION_SHORT;
        else if (!strcmp(p->length, "long")) sp->length = CAPTION_LONG;
        else return ty_err_set(err, TY_E_ARG, "length must be \"short\", \"normal\" or \"long\"");
    }
    sp->question = p->question;
    sp->reasoning = p->reasoning != 0;
    sp->object = p->object;
    if (p->n_spatial_refs < 0 || p->n_spatial_refs > SKILL_MAX_REFS || (p->n_spatial_refs && !p->spatial_refs))
        return ty_err_set(err, TY_E_ARG, "spatial_refs: at most %d", SKILL_MAX_REFS);
    sp->n_refs = p->skill == TYCHO_SKILL_QUERY ? p->n_spatial_refs : 0;
    for (int i = 0; i < sp->n_refs; i++) {
        sp->refs[i].n = p->spatial_refs[i].n;
        memcpy(sp->refs[i].v, p->spatial_refs[i].v, sizeof sp->refs[i].v);
    }
    sp->max_tokens = p->max_tokens;
    sp->temperature = p->temperature;
    sp->top_p = p->top_p;
    sp->max_objects = p->max_objects;
    return TY_OK;
}

static int parse_key(const char *hex, pc_key *k) {
    if (strlen(hex) != 32) return -1;
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        int c = hex[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v[i / 16] = v[i / 16] << 4 | (uint64_t)d;
    }
    k->hi = v[0];
    k->lo = v[1];
    return 0;
}

static ty_status load_image(tycho_request *r, const tycho_request_params *p, ty_err *err) {
    int sources = (p->image_bytes != NULL) + (p->image_rgb != NULL) + (p->image_key != NULL && *p->image_key);
    if (sources > 1) return ty_err_set(err, TY_E_ARG, "give one of image_bytes, image_rgb and image_key");
    if (p->image_bytes) return image_decode(&r->img, p->image_bytes, p->image_len, NULL, err);
    if (p->image_rgb) {
        image_limits lim = image_limits_default();
        if (p->image_width < 1 || p->image_height < 1)
            return ty_err_set(err, TY_E_ARG, "image_width and image_height must be positive");
        if ((int64_t)p->image_width * p->image_height > lim.max_pixels)
            return ty_err_set(err, TY_E_LIMIT, "image of %dx%d pixels is over the limit of %lld", p->image_width,
                              p->image_height, (long long)lim.max_pixels);
        size_t n = (size_t)p->image_width * p->image_height * 3;
        r->img.rgb = malloc(n);
        if (!r->img.rgb) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        memcpy(r->img.rgb, p->image_rgb, n);
        r->img.width = p->image_width;
        r->img.height = p->image_height;
    }
    return TY_OK;
}

static void request_destroy(tycho_request *r) {
    crop_job_release(&r->crop);  // a no-op once the engine ended the request (it released the job)
    skill_free(r->sk);
    image_rgb_free(&r->img);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static uint64_t fresh_seed(tycho_engine *e) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (atomic_fetch_add(&e->seed_counter, 1) << 40);
    return x * 0x9e3779b97f4a7c15ull;
}

tycho_status tycho_submit(tycho_engine *e, const tycho_request_params *p, tycho_request **out, tycho_error *err) {
    ty_err te = {0};
    if (out) *out = NULL;
    if (!e || !p || !out) {
        ty_err_set(&te, TY_E_ARG, "engine, params and out are required");
        return fail(err, &te);
    }
    tycho_request *r = calloc(1, sizeof *r);
    if (!r) {
        ty_err_set(&te, TY_E_NOMEM, "out of memory");
        return fail(err, &te);
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->skill = p->skill;
    ty_status s = (unsigned)p->skill > TYCHO_SKILL_ENCODE_IMAGE ? ty_err_set(&te, TY_E_ARG, "unknown skill") : TY_OK;
    if (s == TY_OK) s = load_image(r, p, &te);
    int by_key = p->image_key && *p->image_key;
    int has_image = r->img.rgb || by_key;
    if (s == TY_OK && by_key) {
        if (parse_key(p->image_key, &r->seq.image_key))
            s = ty_err_set(&te, TY_E_ARG, "image_key must be 32 lowercase hex digits");
        else if (!e->sch.use_cache)
            s = ty_err_set(&te, TY_E_NOT_FOUND, "image keys need the prefix cache (it is off)");
        else if (!r->seq.image_key.lo && !r->seq.image_key.hi)  // the text-only root's key: never an image's
            s = ty_err_set(&te, TY_E_NOT_FOUND, "no image has this image_key");
    }
    if (s == TY_OK && !has_image && p->skill != TYCHO_SKILL_QUERY)
        s = ty_err_set(&te, TY_E_ARG, "this skill needs an image");
    if (s == TY_OK && r->img.rgb) r->seq.image_key = engine_image_key(e, &r->img);
    if (s == TY_OK && has_image)
        snprintf(r->image_key, sizeof r->image_key, "%016llx%016llx", (unsigned long long)r->seq.image_key.hi,
                 (unsigned long long)r->seq.image_key.lo);
    int start = has_image ? 1 + MD_PATCHES : 0;
    if (s == TY_OK && p->skill == TYCHO_SKILL_ENCODE_IMAGE) {
        if (!e->sch.use_cache) s = ty_err_set(&te, TY_E_UNSUPPORTED, "encode_image needs the prefix cache (it is off)");
        r->seq.prefix_only = 1;
        r->seq.max_positions = start;
    } else if (s == TY_OK) {
        skill_params sp;
        s = to_skill_params(p, has_image, &sp, &te);
        sp.seed = p->has_seed ? p->seed : fresh_seed(e);
        sp.ignore_eos = e->ignore_eos;
        if (s == TY_OK) s = skill_init(&r->sk, e->m, e->tok, &sp, start, p->on_text, p->user, &te);
        if (s == TY_OK && skill_requested_positions(r->sk) > e->m->cfg.text.max_context)
            s = ty_err_set(&te, TY_E_LIMIT,
                           "prompt (%d positions) plus max_tokens/max_objects needs %d positions; the context is %d",
                           start + skill_prompt_tokens(r->sk), skill_requested_positions(r->sk),
                           e->m->cfg.text.max_context);
        if (s == TY_OK) r->seq.max_positions = skill_max_positions(r->sk);
    }
    r->seq.has_image = has_image;
    r->image.rgb = &r->img;
    r->crop.img = &r->img;
    r->image.crops = r->img.rgb ? &r->crop : NULL;
    r->seq.image = r->img.rgb ? &r->image : NULL;
    if (s == TY_OK) s = engine_submit(e, r, &te);
    if (s != TY_OK) {
        request_destroy(r);
        return fail(err, &te);
    }
    *out = r;
    return TYCHO_OK;
}

void tycho_cancel(tycho_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    if (done) return;
    atomic_store(&r->cancel, 1);
    engine_wake(r->e);
}

tycho_status tycho_wait(tycho_request *r, int timeout_ms, tycho_error *err) {
    ty_err te = {0};
    if (!r) {
        ty_err_set(&te, TY_E_ARG, "request is NULL");
        return fail(err, &te);
    }
    pthread_mutex_lock(&r->mu);
    if (timeout_ms < 0) {
        while (!r->done) pthread_cond_wait(&r->cond, &r->mu);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        while (!r->done && pthread_cond_timedwait(&r->cond, &r->mu, &ts) != ETIMEDOUT) {
        }
    }
    int done = r->done;
    ty_status st = r->status;
    te = r->err;
    pthread_mutex_unlock(&r->mu);
    if (!done) {
        ty_err_set(&te, TY_E_TIMEOUT, "the request is still running");
        return fail(err, &te);
    }
    return st == TY_OK ? TYCHO_OK : fail(err, &te);
}

void tycho_request_free(tycho_request *r) {
    if (!r) return;
    tycho_cancel(r);
    tycho_wait(r, -1, NULL);  // the engine is done with it once it is done
    request_destroy(r);
}

// ---- results ---------------------------------------------------------------------

static const char *finish_name(const tycho_request *r) {
    if (r->status == TY_E_CANCELLED) return "cancelled";
    if (r->status != TY_OK) return "error";
    if (!r->sk) return "stop";
    return skill_finish(r->sk) == FINISH_LENGTH ? "length" : "stop";
}

const char *tycho_request_finish_reason(const tycho_request *r) { return finish_name(r); }
const char *tycho_request_text(const tycho_request *r) { return r->sk ? skill_text(r->sk) : ""; }
const char *tycho_request_reasoning(const tycho_request *r) { return r->sk ? skill_reasoning(r->sk) : NULL; }
int tycho_request_grounding_count(const tycho_request *r) {
    return r->sk && skill_reasoning(r->sk) ? skill_grounding_count(r->sk) : 0;
}

int tycho_request_grounding(const tycho_request *r, int i, int *start_idx, int *end_idx, const double **points) {
    if (i < 0 || i >= tycho_request_grounding_count(r)) return 0;
    const skill_grounding *g = skill_grounding_at(r->sk, i);
    if (start_idx) *start_idx = g->start_idx;
    if (end_idx) *end_idx = g->end_idx;
    if (points) *points = &g->points[0][0];
    return g->n_points;
}

int tycho_request_object_count(const tycho_request *r) { return r->sk ? skill_object_count(r->sk) : 0; }

void tycho_request_object(const tycho_request *r, int i, double out[4]) {
    memset(out, 0, 4 * sizeof *out);
    if (i < 0 || i >= tycho_request_object_count(r)) return;
    const skill_object *o = skill_object_at(r->sk, i);
    if (r->skill == TYCHO_SKILL_DETECT) {
        out[0] = o->x_min, out[1] = o->y_min, out[2] = o->x_max, out[3] = o->y_max;
    } else {
        out[0] = o->x, out[1] = o->y;
    }
}

const char *tycho_request_image_key(const tycho_request *r) { return r->image_key; }

void tycho_request_metrics(const tycho_request *r, tycho_metrics *m) {
    memset(m, 0, sizeof *m);
    const sched_seq *q = &r->seq;
    m->input_tokens = (q->has_image ? 1 + MD_PATCHES : 0) + (r->sk ? skill_prompt_tokens(r->sk) : 0);
    m->output_tokens = r->sk ? skill_output_tokens(r->sk) : 0;
    m->cached_tokens = q->cached_tokens;
    if (!q->t_admit) return;  // never ran
    double first = q->t_first ? q->t_first : r->t_done;
    m->queue_time_ms = q->t_admit - r->t_submit;
    m->prefill_time_ms = first - q->t_admit;
    m->decode_time_ms = r->t_done > first ? r->t_done - first : 0;
    m->ttft_ms = first - r->t_submit;
}

static void add_results(cJSON *o, const tycho_request *r) {
    switch (r->skill) {
    case TYCHO_SKILL_CAPTION: cJSON_AddStringToObject(o, "caption", tycho_request_text(r)); break;
    case TYCHO_SKILL_QUERY:
        if (tycho_request_reasoning(r)) {
            cJSON *re = cJSON_AddObjectToObject(o, "reasoning");
            cJSON_AddStringToObject(re, "text", tycho_request_reasoning(r));
            cJSON *g = cJSON_AddArrayToObject(re, "grounding");
            for (int i = 0; i < tycho_request_grounding_count(r); i++) {
                int a, b;
                const double *pts;
                int n = tycho_request_grounding(r, i, &a, &b, &pts);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "start_idx", a);
                cJSON_AddNumberToObject(e, "end_idx", b);
                cJSON *list = cJSON_AddArrayToObject(e, "points");
                for (int k = 0; k < n; k++) {
                    cJSON *xy = cJSON_CreateArray();
                    cJSON_AddItemToArray(xy, json_exact_number(pts[2 * k]));
                    cJSON_AddItemToArray(xy, json_exact_number(pts[2 * k + 1]));
                    cJSON_AddItemToArray(list, xy);
                }
                cJSON_AddItemToArray(g, e);
            }
        }
        cJSON_AddStringToObject(o, "answer", tycho_request_text(r));
        break;
    case TYCHO_SKILL_DETECT:
    case TYCHO_SKILL_POINT: {
        int detect = r->skill == TYCHO_SKILL_DETECT;
        cJSON *list = cJSON_AddArrayToObject(o, detect ? "objects" : "points");
        static const char *const box[] = {"x_min", "y_min", "x_max", "y_max"}, *const pt[] = {"x", "y"};
        for (int i = 0; i < tycho_request_object_count(r); i++) {
            double v[4];
            tycho_request_object(r, i, v);
            cJSON *e = cJSON_CreateObject();
            for (int k = 0; k < (detect ? 4 : 2); k++) cJSON_AddItemToObject(e, detect ? box[k] : pt[k], json_exact_number(v[k]));
            cJSON_AddItemToArray(list, e);
        }
        break;
    }
    case TYCHO_SKILL_ENCODE_IMAGE: cJSON_AddStringToObject(o, "image_key", r->image_key); break;
    }
}

char *tycho_request_json(const tycho_request *r, int with_metrics) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    pthread_mutex_lock((pthread_mutex_t *)&r->mu);
    int done = r->done;
    ty_status st = r->status;
    ty_err err = r->err;
    pthread_mutex_unlock((pthread_mutex_t *)&r->mu);
    if (done && st != TY_OK && st != TY_E_CANCELLED) {
        add_error(o, (tycho_status)st, err.msg, NULL);
    } else {
        add_results(o, r);
        cJSON_AddStringToObject(o, "finish_reason", done ? finish_name(r) : "running");
    }
    if (with_metrics) {
        tycho_metrics m;
        tycho_request_metrics(r, &m);
        cJSON *mt = cJSON_AddObjectToObject(o, "metrics");
        cJSON_AddNumberToObject(mt, "input_tokens", m.input_tokens);
        cJSON_AddNumberToObject(mt, "output_tokens", m.output_tokens);
        cJSON_AddNumberToObject(mt, "cached_tokens", m.cached_tokens);
        cJSON_AddNumberToObject(mt, "queue_time_ms", m.queue_time_ms);
        cJSON_AddNumberToObject(mt, "prefill_time_ms", m.prefill_time_ms);
        cJSON_AddNumberToObject(mt, "decode_time_ms", m.decode_time_ms);
        cJSON_AddNumberToObject(mt, "ttft_ms", m.ttft_ms);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void tycho_free(void *p) { free(p); }
