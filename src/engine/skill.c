#include "engine/skill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    ST_PROMPT,         // the first prompt; its outputs give the first token
    ST_ANSWER,         // one answer token fed back per step
    ST_REASON,         // one reasoning token (or coordinate embedding) per step
    ST_ANSWER_PROMPT,  // the answer prompt after reasoning
    ST_OBJ_X,          // detect/point: x embedding fed, its hidden gives y
    ST_OBJ_Y,          // detect: y embedding fed, its hidden gives the size
    ST_OBJ_LAST,       // last embedding of an object fed: logits say whether another follows
    ST_DONE
} skill_state;

typedef struct {
    int32_t *ids;
    int n, cap;
} id_list;

typedef struct {
    id_list tokens;
    double *coords;
    int n_coords, cap_coords;
} reason_chunk;

struct skill_request {
    md_model *m;
    const tokenizer *tok;
    skill_params p;
    char *question, *object;  // owned copies
    skill_state state;
    finish_reason finish;
    int pos, dim, vocab;
    int next;        // token sampled from the last outputs
    int generated;   // tokens generated in the current phase
    int prompt_len;
    int output_tokens;
    float *hidden;   // (dim) the last hidden state the region head reads
    float *embeds;   // (rows, dim) embedding rows of the current feed
    int cap_embeds;  // rows
    id_list feed_ids, fed;
    skill_feed feed;
    float x;         // detect/point: coordinates of the object being decoded
    float y;
    int *scratch;    // (2 * vocab) for the sampler
    sampler_rng rng;
    text_stream answer;
    skill_text_fn on_text;
    void *user;
    reason_chunk *chunks;
    int n_chunks;
    char *reasoning;
    skill_grounding *grounding;
    int n_grounding;
    skill_object *objects;
    int n_objects, cap_objects;
};

void skill_params_default(skill_params *p, skill_kind kind) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->has_image = 1;
    p->length = CAPTION_NORMAL;
    p->max_tokens = 768;
    p->temperature = 0.5f;
    p->top_p = 0.3f;
    p->max_objects = 50;
}

static ty_status push_id(id_list *l, int32_t id, ty_err *err) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        int32_t *p = realloc(l->ids, (size_t)cap * sizeof *p);
        if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        l->ids = p;
        l->cap = cap;
    }
    l->ids[l->n++] = id;
    return TY_OK;
}

static ty_status push_ids(id_list *l, const int32_t *ids, int n, ty_err *err) {
    for (int i = 0; i < n; i++) {
        ty_status s = push_id(l, ids[i], err);
        if (s != TY_OK) return s;
    }
    return TY_OK;
}

// Room for `rows` embedding rows in the feed.
static ty_status reserve_embeds(skill_request *r, int rows, ty_err *err) {
    if (rows <= r->cap_embeds) return TY_OK;
    float *e = realloc(r->embeds, (size_t)rows * r->dim * sizeof(float));
    if (!e) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    r->embeds = e;
    r->cap_embeds = rows;
    return TY_OK;
}

static ty_status encode_text(skill_request *r, const char *text, id_list *out, ty_err *err) {
    int32_t *ids;
    size_t n;
    ty_status s = tokenizer_encode(r->tok, text, strlen(text), &ids, &n, err);
    if (s != TY_OK) return s;
    s = push_ids(out, ids, (int)n, err);
    free(ids);
    return s;
}

static ty_status check_params(const skill_params *p, ty_err *err) {
    if (p->max_tokens < 1) return ty_err_set(err, TY_E_ARG, "max_tokens must be at least 1");
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ty_err_set(err, TY_E_ARG, "temperature must be a number >= 0");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) return ty_err_set(err, TY_E_ARG, "top_p must be in (0, 1]");
    if (p->max_objects < 1) return ty_err_set(err, TY_E_ARG, "max_objects must be at least 1");
    switch (p->kind) {
    case SKILL_CAPTION:
        if (p->length < CAPTION_SHORT || p->length > CAPTION_LONG)
            return ty_err_set(err, TY_E_ARG, "caption length must be short, normal or long");
        return TY_OK;
    case SKILL_QUERY:
        if (!p->question || !p->question[strspn(p->question, " \t\r\n")])
            return ty_err_set(err, TY_E_ARG, "question must not be empty");
        if (p->n_refs < 0 || p->n_refs > SKILL_MAX_REFS)
            return ty_err_set(err, TY_E_ARG, "at most %d spatial refs", SKILL_MAX_REFS);
        if (p->n_refs && !p->has_image) return ty_err_set(err, TY_E_ARG, "spatial refs need an image");
        for (int i = 0; i < p->n_refs; i++) {
            const spatial_ref *s = &p->refs[i];
            if (s->n != 2 && s->n != 4)
                return ty_err_set(err, TY_E_ARG, "spatial ref %d must be [x, y] or [x_min, y_min, x_max, y_max]", i);
            for (int k = 0; k < s->n; k++)
                if (!(s->v[k] >= 0.0 && s->v[k] <= 1.0))
                    return ty_err_set(err, TY_E_ARG, "spatial ref %d: values must be in [0, 1]", i);
            if (s->n == 4 && (s->v[0] > s->v[2] || s->v[1] > s->v[3]))
                return ty_err_set(err, TY_E_ARG, "spatial ref %d: need x_min <= x_max and y_min <= y_max", i);
        }
        return TY_OK;
    case SKILL_DETECT:
    case SKILL_POINT:
        if (!p->object || !p->object[strspn(p->object, " \t\r\n")])
            return ty_err_set(err, TY_E_ARG, "object must not be empty");
        return TY_OK;
    }
    return ty_err_set(err, TY_E_ARG, "unknown skill");
}

// The first prompt's tokens and, for spatial refs, the embeddings that replace
// its coordinate and size tokens (moondream.md §10.2).
static ty_status build_prompt(skill_request *r, ty_err *err) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    id_list *ids = &r->feed_ids;
    ty_status s = TY_OK;
    const skill_params *p = &r->p;
    if (p->kind == SKILL_CAPTION) return push_ids(ids, t->caption[p->length].ids, t->caption[p->length].n, err);
    if (p->kind == SKILL_DETECT || p->kind == SKILL_POINT) {
        const md_template *pre = p->kind == SKILL_DETECT ? &t->detect_prefix : &t->point_prefix;
        const md_template *suf = p->kind == SKILL_DETECT ? &t->detect_suffix : &t->point_suffix;
        size_t n = strlen(r->object) + 2;
        char *spaced = malloc(n);
        if (!spaced) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        snprintf(spaced, n, " %s", r->object);  // objects are encoded with a leading space
        s = push_ids(ids, pre->ids, pre->n, err);
        if (s == TY_OK) s = encode_text(r, spaced, ids, err);
        free(spaced);
        if (s == TY_OK) s = push_ids(ids, suf->ids, suf->n, err);
        return s;
    }
    // Query.
    if (!p->has_image) s = push_id(ids, t->bos_id, err);
    if (s == TY_OK) s = push_ids(ids, t->query_prefix.ids, t->query_prefix.n, err);
    for (int i = 0; i < p->n_refs && s == TY_OK; i++) {
        s = push_id(ids, t->coord_id, err);
        if (s == TY_OK) s = push_id(ids, t->coord_id, err);
        if (s == TY_OK && p->refs[i].n == 4) s = push_id(ids, t->size_id, err);
    }
    if (s == TY_OK) s = encode_text(r, r->question, ids, err);
    if (s == TY_OK) s = push_ids(ids, t->query_suffix.ids, t->query_suffix.n, err);
    // Moondream 2 appends the answer suffix twice (a training artefact the
    // reference reproduces); reasoning ends with the thinking token instead.
    if (s == TY_OK && p->reasoning) s = push_id(ids, t->thinking_id, err);
    if (s == TY_OK && !p->reasoning && r->m->cfg.arch == MD_ARCH_MD2)
        s = push_ids(ids, t->query_suffix.ids, t->query_suffix.n, err);
    if (s != TY_OK || !p->n_refs) return s;

    // Spatial refs: coordinate values in order (box centres for boxes), sizes in order.
    double coords[2 * SKILL_MAX_REFS], sizes[2 * SKILL_MAX_REFS];
    int nc = 0, ns = 0;
    for (int i = 0; i < p->n_refs; i++) {
        const double *v = p->refs[i].v;
        if (p->refs[i].n == 2) {
            coords[nc++] = v[0];
            coords[nc++] = v[1];
        } else {
            coords[nc++] = (v[0] + v[2]) / 2;
            coords[nc++] = (v[1] + v[3]) / 2;
            sizes[ns++] = v[2] - v[0];
            sizes[ns++] = v[3] - v[1];
        }
    }
    int tc = 0, ts = 0;
    for (int i = 0; i < ids->n; i++) {
        tc += ids->ids[i] == t->coord_id;
        ts += ids->ids[i] == t->size_id;
    }
    if (tc != nc || ts * 2 != ns)
        return ty_err_set(err, TY_E_ARG, "question contains reserved coordinate or size tokens");
    s = reserve_embeds(r, tc + ts, err);
    int row = 0, ci = 0, si = 0;
    for (int i = 0; i < ids->n && s == TY_OK; i++) {
        if (ids->ids[i] == t->coord_id)
            s = md_region_encode_coord(r->m, (float)coords[ci++], r->embeds + (size_t)row++ * r->dim, err);
        else if (ids->ids[i] == t->size_id) {
            s = md_region_encode_size(r->m, (float)sizes[si], (float)sizes[si + 1], r->embeds + (size_t)row++ * r->dim,
                                      err);
            si += 2;
        } else {
            continue;
        }
        ids->ids[i] = -1;
    }
    return s;
}

static void set_feed(skill_request *r) {
    r->feed.n_rows = r->feed_ids.n;
    r->feed.ids = r->feed_ids.ids;
    r->feed.embeds = r->embeds;
}

// Feeds one token back through the word embedding.
static ty_status feed_token(skill_request *r, int32_t id, ty_err *err) {
    r->feed_ids.n = 0;
    ty_status s = push_id(&r->feed_ids, id, err);
    if (s == TY_OK) s = push_id(&r->fed, id, err);
    set_feed(r);
    return s;
}

// Feeds one embedding row (already written to r->embeds).
static ty_status feed_embedding(skill_request *r, ty_err *err) {
    r->feed_ids.n = 0;
    ty_status s = push_id(&r->feed_ids, -1, err);
    set_feed(r);
    return s;
}

static void finish(skill_request *r, finish_reason why) {
    r->state = ST_DONE;
    if (r->finish == FINISH_NONE) r->finish = why;
}

static ty_status emit_text(skill_request *r, const char *chunk, size_t len) {
    if (len && r->on_text) r->on_text(r->user, chunk, len);
    return TY_OK;
}

// Answer phase: stop at EOS or max_tokens, else stream the token and feed it.
static ty_status go_answer(skill_request *r, ty_err *err) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    if (r->next == t->eos_id || r->generated >= r->p.max_tokens) {
        const char *chunk;
        size_t len;
        ty_status s = text_stream_flush(&r->answer, &chunk, &len, err);
        if (s == TY_OK) emit_text(r, chunk, len);
        finish(r, r->next == t->eos_id ? FINISH_STOP : FINISH_LENGTH);
        return s;
    }
    const char *chunk;
    size_t len;
    ty_status s = text_stream_push(&r->answer, r->next, &chunk, &len, err);
    if (s != TY_OK) return s;
    emit_text(r, chunk, len);
    r->output_tokens++;
    r->state = ST_ANSWER;
    return feed_token(r, r->next, err);
}

static ty_status new_chunk(skill_request *r, ty_err *err) {
    reason_chunk *c = realloc(r->chunks, (size_t)(r->n_chunks + 1) * sizeof *c);
    if (!c) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    r->chunks = c;
    memset(&c[r->n_chunks++], 0, sizeof *c);
    return TY_OK;
}

static ty_status push_coord(reason_chunk *c, double v, ty_err *err) {
    if (c->n_coords == c->cap_coords) {
        int cap = c->cap_coords ? c->cap_coords * 2 : 8;
        double *p = realloc(c->coords, (size_t)cap * sizeof *p);
        if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        c->coords = p;
        c->cap_coords = cap;
    }
    c->coords[c->n_coords++] = v;
    return TY_OK;
}

// Bin of the largest coordinate logit, as a value in [0, 1).
static ty_status decode_coord(skill_request *r, const float *hidden, float *value, ty_err *err) {
    int bins = r->m->cfg.region.coord_out_dim;
    float *logits = malloc((size_t)bins * sizeof(float));
    if (!logits) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status s = md_region_decode_coord(r->m, hidden, logits, err);
    if (s == TY_OK) *value = (float)sampler_argmax(logits, bins) / (float)bins;
    free(logits);
    return s;
}

static int utf8_cps(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

// Reasoning text = the chunks decoded one by one and joined; a chunk with two
// or more coordinates grounds its character span with (x, y) points.
static ty_status finish_reasoning(skill_request *r, ty_err *err) {
    size_t len = 0, cap = 64;
    char *text = malloc(cap);
    r->grounding = calloc((size_t)r->n_chunks + 1, sizeof *r->grounding);
    if (!text || !r->grounding) {
        free(text);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    text[0] = '\0';
    int start = 0;
    for (int i = 0; i < r->n_chunks; i++) {
        reason_chunk *c = &r->chunks[i];
        char *piece;
        size_t n;
        ty_status s = tokenizer_decode(r->tok, c->tokens.ids, (size_t)c->tokens.n, &piece, &n, err);
        if (s != TY_OK) {
            free(text);
            return s;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *t = realloc(text, cap);
            if (!t) {
                free(piece);
                free(text);
                return ty_err_set(err, TY_E_NOMEM, "out of memory");
            }
            text = t;
        }
        memcpy(text + len, piece, n + 1);
        len += n;
        int chars = utf8_cps(piece, n);
        free(piece);
        if (c->n_coords > 1) {
            skill_grounding *g = &r->grounding[r->n_grounding++];
            g->start_idx = start;
            g->end_idx = start + chars;
            g->n_points = c->n_coords / 2;
            g->points = malloc((size_t)(g->n_points ? g->n_points : 1) * sizeof *g->points);
            if (!g->points) {
                free(text);
                return ty_err_set(err, TY_E_NOMEM, "out of memory");
            }
            for (int k = 0; k < g->n_points; k++) {
                g->points[k][0] = c->coords[2 * k];
                g->points[k][1] = c->coords[2 * k + 1];
            }
        }
        start += chars;
    }
    r->reasoning = text;
    return TY_OK;
}

// Reasoning phase: stop at the answer token or max_tokens, then prefill the
// answer prompt; otherwise feed the token (a coordinate token as the
// encoding of the coordinate decoded from the hidden state that chose it).
static ty_status go_reason(skill_request *r, ty_err *err) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    ty_status s;
    if (r->next == t->answer_id || r->generated >= r->p.max_tokens) {
        if ((s = finish_reasoning(r, err)) != TY_OK) return s;
        r->feed_ids.n = 0;
        if ((s = push_ids(&r->feed_ids, t->query_suffix.ids, t->query_suffix.n, err)) != TY_OK) return s;
        if ((s = push_ids(&r->fed, t->query_suffix.ids, t->query_suffix.n, err)) != TY_OK) return s;
        set_feed(r);
        r->generated = 0;
        r->state = ST_ANSWER_PROMPT;
        return TY_OK;
    }
    if (r->next == t->start_ground_points_id || r->next == t->end_ground_id)
        if ((s = new_chunk(r, err)) != TY_OK) return s;
    reason_chunk *c = &r->chunks[r->n_chunks - 1];
    if ((s = push_id(&c->tokens, r->next, err)) != TY_OK) return s;
    r->output_tokens++;
    r->state = ST_REASON;
    if (r->next != t->coord_id) return feed_token(r, r->next, err);
    float v = 0;
    if ((s = decode_coord(r, r->hidden, &v, err)) != TY_OK) return s;
    if ((s = push_coord(c, v, err)) != TY_OK) return s;
    if ((s = reserve_embeds(r, 1, err)) != TY_OK) return s;
    if ((s = md_region_encode_coord(r->m, v, r->embeds, err)) != TY_OK) return s;
    return feed_embedding(r, err);
}

static ty_status add_object(skill_request *r, skill_object o, ty_err *err) {
    if (r->n_objects == r->cap_objects) {
        int cap = r->cap_objects ? r->cap_objects * 2 : 8;
        skill_object *p = realloc(r->objects, (size_t)cap * sizeof *p);
        if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        r->objects = p;
        r->cap_objects = cap;
    }
    r->objects[r->n_objects++] = o;
    return TY_OK;
}

// Detect/point: another object follows unless the model chose EOS (any other
// token means "another object") or max_objects is reached.
static ty_status go_objects(skill_request *r, ty_err *err) {
    if (r->next == r->m->cfg.tok.eos_id) {
        finish(r, FINISH_STOP);
        return TY_OK;
    }
    if (r->n_objects >= r->p.max_objects) {
        finish(r, FINISH_LENGTH);
        return TY_OK;
    }
    ty_status s = decode_coord(r, r->hidden, &r->x, err);
    if (s == TY_OK) s = reserve_embeds(r, 1, err);
    if (s == TY_OK) s = md_region_encode_coord(r->m, r->x, r->embeds, err);
    if (s == TY_OK) s = feed_embedding(r, err);
    r->state = ST_OBJ_X;
    return s;
}

// A size bin maps to 2^((bin / 1023) * 10 - 10), evaluated in f32.
static float size_from_bin(int bin) { return powf(2.0f, ((float)bin / 1023.0f) * 10.0f - 10.0f); }

static ty_status consume_object(skill_request *r, float *logits, const float *hidden, ty_err *err) {
    ty_status s = TY_OK;
    memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
    if (r->state == ST_OBJ_X) {
        s = decode_coord(r, r->hidden, &r->y, err);
        if (s == TY_OK && r->p.kind == SKILL_POINT)
            s = add_object(r, (skill_object){.x = r->x, .y = r->y}, err);
        if (s == TY_OK) s = md_region_encode_coord(r->m, r->y, r->embeds, err);
        if (s == TY_OK) s = feed_embedding(r, err);
        r->state = r->p.kind == SKILL_DETECT ? ST_OBJ_Y : ST_OBJ_LAST;
        return s;
    }
    if (r->state == ST_OBJ_Y) {
        int bins = r->m->cfg.region.size_out_dim / 2;
        float *sl = malloc((size_t)bins * 2 * sizeof(float));
        if (!sl) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        s = md_region_decode_size(r->m, r->hidden, sl, err);
        float w = size_from_bin(sampler_argmax(sl, bins)), h = size_from_bin(sampler_argmax(sl + bins, bins));
        free(sl);
        double x = r->x, y = r->y;
        if (s == TY_OK)
            s = add_object(r, (skill_object){.x_min = x - w / 2.0, .y_min = y - h / 2.0,
                                             .x_max = x + w / 2.0, .y_max = y + h / 2.0}, err);
        if (s == TY_OK) s = md_region_encode_size(r->m, w, h, r->embeds, err);
        if (s == TY_OK) s = feed_embedding(r, err);
        r->state = ST_OBJ_LAST;
        return s;
    }
    r->next = sampler_argmax(logits, r->vocab);  // ST_OBJ_LAST: detect/point are greedy
    return go_objects(r, err);
}

ty_status skill_init(skill_request **out, md_model *m, const tokenizer *tok, const skill_params *p, int start_pos,
                     skill_text_fn on_text, void *user, ty_err *err) {
    *out = NULL;
    ty_status s = check_params(p, err);
    if (s != TY_OK) return s;
    skill_request *r = calloc(1, sizeof *r);
    if (!r) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    r->m = m;
    r->tok = tok;
    r->p = *p;
    r->dim = m->cfg.text.dim;
    r->vocab = m->cfg.text.vocab_size;
    r->pos = start_pos;
    r->on_text = on_text;
    r->user = user;
    r->question = p->question ? strdup(p->question) : NULL;
    r->object = p->object ? strdup(p->object) : NULL;
    r->p.question = r->question;
    r->p.object = r->object;
    r->hidden = calloc((size_t)r->dim, sizeof(float));
    r->scratch = malloc((size_t)r->vocab * 2 * sizeof(int));
    text_stream_init(&r->answer, tok);
    sampler_rng_seed(&r->rng, p->seed);
    if ((p->question && !r->question) || (p->object && !r->object) || !r->hidden || !r->scratch)
        s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (s == TY_OK) s = new_chunk(r, err);
    if (s == TY_OK) s = build_prompt(r, err);
    if (s == TY_OK && start_pos + r->feed_ids.n >= m->cfg.text.max_context)
        s = ty_err_set(err, TY_E_LIMIT, "prompt of %d tokens does not fit the context of %d positions",
                       start_pos + r->feed_ids.n, m->cfg.text.max_context);
    if (s != TY_OK) {
        skill_free(r);
        return s;
    }
    r->prompt_len = r->feed_ids.n;
    set_feed(r);
    r->state = ST_PROMPT;
    *out = r;
    return TY_OK;
}

void skill_free(skill_request *r) {
    if (!r) return;
    free(r->question);
    free(r->object);
    free(r->hidden);
    free(r->embeds);
    free(r->scratch);
    free(r->feed_ids.ids);
    free(r->fed.ids);
    text_stream_free(&r->answer);
    for (int i = 0; i < r->n_chunks; i++) {
        free(r->chunks[i].tokens.ids);
        free(r->chunks[i].coords);
    }
    free(r->chunks);
    for (int i = 0; i < r->n_grounding; i++) free(r->grounding[i].points);
    free(r->grounding);
    free(r->reasoning);
    free(r->objects);
    free(r);
}

const skill_feed *skill_next_feed(skill_request *r) {
    if (r->state == ST_DONE) return NULL;
    if (r->pos + r->feed.n_rows > r->m->cfg.text.max_context) {  // the context is full
        const char *chunk;
        size_t len;
        ty_err err;
        if (text_stream_flush(&r->answer, &chunk, &len, &err) == TY_OK) emit_text(r, chunk, len);
        finish(r, FINISH_LENGTH);
        return NULL;
    }
    return &r->feed;
}

int skill_pos(const skill_request *r) { return r->pos; }

ty_status skill_consume(skill_request *r, float *logits, const float *hidden, ty_err *err) {
    if (r->state == ST_DONE) return TY_OK;
    const md_tokenizer_config *t = &r->m->cfg.tok;
    r->pos += r->feed.n_rows;
    const skill_params *p = &r->p;
    ty_status s;
    switch (r->state) {
    case ST_PROMPT:
        if (p->kind == SKILL_DETECT || p->kind == SKILL_POINT) {
            r->next = sampler_argmax(logits, r->vocab);
            memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
            s = go_objects(r, err);
        } else {
            r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
            memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
            s = p->reasoning ? go_reason(r, err) : go_answer(r, err);
        }
        break;
    case ST_ANSWER:
        logits[t->answer_id] = -INFINITY;
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        r->generated++;
        s = go_answer(r, err);
        break;
    case ST_REASON:
        logits[t->eos_id] = -INFINITY;
        logits[t->size_id] = -INFINITY;
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
        r->generated++;
        s = go_reason(r, err);
        break;
    case ST_ANSWER_PROMPT:
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        s = go_answer(r, err);
        break;
    default:
        s = consume_object(r, logits, hidden, err);
        break;
    }
    if (s != TY_OK) finish(r, FINISH_ERROR);
    return s;
}

void skill_abort(skill_request *r, finish_reason why) { finish(r, why); }

finish_reason skill_finish(const skill_request *r) { return r->finish; }
const char *skill_text(const skill_request *r) { return r->answer.text ? r->answer.text : ""; }
const char *skill_reasoning(const skill_request *r) { return r->p.reasoning ? r->reasoning : NULL; }
int skill_grounding_count(const skill_request *r) { return r->n_grounding; }
const skill_grounding *skill_grounding_at(const skill_request *r, int i) { return &r->grounding[i]; }
int skill_object_count(const skill_request *r) { return r->n_objects; }
const skill_object *skill_object_at(const skill_request *r, int i) { return &r->objects[i]; }
const int32_t *skill_fed_ids(const skill_request *r, int *n) {
    *n = r->fed.n;
    return r->fed.ids;
}
int skill_prompt_tokens(const skill_request *r) { return r->prompt_len; }
int skill_output_tokens(const skill_request *r) { return r->output_tokens; }
