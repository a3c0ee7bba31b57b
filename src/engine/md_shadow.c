// The shadow check (md_shadow.h): a debugging tool, off unless
// TYCHO_DEBUG_SHADOW names the model directory.
#include "engine/md_shadow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct md_shadow {
    ty_backend *be;  // the CPU
    md_model *m;
    md_kv_cache kv;
    double tol;
    int trace;  // TYCHO_DEBUG_SHADOW_TRACE: one line per step before it runs
    uint64_t steps, vision_runs;
    double worst_out, worst_kv;
    float *logits, *hidden;
    int cap_out;
    float *ga, *ca;  // (page_size, kv width) rows read back from each side
};

ty_status md_shadow_init(md_shadow **out, const md_model *m, int n_pages, int page_size, ty_err *err) {
    *out = NULL;
    const char *dir = getenv("TYCHO_DEBUG_SHADOW");
    if (!dir || !*dir) return TY_OK;
    md_shadow *sh = calloc(1, sizeof *sh);
    if (!sh) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    const char *tol = getenv("TYCHO_DEBUG_SHADOW_TOL");
    sh->tol = tol && atof(tol) > 0 ? atof(tol) : 1e-3;
    sh->trace = getenv("TYCHO_DEBUG_SHADOW_TRACE") != NULL;
    ty_status s = backend_cpu_init(&sh->be, 0, err);
    if (s == TY_OK) s = md_model_init(&sh->m, dir, sh->be, err);
    if (s == TY_OK) s = md_kv_cache_init(sh->m, &sh->kv, n_pages, page_size, err);
    const md_text_config *c = &m->cfg.text;
    size_t width = (size_t)c->n_kv_heads * (c->dim / c->n_heads);
    if (s == TY_OK) {
        sh->ga = malloc((size_t)page_size * width * sizeof(float));
        sh->ca = malloc((size_t)page_size * width * sizeof(float));
        if (!sh->ga || !sh->ca) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    if (s != TY_OK) {
        md_shadow_free(sh);
        return s;
    }
    fprintf(stderr, "tycho shadow: every %s forward is checked against the CPU (model %s, tolerance %g)\n",
            m->be->ops->name, dir, sh->tol);
    *out = sh;
    return TY_OK;
}

void md_shadow_free(md_shadow *sh) {
    if (!sh) return;
    if (sh->steps)
        fprintf(stderr, "tycho shadow: %llu steps checked, worst relative error: outputs %.3g, KV rows %.3g\n",
                (unsigned long long)sh->steps, sh->worst_out, sh->worst_kv);
    if (sh->m) {
        md_kv_cache_free(sh->m, &sh->kv);
        md_model_free(sh->m);
    }
    if (sh->be) sh->be->ops->free(sh->be);
    free(sh->logits);
    free(sh->hidden);
    free(sh->ga);
    free(sh->ca);
    free(sh);
}

// ||a - b|| / ||b|| over n values (absolute where b is all zeros).
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (num != num) return INFINITY;  // NaN
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void describe(const md_text_step *step, int page_size, uint64_t n) {
    const ty_batch *b = step->batch;
    fprintf(stderr, "tycho shadow: step %llu: %d rows, %d sequences, %d output rows:", (unsigned long long)n, b->n_rows,
            b->n_seqs, step->n_out);
    for (int i = 0; i < step->n_out; i++) fprintf(stderr, " %d", step->out_rows[i]);
    fprintf(stderr, "\n");
    for (int s = 0; s < b->n_seqs; s++) {
        int first = -1, count = 0, consecutive = 1, p0 = -1, p1 = -1, tokens = 0, outs = 0;
        for (int r = 0; r < b->n_rows; r++) {
            if (b->seq[r] != s) continue;
            if (first < 0) first = r, p0 = b->pos[r];
            else if (r != first + count || b->pos[r] != p1 + 1) consecutive = 0;
            p1 = b->pos[r];
            count++;
            tokens += step->ids[r] >= 0;
        }
        for (int i = 0; i < step->n_out; i++) outs += b->seq[step->out_rows[i]] == s;
        int kl = b->kv_len ? b->kv_len[s] : p1 + 1, np = (kl + page_size - 1) / page_size;
        fprintf(stderr, "  seq %d: rows %d..%d (%d, %s), positions %d..%d, %d token rows, prefix %d, kv_len %d, "
                        "%d outputs, pages [", s, first, first + count - 1, count,
                consecutive ? "consecutive" : "NOT consecutive", p0, p1, tokens, b->prefix ? b->prefix[s] : 0, kl,
                outs);
        for (int i = 0; i < np; i++) fprintf(stderr, "%s%d", i ? " " : "", b->pages[s][i]);
        fprintf(stderr, "]\n");
    }
}

// Compares `count` cache rows from `row` of every layer; returns the worst error and
// its layer / row offset.
static double kv_rows_err(md_shadow *sh, md_model *m, md_kv_cache *kv, int64_t row, int count, int *layer, int *at) {
    double worst = 0;
    for (int l = 0; l < kv->n_layers; l++)
        for (int which = 0; which < 2; which++) {
            ty_tensor g = which ? kv->layers[l].v : kv->layers[l].k, c = which ? sh->kv.layers[l].v : sh->kv.layers[l].k;
            m->be->ops->read(m->be, tensor_rows(g, row, count), sh->ga);
            sh->be->ops->read(sh->be, tensor_rows(c, row, count), sh->ca);
            for (int i = 0; i < count; i++) {
                double e = rel_err(sh->ga + (size_t)i * g.cols, sh->ca + (size_t)i * g.cols, (size_t)g.cols);
                if (e > worst) worst = e, *layer = l, *at = i;
            }
        }
    return worst;
}

// Every position of every sequence of the batch: which ones are wrong on the device.
static void kv_report(md_shadow *sh, md_model *m, md_kv_cache *kv, const ty_batch *b) {
    int P = kv->page_size;
    for (int s = 0; s < b->n_seqs; s++) {
        int kl = 0;
        for (int r = 0; r < b->n_rows; r++)
            if (b->seq[r] == s && b->pos[r] + 1 > kl) kl = b->pos[r] + 1;
        if (b->kv_len && b->kv_len[s] > kl) kl = b->kv_len[s];
        int bad = 0, first_bad = -1, last_bad = -1, layer = 0;
        double worst = 0;
        for (int p = 0; p < kl; p++) {
            int l1 = 0, a1 = 0;
            double e = kv_rows_err(sh, m, kv, (int64_t)b->pages[s][p / P] * P + p % P, 1, &l1, &a1);
            if (e > sh->tol) {
                bad++;
                if (first_bad < 0) first_bad = p, layer = l1;
                last_bad = p;
            }
            if (e > worst) worst = e;
        }
        fprintf(stderr, "  seq %d KV: %d of %d positions wrong", s, bad, kl);
        if (bad) fprintf(stderr, " (first %d in layer %d, last %d)", first_bad, layer, last_bad);
        fprintf(stderr, ", worst %.3g\n", worst);
    }
}

void md_shadow_before(md_shadow *sh, md_kv_cache *kv, const md_text_step *step) {
    if (sh->trace) {
        describe(step, kv->page_size, sh->steps);
        fflush(stderr);
    }
}

void md_shadow_check(md_shadow *sh, md_model *m, md_kv_cache *kv, const md_text_step *step) {
    const ty_batch *b = step->batch;
    const md_text_config *c = &m->cfg.text;
    int P = kv->page_size;
    uint64_t n = sh->steps++;
    if (step->n_out > sh->cap_out) {
        free(sh->logits);
        free(sh->hidden);
        sh->cap_out = step->n_out * 2;
        sh->logits = malloc((size_t)sh->cap_out * c->vocab_size * sizeof(float));
        sh->hidden = malloc((size_t)sh->cap_out * c->dim * sizeof(float));
        if (!sh->logits || !sh->hidden) abort();
    }
    md_text_step cs = *step;
    cs.logits = step->logits ? sh->logits : NULL;
    cs.hidden = step->hidden ? sh->hidden : NULL;
    ty_err err = {0};
    if (md_text_forward(sh->m, &sh->kv, &cs, &err) != TY_OK) {
        fprintf(stderr, "tycho shadow: the CPU forward failed: %s\n", err.msg);
        abort();
    }
    // Outputs.
    double worst = 0;
    int worst_i = -1;
    const char *what = "";
    for (int i = 0; i < step->n_out; i++) {
        double e = 0;
        if (step->logits &&
            (e = rel_err(step->logits + (size_t)i * c->vocab_size, cs.logits + (size_t)i * c->vocab_size,
                         (size_t)c->vocab_size)) > worst)
            worst = e, worst_i = i, what = "logits";
        if (step->hidden &&
            (e = rel_err(step->hidden + (size_t)i * c->dim, cs.hidden + (size_t)i * c->dim, (size_t)c->dim)) > worst)
            worst = e, worst_i = i, what = "hidden";
    }
    if (worst > sh->worst_out) sh->worst_out = worst;
    // The KV rows this step wrote, a run of positions within one page at a time.
    double kv_worst = 0;
    int kv_row = -1, kv_layer = 0;
    for (int r = 0, end; r < b->n_rows; r = end) {
        int s = b->seq[r], p = b->pos[r];
        for (end = r + 1; end < b->n_rows && b->seq[end] == s && b->pos[end] == p + (end - r) &&
                          b->pos[end] / P == p / P;
             end++) {
        }
        int l = 0, at = 0;
        double e = kv_rows_err(sh, m, kv, (int64_t)b->pages[s][p / P] * P + p % P, end - r, &l, &at);
        if (e > kv_worst) kv_worst = e, kv_row = r + at, kv_layer = l;
    }
    if (kv_worst > sh->worst_kv) sh->worst_kv = kv_worst;
    if (worst <= sh->tol && kv_worst <= sh->tol) return;
    fprintf(stderr, "tycho shadow: step %llu differs from the CPU: ", (unsigned long long)n);
    if (worst_i >= 0)
        fprintf(stderr, "output %d (row %d, seq %d, pos %d) %s relative error %.3g; ", worst_i, step->out_rows[worst_i],
                b->seq[step->out_rows[worst_i]], b->pos[step->out_rows[worst_i]], what, worst);
    if (kv_row >= 0)
        fprintf(stderr, "KV written: row %d (seq %d, pos %d) layer %d relative error %.3g", kv_row, b->seq[kv_row],
                b->pos[kv_row], kv_layer, kv_worst);
    fprintf(stderr, "\n");
    if (!sh->trace) describe(step, P, n);
    kv_report(sh, m, kv, b);
    // The same step again on the device (it rewrites the same KV rows): wrong again means
    // these inputs give wrong values (reduce them to an op test); right means the first
    // run raced with something (a copy or a kernel out of order).
    if (step->logits) {
        md_text_step again = *step;
        float *lg = malloc((size_t)step->n_out * c->vocab_size * sizeof(float));
        if (!lg) abort();
        again.logits = lg;
        again.hidden = NULL;
        double e2 = 0;
        if (md_text_forward(m, kv, &again, &err) == TY_OK)
            for (int i = 0; i < step->n_out; i++) {
                double e = rel_err(lg + (size_t)i * c->vocab_size, cs.logits + (size_t)i * c->vocab_size,
                                   (size_t)c->vocab_size);
                if (e > e2) e2 = e;
            }
        fprintf(stderr, "tycho shadow: the step again on the device: worst logits error %.3g (%s)\n", e2,
                e2 > sh->tol ? "wrong again: these inputs" : "right now: the first run raced");
        free(lg);
    }
    fflush(stderr);
    abort();
}

void md_shadow_vision(md_shadow *sh, md_model *m, int n, const md_vision_image *ims, float *const *embeds) {
    size_t per = (size_t)MD_PATCHES * m->cfg.text.dim;
    float **cpu = calloc((size_t)n, sizeof *cpu);
    if (!cpu) abort();
    for (int i = 0; i < n; i++)
        if (!(cpu[i] = malloc(per * sizeof(float)))) abort();
    ty_err err = {0};
    if (md_vision_encode_batch(sh->m, n, ims, NULL, cpu, &err) != TY_OK) {
        fprintf(stderr, "tycho shadow: the CPU vision tower failed: %s\n", err.msg);
        abort();
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double e = rel_err(embeds[i], cpu[i], per);
        if (e > sh->worst_out) sh->worst_out = e;
        if (e <= sh->tol) continue;
        fprintf(stderr, "tycho shadow: vision run %llu: image %d of %d (%d crops, %dx%d tiles) embeddings relative error %.3g\n",
                (unsigned long long)sh->vision_runs, i, n, ims[i].n_crops, ims[i].rows, ims[i].cols, e);
        bad = 1;
    }
    sh->vision_runs++;
    if (bad) {
        // Again on the device, the same images together.
        float **again = calloc((size_t)n, sizeof *again);
        for (int i = 0; i < n; i++) again[i] = malloc(per * sizeof(float));
        if (md_vision_encode_batch(m, n, ims, NULL, again, &err) == TY_OK)
            for (int i = 0; i < n; i++)
                fprintf(stderr, "tycho shadow: vision again on the device: image %d error %.3g\n", i,
                        rel_err(again[i], cpu[i], per));
        fflush(stderr);
        abort();
    }
    for (int i = 0; i < n; i++) free(cpu[i]);
    free(cpu);
}
