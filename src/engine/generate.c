#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PAGE_SIZE = 64 };

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

ty_status generate_image_embeds(md_model *m, const image_rgb *img, float *embeds, ty_err *err) {
    image_crops crops;
    ty_status s = image_make_crops(&crops, img, err);
    if (s != TY_OK) return s;
    size_t crop_bytes = (size_t)IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3;
    uint8_t *pix = malloc(crop_bytes * (size_t)crops.n_crops);
    if (!pix) {
        image_crops_free(&crops);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < crops.n_crops; i++) image_crop_copy(&crops, i, pix + crop_bytes * (size_t)i);
    s = md_vision_encode(m, pix, crops.n_crops, crops.tiling.rows, crops.tiling.cols, NULL, embeds, err);
    free(pix);
    image_crops_free(&crops);
    return s;
}

// One forward of `n` rows of sequence 0 starting at pos; outputs of the last row.
static ty_status run_rows(md_model *m, md_kv_cache *kv, const int32_t *pages, int prefix, int pos, int n,
                          const int32_t *ids, const float *embeds, float *logits, float *hidden, ty_err *err) {
    int32_t *seq = calloc((size_t)n, sizeof *seq), *p = malloc((size_t)n * sizeof *p);
    if (!seq || !p) {
        free(seq);
        free(p);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) p[i] = pos + i;
    int32_t kv_len = pos + n, last = n - 1;
    const int32_t *page_tables[1] = {pages};
    ty_batch b = {.n_rows = n, .seq = seq, .pos = p, .n_seqs = 1, .prefix = &prefix, .kv_len = &kv_len,
                  .pages = page_tables};
    md_text_step step = {.batch = &b, .ids = ids, .embeds = embeds, .n_out = 1, .out_rows = &last,
                         .logits = logits, .hidden = hidden};
    ty_status s = md_text_forward(m, kv, &step, err);
    free(seq);
    free(p);
    return s;
}

ty_status generate_one(md_model *m, const tokenizer *tok, const generate_image *image, const skill_params *params,
                       skill_text_fn on_text, void *user, skill_request **out, generate_stats *stats, ty_err *err) {
    *out = NULL;
    generate_stats st = {0};
    const md_text_config *c = &m->cfg.text;
    skill_params p = *params;
    int has_image = image && (image->rgb || image->embeds);
    p.has_image = has_image;
    if (!has_image && p.kind != SKILL_QUERY) return ty_err_set(err, TY_E_ARG, "this skill needs an image");
    int n_pages = (c->max_context + PAGE_SIZE - 1) / PAGE_SIZE;
    int32_t *pages = malloc((size_t)n_pages * sizeof *pages);
    float *logits = malloc((size_t)c->vocab_size * sizeof(float)), *hidden = malloc((size_t)c->dim * sizeof(float));
    int own_embeds = has_image && !image->embeds;
    float *embeds = own_embeds ? malloc((size_t)MD_PATCHES * c->dim * sizeof(float)) : NULL;
    md_kv_cache kv = {0};
    skill_request *r = NULL;
    ty_status s = TY_OK;
    if (!pages || !logits || !hidden || (own_embeds && !embeds)) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (int i = 0; pages && i < n_pages; i++) pages[i] = i;
    if (s == TY_OK) s = md_kv_cache_init(m, &kv, n_pages, PAGE_SIZE, err);
    double t0 = now_ms();
    int prefix = 0;
    if (s == TY_OK && has_image) {
        // BOS + 729 image embeddings: positions 0..729, attending bidirectionally.
        if (own_embeds) s = generate_image_embeds(m, image->rgb, embeds, err);
        st.vision_ms = now_ms() - t0;
        prefix = 1 + MD_PATCHES;
        int32_t *ids = s == TY_OK ? malloc((size_t)prefix * sizeof *ids) : NULL;
        if (s == TY_OK && !ids) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
        if (s == TY_OK) {
            ids[0] = m->cfg.tok.bos_id;
            for (int i = 1; i < prefix; i++) ids[i] = -1;
            s = run_rows(m, &kv, pages, prefix, 0, prefix, ids, own_embeds ? embeds : image->embeds, logits, hidden,
                         err);
        }
        free(ids);
        st.prefix_tokens = prefix;
    }
    if (s == TY_OK) s = skill_init(&r, m, tok, &p, prefix, on_text, user, err);
    int first = 1;
    const skill_feed *f;
    while (s == TY_OK && (f = skill_next_feed(r))) {
        double ts = now_ms();
        s = run_rows(m, &kv, pages, prefix, skill_pos(r), f->n_rows, f->ids, f->embeds, logits, hidden, err);
        if (s == TY_OK && first && stats && stats->first_logits)
            memcpy(stats->first_logits, logits, (size_t)c->vocab_size * sizeof(float));
        if (s == TY_OK) s = skill_consume(r, logits, hidden, err);
        if (first) {
            st.prefill_ms = now_ms() - t0 - st.vision_ms;
            st.ttft_ms = now_ms() - t0;
            first = 0;
        } else {
            st.decode_ms += now_ms() - ts;
        }
    }
    if (s != TY_OK && r) skill_abort(r, FINISH_ERROR);
    md_kv_cache_free(m, &kv);
    free(pages);
    free(logits);
    free(hidden);
    free(embeds);
    if (stats) {
        st.first_logits = stats->first_logits;
        *stats = st;
    }
    *out = r;
    return s;
}
