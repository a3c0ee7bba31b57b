// The Moondream 3 region head and object loop against independent references:
// - decoders: region.ln then one Linear (coordinate: 1024 bins; size: 2048 =
//   width bins then height bins), and one Linear without the LN, checked
//   against a double-precision computation from the same weights;
// - the stop decision of moondream.md §11.4: Moondream 2 goes on unless the
//   argmax over the whole vocabulary is EOS, Moondream 3 compares only the EOS
//   and coordinate logits (stop iff EOS is strictly larger).
// The md2-tiny model provides the rest of a model; its region head is swapped
// for host weights here.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/skill.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

// logits = W (LN(h) or h) + b in double; LN with eps 1e-5, gamma g, beta be.
static void reference(const float *h, int d, const float *g, const float *be, const float *w, const float *b, int out,
                      int ln, double *logits) {
    double mean = 0, var = 0, *x = malloc((size_t)d * sizeof *x);
    for (int i = 0; i < d; i++) mean += h[i];
    mean /= d;
    for (int i = 0; i < d; i++) var += (h[i] - mean) * (h[i] - mean);
    var /= d;
    for (int i = 0; i < d; i++) x[i] = ln ? (h[i] - mean) / sqrt(var + 1e-5) * g[i] + be[i] : h[i];
    for (int o = 0; o < out; o++) {
        double acc = b[o];
        for (int i = 0; i < d; i++) acc += w[(size_t)o * d + i] * x[i];
        logits[o] = acc;
    }
    free(x);
}

static double max_rel(const float *got, const double *want, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return sqrt(num / den);
}

// Runs a detect request's prompt step with crafted logits; returns the objects it goes on to decode (0 or 1).
static int goes_on(md_model *m, const tokenizer *tok, const float *crafted) {
    skill_params p;
    skill_params_default(&p, SKILL_DETECT);
    p.object = "x";
    p.max_objects = 1;
    skill_request *r = NULL;
    ty_err err;
    CHECK_MSG(skill_init(&r, m, tok, &p, 730, NULL, NULL, &err) == TY_OK, "%s", err.msg);
    if (!r) return -1;
    int vocab = m->cfg.text.vocab_size;
    float *logits = malloc((size_t)vocab * sizeof(float)), *hidden = calloc((size_t)m->cfg.text.dim, sizeof(float));
    memcpy(logits, crafted, (size_t)vocab * sizeof(float));
    skill_next_feed(r);
    CHECK(skill_consume(r, logits, hidden, &err) == TY_OK);
    int more = skill_next_feed(r) != NULL;  // an object's x embedding to run, or finished
    free(logits);
    free(hidden);
    skill_free(r);
    return more;
}

int main(void) {
    ty_err err;
    ty_backend *be = NULL;
    md_model *m = NULL;
    tokenizer *tok = NULL;
    CHECK(backend_cpu_init(&be, 2, &err) == TY_OK);
    CHECK_MSG(md_model_init(&m, TEST_DATA("golden/md2-tiny"), be, &err) == TY_OK, "%s", err.msg);
    CHECK(tokenizer_init_from_file(&tok, TEST_DATA("golden/md2-tiny/tokenizer.json"), &err) == TY_OK);
    if (!m || !tok) return test_report("test_md3_region");
    int d = m->cfg.text.dim, nc = m->cfg.region.coord_out_dim, ns = m->cfg.region.size_out_dim;
    CHECK(m->region.present && !m->region.single && !m->region.has_ln);

    // Moondream 3 decoders from host weights.
    unsigned seed = 7;
    float *g = malloc((size_t)d * sizeof *g), *bb = malloc((size_t)d * sizeof *bb);
    float *wc = malloc((size_t)nc * d * sizeof *wc), *bc = malloc((size_t)nc * sizeof *bc);
    float *ws = malloc((size_t)ns * d * sizeof *ws), *bs = malloc((size_t)ns * sizeof *bs);
    for (int i = 0; i < d; i++) g[i] = 1 + 0.5f * frand(&seed), bb[i] = 0.1f * frand(&seed);
    for (int i = 0; i < nc * d; i++) wc[i] = frand(&seed) / 8;
    for (int i = 0; i < ns * d; i++) ws[i] = frand(&seed) / 8;
    for (int i = 0; i < nc; i++) bc[i] = frand(&seed);
    for (int i = 0; i < ns; i++) bs[i] = frand(&seed);
    md_region_weights *r = &m->region;
    CHECK(be->ops->weight(be, &r->ln.w, TY_DTYPE_F32, 1, d, g, &err) == TY_OK);
    CHECK(be->ops->weight(be, &r->ln.b, TY_DTYPE_F32, 1, d, bb, &err) == TY_OK);
    CHECK(be->ops->weight(be, &r->coord_fc2.w, TY_DTYPE_F32, nc, d, wc, &err) == TY_OK);
    CHECK(be->ops->weight(be, &r->coord_fc2.b, TY_DTYPE_F32, 1, nc, bc, &err) == TY_OK);
    CHECK(be->ops->weight(be, &r->size_fc2.w, TY_DTYPE_F32, ns, d, ws, &err) == TY_OK);
    CHECK(be->ops->weight(be, &r->size_fc2.b, TY_DTYPE_F32, 1, ns, bs, &err) == TY_OK);
    r->single = 1;
    float *h = malloc((size_t)d * sizeof *h), *got = malloc((size_t)ns * sizeof *got);
    double *want = malloc((size_t)ns * sizeof *want);
    for (int i = 0; i < d; i++) h[i] = 3 * frand(&seed) + 0.7f;
    for (int ln = 0; ln < 2; ln++) {
        r->has_ln = ln;
        CHECK(md_region_decode_coord(m, h, got, &err) == TY_OK);
        reference(h, d, g, bb, wc, bc, nc, ln, want);
        double e = max_rel(got, want, nc);
        CHECK_MSG(e < 1e-5, "coordinate logits (ln %d): relative error %.3g", ln, e);
        CHECK(md_region_decode_size(m, h, got, &err) == TY_OK);
        reference(h, d, g, bb, ws, bs, ns, ln, want);
        e = max_rel(got, want, ns);
        CHECK_MSG(e < 1e-5, "size logits (ln %d): relative error %.3g", ln, e);
    }

    // The stop decision.
    int vocab = m->cfg.text.vocab_size;
    float *lg = calloc((size_t)vocab, sizeof *lg);
    lg[0] = 1, lg[5] = 0, lg[77] = 5;  // argmax neither EOS nor coord; EOS above coord
    CHECK(goes_on(m, tok, lg) == 1);    // Moondream 2: any non-EOS argmax means another object
    m->cfg.arch = MD_ARCH_MD3;
    CHECK(goes_on(m, tok, lg) == 0);    // Moondream 3: EOS > coord stops
    lg[77] = 0, lg[0] = 2, lg[5] = 2;   // EOS and coord tie at the top
    CHECK(goes_on(m, tok, lg) == 1);    // Moondream 3: not strictly larger, go on
    m->cfg.arch = MD_ARCH_MD2;
    CHECK(goes_on(m, tok, lg) == 0);    // Moondream 2: argmax (first index wins) is EOS
    lg[5] = 3;
    m->cfg.arch = MD_ARCH_MD3;
    CHECK(goes_on(m, tok, lg) == 1);

    free(lg);
    free(h);
    free(got);
    free(want);
    tokenizer_free(tok);
    md_model_free(m);
    free(g);
    free(bb);
    free(wc);
    free(bc);
    free(ws);
    free(bs);
    be->ops->free(be);
    return test_report("test_md3_region");
}
