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
    return md_text_forward(r->m, &r->kv, step, err);
}

ty_status md_runner_init(md_runner *r, md_model *m, int n_pages, int page_size, ty_err *err) {
    memset(r, 0, sizeof *r);
    r->m = m;
    return md_kv_cache_init(m, &r->kv, n_pages, page_size, err);
}

void md_runner_free(md_runner *r) {
    if (r->m) md_kv_cache_free(r->m, &r->kv);
    memset(r, 0, sizeof *r);
}

sched_model md_runner_model(md_runner *r) {
    const md_text_config *c = &r->m->cfg.text;
    return (sched_model){.ctx = r, .dim = c->dim, .vocab = c->vocab_size, .max_context = c->max_context,
                         .prefix_len = 1 + MD_PATCHES, .bos_id = r->m->cfg.tok.bos_id,
                         .encode_images = runner_encode, .forward = runner_forward};
}
