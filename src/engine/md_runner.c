#include "engine/md_runner.h"

#include <stdlib.h>
#include <string.h>

// Crops on the host, then one tower forward over all images' crops.
static ty_status runner_encode(void *ctx, int n, void *const *images, float *const *embeds, ty_err *err) {
    md_runner *r = ctx;
    int dim = r->m->cfg.text.dim;
    image_crops *crops = calloc((size_t)n, sizeof *crops);
    md_vision_image *ims = calloc((size_t)n, sizeof *ims);
    float **out = calloc((size_t)n, sizeof *out);
    uint8_t **pix = calloc((size_t)n, sizeof *pix);
    ty_status s = crops && ims && out && pix ? TY_OK : ty_err_set(err, TY_E_NOMEM, "out of memory");
    size_t crop_bytes = (size_t)IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3;
    int n_tower = 0;
    for (int i = 0; i < n && s == TY_OK; i++) {
        const md_runner_image *im = images[i];
        if (im->embeds) {  // computed before
            memcpy(embeds[i], im->embeds, (size_t)MD_PATCHES * dim * sizeof(float));
            continue;
        }
        s = image_make_crops(&crops[i], im->rgb, err);
        if (s != TY_OK) break;
        pix[i] = malloc(crop_bytes * (size_t)crops[i].n_crops);
        if (!pix[i]) {
            s = ty_err_set(err, TY_E_NOMEM, "out of memory");
            break;
        }
        for (int c = 0; c < crops[i].n_crops; c++) image_crop_copy(&crops[i], c, pix[i] + crop_bytes * (size_t)c);
        ims[n_tower] = (md_vision_image){pix[i], crops[i].n_crops, crops[i].tiling.rows, crops[i].tiling.cols};
        out[n_tower++] = embeds[i];
    }
    if (s == TY_OK && n_tower) s = md_vision_encode_batch(r->m, n_tower, ims, NULL, out, err);
    if (s == TY_OK && n_tower && r->shadow) md_shadow_vision(r->shadow, r->m, n_tower, ims, out);
    for (int i = 0; crops && pix && i < n; i++) {
        image_crops_free(&crops[i]);
        free(pix[i]);
    }
    free(crops);
    free(ims);
    free(out);
    free(pix);
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
                         .encode_images = runner_encode, .forward = runner_forward};
}
