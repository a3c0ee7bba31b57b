#include "engine/skill_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

ty_status skill_push_id(id_list *l, int32_t id, ty_err *err) {
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

ty_status skill_push_ids(id_list *l, const int32_t *ids, int n, ty_err *err) {
    for (int i = 0; i < n; i++) {
        ty_status s = skill_push_id(l, ids[i], err);
        if (s != TY_OK) return s;
    }
    return TY_OK;
}

// Room for `rows` embedding rows in the feed.
ty_status skill_reserve_embeds(skill_request *r, int rows, ty_err *err) {
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
    s = skill_push_ids(out, ids, (int)n, err);
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
    if (p->kind == SKILL_CAPTION) return skill_push_ids(ids, t->caption[p->length].ids, t->caption[p->length].n, err);
    if (p->kind == SKILL_DETECT || p->kind == SKILL_POINT) {
        const md_template *pre = p->kind == SKILL_DETECT ? &t->detect_prefix : &t->point_prefix;
        const md_template *suf = p->kind == SKILL_DETECT ? &t->detect_suffix : &t->point_suffix;
        size_t n = strlen(r->object) + 2;
        char *spaced = malloc(n);
        if (!spaced) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        snprintf(spaced, n, " %s", r->object);  // objects are encoded with a leading space
        s = skill_push_ids(ids, pre->ids, pre->n, err);
        if (s == TY_OK) s = encode_text(r, spaced, ids, err);
        free(spaced);
        if (s == TY_OK) s = skill_push_ids(ids, suf->ids, suf->n, err);
        return s;
    }
    // Query.
    if (!p->has_image) s = skill_push_id(ids, t->bos_id, err);
    if (s == TY_OK) s = skill_push_ids(ids, t->query_prefix.ids, t->query_prefix.n, err);
    for (int i = 0; i < p->n_refs && s == TY_OK; i++) {
        s = skill_push_id(ids, t->coord_id, err);
        if (s == TY_OK) s = skill_push_id(ids, t->coord_id, err);
        if (s == TY_OK && p->refs[i].n == 4) s = skill_push_id(ids, t->size_id, err);
    }
    if (s == TY_OK) s = encode_text(r, r->question, ids, err);
    if (s == TY_OK) s = skill_push_ids(ids, t->query_suffix.ids, t->query_suffix.n, err);
    // Moondream 2 appends the answer suffix twice (a training artefact the
    // reference reproduces); reasoning ends with the thinking token instead.
    if (s == TY_OK && p->reasoning) s = skill_push_id(ids, t->thinking_id, err);
    if (s == TY_OK && !p->reasoning && r->m->cfg.arch == MD_ARCH_MD2)
        s = skill_push_ids(ids, t->query_suffix.ids, t->query_suffix.n, err);
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
    s = skill_reserve_embeds(r, tc + ts, err);
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

void skill_set_feed(skill_request *r) {
    r->feed.n_rows = r->feed_ids.n;
    r->feed.ids = r->feed_ids.ids;
    r->feed.embeds = r->embeds;
}

// Feeds one token back through the word embedding.
ty_status skill_feed_token(skill_request *r, int32_t id, ty_err *err) {
    r->feed_ids.n = 0;
    ty_status s = skill_push_id(&r->feed_ids, id, err);
    if (s == TY_OK) s = skill_push_id(&r->fed, id, err);
    skill_set_feed(r);
    return s;
}

// Feeds one embedding row (already written to r->embeds).
ty_status skill_feed_embedding(skill_request *r, ty_err *err) {
    r->feed_ids.n = 0;
    ty_status s = skill_push_id(&r->feed_ids, -1, err);
    skill_set_feed(r);
    return s;
}

void skill_finish_as(skill_request *r, finish_reason why) {
    r->state = ST_DONE;
    if (r->finish == FINISH_NONE) r->finish = why;
}

ty_status skill_emit_text(skill_request *r, const char *chunk, size_t len) {
    if (len && r->on_text) r->on_text(r->user, chunk, len);
    return TY_OK;
}

ty_status skill_init(skill_request **out, md_model *m, const tokenizer *tok, const skill_params *p, int start_pos,
                     skill_text_fn on_text, void *user, ty_err *err) {
    *out = NULL;
    ty_status s = check_params(p, err);
    if (s != TY_OK) return s;
    if (!m->region.present && (p->kind == SKILL_DETECT || p->kind == SKILL_POINT || p->n_refs))
        return ty_err_set(err, TY_E_UNSUPPORTED, "this model has no region head: %s needs one",
                          p->kind == SKILL_DETECT ? "detect" : p->kind == SKILL_POINT ? "point" : "spatial_refs");
    skill_request *r = calloc(1, sizeof *r);
    if (!r) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    r->m = m;
    r->tok = tok;
    r->p = *p;
    r->dim = m->cfg.text.dim;
    r->vocab = m->cfg.text.vocab_size;
    r->pos = start_pos;
    r->start_pos = start_pos;
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
    if (s == TY_OK) s = skill_new_chunk(r, err);
    if (s == TY_OK) s = build_prompt(r, err);
    if (s == TY_OK && start_pos + r->feed_ids.n >= m->cfg.text.max_context)
        s = ty_err_set(err, TY_E_LIMIT, "prompt of %d tokens does not fit the context of %d positions",
                       start_pos + r->feed_ids.n, m->cfg.text.max_context);
    if (s != TY_OK) {
        skill_free(r);
        return s;
    }
    r->prompt_len = r->feed_ids.n;
    skill_set_feed(r);
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
        if (text_stream_flush(&r->answer, &chunk, &len, &err) == TY_OK) skill_emit_text(r, chunk, len);
        skill_finish_as(r, FINISH_LENGTH);
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
            r->next = skill_object_next(r, logits);
            memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
            s = skill_go_objects(r, err);
        } else {
            r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
            memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
            s = p->reasoning ? skill_go_reason(r, err) : skill_go_answer(r, err);
        }
        break;
    case ST_ANSWER:
        logits[t->answer_id] = -INFINITY;
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        r->generated++;
        s = skill_go_answer(r, err);
        break;
    case ST_REASON:
        logits[t->eos_id] = -INFINITY;
        logits[t->size_id] = -INFINITY;
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
        r->generated++;
        s = skill_go_reason(r, err);
        break;
    case ST_ANSWER_PROMPT:
        r->next = sampler_sample(logits, r->vocab, p->temperature, p->top_p, &r->rng, r->scratch);
        s = skill_go_answer(r, err);
        break;
    default:
        s = skill_consume_object(r, logits, hidden, err);
        break;
    }
    if (s != TY_OK) skill_finish_as(r, FINISH_ERROR);
    return s;
}

void skill_abort(skill_request *r, finish_reason why) { skill_finish_as(r, why); }

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

int skill_requested_positions(const skill_request *r) {
    int64_t n = (int64_t)r->start_pos + r->prompt_len;
    if (r->p.kind == SKILL_DETECT) n += 3 * (int64_t)r->p.max_objects;  // x, y, size per object
    else if (r->p.kind == SKILL_POINT) n += 2 * (int64_t)r->p.max_objects;
    else n += r->p.max_tokens;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int skill_max_positions(const skill_request *r) {
    int64_t n = skill_requested_positions(r);
    if (r->p.kind == SKILL_QUERY && r->p.reasoning)  // reasoning, the answer prompt, then the answer
        n += (int64_t)r->m->cfg.tok.query_suffix.n + r->p.max_tokens;
    int64_t ctx = r->m->cfg.text.max_context;
    return (int)(n < ctx ? n : ctx);
}
