// The state transitions of a skill request: the answer phase, the reasoning
// phase with grounding, and the detect/point object loop (moondream.md §11-12).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/skill_impl.h"

// Streams what the answer's text decoder still holds and ends the request.
static ty_status answer_finish(skill_request *r, finish_reason why, ty_err *err) {
    const char *chunk;
    size_t len;
    ty_status s = text_stream_flush(&r->answer, &chunk, &len, err);
    if (s == TY_OK) skill_emit_text(r, chunk, len);
    skill_finish_as(r, why);
    return s;
}

// Answer phase: stop at EOS (unless ignore_eos), else stream the token; feed
// it unless it is the max_tokens-th. The reference feeds that last token too
// and throws away the sample it gives; tycho skips that forward (one of the
// three forwards of a 3-token answer).
ty_status skill_go_answer(skill_request *r, ty_err *err) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    if (r->next == t->eos_id && !r->p.ignore_eos) return answer_finish(r, FINISH_STOP, err);
    const char *chunk;
    size_t len;
    ty_status s = text_stream_push(&r->answer, r->next, &chunk, &len, err);
    if (s != TY_OK) return s;
    skill_emit_text(r, chunk, len);
    r->output_tokens++;
    if (r->generated + 1 >= r->p.max_tokens) return answer_finish(r, FINISH_LENGTH, err);
    r->state = ST_ANSWER;
    return skill_feed_token(r, r->next, err);
}

ty_status skill_new_chunk(skill_request *r, ty_err *err) {
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
ty_status skill_go_reason(skill_request *r, ty_err *err) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    ty_status s;
    if (r->next == t->answer_id || r->generated >= r->p.max_tokens) {
        if ((s = finish_reasoning(r, err)) != TY_OK) return s;
        r->feed_ids.n = 0;
        if ((s = skill_push_ids(&r->feed_ids, t->query_suffix.ids, t->query_suffix.n, err)) != TY_OK) return s;
        if ((s = skill_push_ids(&r->fed, t->query_suffix.ids, t->query_suffix.n, err)) != TY_OK) return s;
        skill_set_feed(r);
        r->generated = 0;
        r->state = ST_ANSWER_PROMPT;
        return TY_OK;
    }
    if (r->next == t->start_ground_points_id || r->next == t->end_ground_id)
        if ((s = skill_new_chunk(r, err)) != TY_OK) return s;
    reason_chunk *c = &r->chunks[r->n_chunks - 1];
    if ((s = skill_push_id(&c->tokens, r->next, err)) != TY_OK) return s;
    r->output_tokens++;
    r->state = ST_REASON;
    if (r->next != t->coord_id) return skill_feed_token(r, r->next, err);
    float v = 0;
    if ((s = decode_coord(r, r->hidden, &v, err)) != TY_OK) return s;
    if ((s = push_coord(c, v, err)) != TY_OK) return s;
    if ((s = skill_reserve_embeds(r, 1, err)) != TY_OK) return s;
    if ((s = md_region_encode_coord(r->m, v, r->embeds, err)) != TY_OK) return s;
    return skill_feed_embedding(r, err);
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

// Whether another object follows (moondream.md §11.4): Moondream 2 takes the
// argmax over the whole vocabulary and goes on unless it is EOS (any other
// token means "another object"); Moondream 3 compares only the EOS and
// coordinate logits and stops iff EOS is strictly larger (vLLM's rule; the
// reference's tie order is unknown, §17 item 4).
int skill_object_next(const skill_request *r, const float *logits) {
    const md_tokenizer_config *t = &r->m->cfg.tok;
    if (r->m->cfg.arch != MD_ARCH_MD3) return sampler_argmax(logits, r->vocab);
    return logits[t->eos_id] > logits[t->coord_id] ? t->eos_id : t->coord_id;
}

// Detect/point: another object follows unless the model chose EOS (a request
// at max_objects ended when its last object was added: objects_full).
ty_status skill_go_objects(skill_request *r, ty_err *err) {
    if (r->next == r->m->cfg.tok.eos_id) {
        skill_finish_as(r, FINISH_STOP);
        return TY_OK;
    }
    ty_status s = decode_coord(r, r->hidden, &r->x, err);
    if (s == TY_OK) s = skill_reserve_embeds(r, 1, err);
    if (s == TY_OK) s = md_region_encode_coord(r->m, r->x, r->embeds, err);
    if (s == TY_OK) s = skill_feed_embedding(r, err);
    r->state = ST_OBJ_X;
    return s;
}

// The object just added was the max_objects-th: the request ends. The
// reference feeds its last coordinate (or size) too and asks the model
// whether another object follows, then stops anyway; tycho skips that forward.
static int objects_full(skill_request *r) {
    if (r->n_objects < r->p.max_objects) return 0;
    skill_finish_as(r, FINISH_LENGTH);
    return 1;
}

// A size bin maps to 2^((bin / 1023) * 10 - 10), evaluated in f32.
static float size_from_bin(int bin) { return powf(2.0f, ((float)bin / 1023.0f) * 10.0f - 10.0f); }

ty_status skill_consume_object(skill_request *r, float *logits, const float *hidden, ty_err *err) {
    ty_status s = TY_OK;
    memcpy(r->hidden, hidden, (size_t)r->dim * sizeof(float));
    if (r->state == ST_OBJ_X) {
        s = decode_coord(r, r->hidden, &r->y, err);
        if (s == TY_OK && r->p.kind == SKILL_POINT) {
            s = add_object(r, (skill_object){.x = r->x, .y = r->y}, err);
            if (s == TY_OK && objects_full(r)) return TY_OK;
        }
        if (s == TY_OK) s = md_region_encode_coord(r->m, r->y, r->embeds, err);
        if (s == TY_OK) s = skill_feed_embedding(r, err);
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
        if (s == TY_OK && objects_full(r)) return TY_OK;
        if (s == TY_OK) s = md_region_encode_size(r->m, w, h, r->embeds, err);
        if (s == TY_OK) s = skill_feed_embedding(r, err);
        r->state = ST_OBJ_LAST;
        return s;
    }
    r->next = skill_object_next(r, logits);  // ST_OBJ_LAST: detect/point are greedy
    return skill_go_objects(r, err);
}
