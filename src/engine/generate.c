#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "engine/md_runner.h"

enum { PAGE_SIZE = 16 };

ty_status generate_image_embeds(md_model *m, const image_rgb *img, float *embeds, ty_err *err) {
    md_runner r = {.m = m};  // the tower needs no KV cache
    sched_model sm = md_runner_model(&r);
    md_runner_image im = {.rgb = img};
    void *images[1] = {&im};
    float *out[1] = {embeds};
    return sm.encode_images(sm.ctx, 1, images, out, err);
}

typedef struct {
    skill_request *r;
    float *first_logits;  // NULL, or (vocab) to fill from the first consumed outputs
    int vocab, consumed;
    ty_status status;
    ty_err err;
    int done;
} one_seq;

static const skill_feed *one_next(void *owner) { return skill_next_feed(((one_seq *)owner)->r); }

static ty_status one_consume(void *owner, float *logits, const float *hidden, ty_err *err) {
    one_seq *o = owner;
    if (!o->consumed++ && o->first_logits) memcpy(o->first_logits, logits, (size_t)o->vocab * sizeof(float));
    return skill_consume(o->r, logits, hidden, err);
}

static void one_done(void *owner, ty_status st, const ty_err *err) {
    one_seq *o = owner;
    o->done = 1;
    o->status = st;
    if (st != TY_OK && err) o->err = *err;
}

static const sched_seq_ops ONE_OPS = {one_next, one_consume, one_done, NULL};

ty_status generate_one(md_model *m, const tokenizer *tok, const generate_image *image, const skill_params *params,
                       skill_text_fn on_text, void *user, skill_request **out, generate_stats *stats, ty_err *err) {
    *out = NULL;
    const md_text_config *c = &m->cfg.text;
    skill_params p = *params;
    p.has_image = image && (image->rgb || image->embeds);
    if (!p.has_image && p.kind != SKILL_QUERY) return ty_err_set(err, TY_E_ARG, "this skill needs an image");
    int start = p.has_image ? 1 + MD_PATCHES : 0;
    one_seq o = {.first_logits = stats ? stats->first_logits : NULL, .vocab = c->vocab_size};
    ty_status s = skill_init(&o.r, m, tok, &p, start, on_text, user, err);
    if (s != TY_OK) return s;
    md_runner run;
    scheduler sch;
    int n_pages = (c->max_context + PAGE_SIZE - 1) / PAGE_SIZE, have_sched = 0;
    s = md_runner_init(&run, m, n_pages, PAGE_SIZE, err);
    if (s == TY_OK) {
        sched_model sm = md_runner_model(&run);
        sched_options so = {.n_pages = n_pages, .page_size = PAGE_SIZE, .max_batch = 1,
                            .max_rows = c->max_context > start ? c->max_context : start, .use_cache = 0};
        s = sched_init(&sch, &sm, &so, err);
        have_sched = s == TY_OK;
    }
    md_runner_image im = {.rgb = image ? image->rgb : NULL, .embeds = image ? image->embeds : NULL};
    sched_seq q = {.ops = &ONE_OPS, .owner = &o, .has_image = p.has_image, .image = &im,
                   .max_positions = skill_max_positions(o.r)};
    double t0 = sched_now_ms();
    if (s == TY_OK) s = sched_submit(&sch, &q, err);
    for (int idle = 0; s == TY_OK && !o.done && !idle;) sched_step(&sch, &idle);
    if (s == TY_OK && o.status != TY_OK) s = ty_err_set(err, o.status, "%s", o.err.msg);
    if (s != TY_OK) skill_abort(o.r, FINISH_ERROR);
    if (stats) {
        double first = q.t_first ? q.t_first : sched_now_ms();
        *stats = (generate_stats){.prefill_ms = first - t0, .decode_ms = sched_now_ms() - first, .ttft_ms = first - t0,
                                  .prefix_tokens = start, .first_logits = stats->first_logits};
    }
    if (have_sched) sched_free(&sch);
    md_runner_free(&run);
    *out = o.r;
    return s;
}
