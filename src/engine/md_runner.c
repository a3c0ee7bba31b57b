#include "engine/md_runner.h"

#include <stdlib.h>
#include <string.h>

// The tower over a batch of images: their crops come from each image's crop
// job (made ahead, runner_prepare) or are made here, then one forward over all.
static ty_status runner_prepare(void *ctx, void *image, ty_err *err) {
    (void)ctx;
    md_runner_image *im = image;
    const crop_set *cs;
    return im->crops && !im->embeds ? crop_job_get(im->crops, &cs, err) : TY_OK;
}

static ty_status runner_encode(void *ctx, int n, void *const *images, float *const *embeds, ty_err *err) {
    md_runner *r = ctx;
    int dim = r->m->cfg.text.dim;
    crop_set *local = calloc((size_t)n, sizeof *local);  // crops made here (no job)
    md_vision_image *ims = calloc((size_t)n, sizeof *ims);
    float **out = calloc((size_t)n, sizeof *out);
    ty_status s = local && ims && out ? TY_OK : ty_err_set(err, TY_E_NOMEM, "out of memory");
    int n_tower = 0;
    for (int i = 0; i < n && s == TY_OK; i++) {
        const md_runner_image *im = images[i];
        if (im->embeds) {  // computed before
            memcpy(embeds[i], im->embeds, (size_t)MD_PATCHES * dim * sizeof(float));
            continue;
        }
        const crop_set *cs = &local[i];
        s = im->crops ? crop_job_get(im->crops, &cs, err) : crop_set_make(&local[i], im->rgb, err);
        if (s != TY_OK) break;
        ims[n_tower] = (md_vision_image){cs->pix, cs->n_crops, cs->rows, cs->cols};
        out[n_tower++] = embeds[i];
    }
    if (s == TY_OK && n_tower) s = md_vision_encode_batch(r->m, n_tower, ims, NULL, out, err);
    if (s == TY_OK && n_tower && r->shadow) md_shadow_vision(r->shadow, r->m, n_tower, ims, out);
    for (int i = 0; local && i < n; i++) crop_set_free(&local[i]);
    free(local);
    free(ims);
    free(out);
    return s;
}

static ty_status runner_forward(void *ctx, const md_text_step *step, ty_err *err) {
    md_runner *r = ctx;
    if (r->shadow) md_shadow_before(r->shadow, &r->kv, step);
    ty_status s = md_text_forward(r->m, &r->kv, step, err);
    if (s == TY_OK && r->shadow) md_shadow_check(r->shadow, r->m, &r->kv, step);
    return s;
}

ty_status md_runner_init(md_runner *r, md_model *m, int n_pages, int page_size, ty_err *err) {
    memset(r, 0, sizeof *r);
    r->m = m;
    ty_status s = md_kv_cache_init(m, &r->kv, n_pages, page_size, err);
    if (s == TY_OK && (s = md_shadow_init(&r->shadow, m, n_pages, page_size, err)) != TY_OK) md_kv_cache_free(m, &r->kv);
    return s;
}

void md_runner_free(md_runner *r) {
    md_shadow_free(r->shadow);
    if (r->m) md_kv_cache_free(r->m, &r->kv);
    memset(r, 0, sizeof *r);
}

sched_model md_runner_model(md_runner *r) {
    const md_text_config *c = &r->m->cfg.text;
    return (sched_model){.ctx = r, .dim = c->dim, .vocab = c->vocab_size, .max_context = c->max_context,
                         .prefix_len = 1 + MD_PATCHES, .bos_id = r->m->cfg.tok.bos_id,
                         .encode_images = runner_encode, .prepare_image = runner_prepare,
                         .forward = runner_forward};
}
