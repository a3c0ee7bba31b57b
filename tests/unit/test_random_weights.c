// Random checkpoints (src/model/random_weights.h): the real shape tables add
// up to moondream.md's parameter counts; a tiny checkpoint of each
// architecture parses as safetensors and loads through the model loader
// (names, shapes, MoE and tau detection); values have the promised fills and
// std; the bytes depend on the seed only, not on the thread count.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "io/safetensors.h"
#include "model/moondream.h"
#include "model/random_weights.h"
#include "test.h"

static int64_t count_params(md_arch arch, int layers) {
    md_config cfg;
    ty_err err = {0};
    md_random_tensor *t;
    int n;
    if (md_random_config(&cfg, arch, MD_RANDOM_REAL, layers, &err) != TY_OK) return -1;
    if (md_random_tensors(&cfg, &t, &n, &err) != TY_OK) return -1;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += t[i].n_elements;
    for (int i = 1; i < n; i++) CHECK(strcmp(t[i - 1].name, t[i].name) < 0);  // name order, unique
    free(t);
    return total;
}

static void test_real_counts(void) {
    // moondream.md §3.1: vision 448,649,072 + text 1,418,270,720 + region 60,317,312.
    CHECK_MSG(count_params(MD_ARCH_MD2, 0) == 1927237104LL, "md2 %lld", (long long)count_params(MD_ARCH_MD2, 0));
    // §3.3: experts 20 x 64 x (2048*2048 + 2048*1024) = 8.05 B of ~9.27 B.
    int64_t md3 = count_params(MD_ARCH_MD3, 0);
    CHECK_MSG(md3 > 9200000000LL && md3 < 9350000000LL, "md3 %lld", (long long)md3);
    // Fewer layers: md2 text blocks are 50,354,176 parameters each.
    CHECK(count_params(MD_ARCH_MD2, 4) == 1927237104LL - 20 * 50354176LL);
}

// Mean and std of a tensor's values.
static void moments(const safetensors_tensor *t, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t->n_elements; i++) {
        double v = safetensors_get_f32(t, i);
        s += v;
        s2 += v * v;
    }
    *mean = s / (double)t->n_elements;
    *std = sqrt(s2 / (double)t->n_elements - *mean * *mean);
}

static void test_tiny(md_arch arch) {
    const char *what = arch == MD_ARCH_MD3 ? "md3" : "md2";
    md_config cfg;
    ty_err err = {0};
    CHECK(md_random_config(&cfg, arch, MD_RANDOM_TINY, 0, &err) == TY_OK);
    uint8_t *a = NULL, *b = NULL, *c = NULL;
    size_t na = 0, nb = 0, nc = 0;
    CHECK_MSG(md_random_checkpoint(&cfg, 42, 1, &a, &na, &err) == TY_OK, "%s", err.msg);
    CHECK_MSG(md_random_checkpoint(&cfg, 42, 3, &b, &nb, &err) == TY_OK, "%s", err.msg);
    CHECK_MSG(md_random_checkpoint(&cfg, 43, 2, &c, &nc, &err) == TY_OK, "%s", err.msg);
    if (!a || !b || !c) return;
    CHECK_MSG(na == nb && !memcmp(a, b, na), "%s: same seed, other thread count, other bytes", what);
    CHECK_MSG(na == nc && memcmp(a, c, na), "%s: another seed, same bytes", what);

    safetensors *st = NULL;
    CHECK_MSG(safetensors_init_from_memory(&st, a, na, &err) == TY_OK, "%s: %s", what, err.msg);
    if (st) {
        md_random_tensor *t;
        int n;
        CHECK(md_random_tensors(&cfg, &t, &n, &err) == TY_OK);
        CHECK((int)safetensors_count(st) == n);
        for (int i = 0; i < n; i++) {
            const safetensors_tensor *s = safetensors_find(st, t[i].name);
            CHECK_MSG(s && s->dtype == TY_DTYPE_BF16 && s->n_elements == t[i].n_elements, "%s", t[i].name);
            CHECK_MSG(s && safetensors_is_aligned(s), "%s", t[i].name);
        }
        free(t);
        // Fills: LayerNorm weights 1, biases 0, weights std 1/sqrt(fan_in).
        const safetensors_tensor *ln = safetensors_find(st, "model.text.blocks.0.ln.weight");
        const safetensors_tensor *bias = safetensors_find(st, "model.text.blocks.0.attn.qkv.bias");
        const safetensors_tensor *w = safetensors_find(st, "model.text.wte");  // (51200, 128)
        const safetensors_tensor *fc2 = safetensors_find(st, "model.vision.blocks.0.mlp.fc2.weight");  // fan_in 128
        CHECK(ln && bias && w && fc2);
        if (ln && bias && w && fc2) {
            double mean, std;
            moments(ln, &mean, &std);
            CHECK(mean == 1.0 && std == 0.0);
            moments(bias, &mean, &std);
            CHECK(mean == 0.0 && std == 0.0);
            moments(w, &mean, &std);
            CHECK_MSG(fabs(mean) < 2e-4 && fabs(std * sqrt(128.0) - 1.0) < 0.01, "wte mean %g std %g", mean, std);
            moments(fc2, &mean, &std);
            CHECK_MSG(fabs(mean) < 3e-3 && fabs(std * sqrt(128.0) - 1.0) < 0.02, "fc2 mean %g std %g", mean, std);
            float mx = 0;
            for (int64_t i = 0; i < w->n_elements; i++) mx = fmaxf(mx, fabsf(safetensors_get_f32(w, i)));
            CHECK_MSG(mx * sqrtf(128.0f) < 3.47f, "bounded at 2 sqrt(3) std: %g", mx);
        }
        safetensors_free(st);
    }

    // The loader takes it: every name and shape it asks for is there.
    ty_backend *be = NULL;
    md_model *m = NULL;
    CHECK(backend_cpu_init(&be, 1, &err) == TY_OK);
    CHECK_MSG(be && md_model_init_memory(&m, &cfg, a, na, be, &err) == TY_OK, "%s: %s", what, err.msg);
    if (m) {
        CHECK(m->cfg.arch == arch);
        CHECK(m->cfg.text.tau == (arch == MD_ARCH_MD3));
        CHECK(m->region.present && m->region.single == (arch == MD_ARCH_MD3));
        if (arch == MD_ARCH_MD3) {
            CHECK(m->cfg.text.moe.num_experts == 8 && m->cfg.text.moe.start_layer == 1 &&
                  m->cfg.text.moe.experts_per_token == 3 && m->cfg.text.moe.expert_inner_dim == 64);
            CHECK(!m->text.blocks[0].is_moe && m->text.blocks[1].is_moe && m->text.blocks[2].is_moe);
            CHECK(m->text.blocks[0].tau.wqwv.data != NULL);  // name order puts wv right after wq
        }
    }
    md_model_free(m);
    // A checkpoint that does not match the config fails with the loader's message.
    md_config other = cfg;
    other.text.dim = other.vision.proj_out_dim = 256;
    m = NULL;
    CHECK(be && md_model_init_memory(&m, &other, a, na, be, &err) == TY_E_FORMAT && m == NULL);
    CHECK_MSG(strstr(err.msg, "has shape") != NULL, "%s", err.msg);
    md_model_free(m);
    if (be) be->ops->free(be);
    md_random_checkpoint_free(a, na);
    md_random_checkpoint_free(b, nb);
    md_random_checkpoint_free(c, nc);
}

static void test_bad_args(void) {
    md_config cfg;
    ty_err err = {0};
    CHECK(md_random_config(&cfg, (md_arch)7, MD_RANDOM_TINY, 0, &err) == TY_E_ARG);
    CHECK(md_random_config(&cfg, MD_ARCH_MD2, MD_RANDOM_TINY, -1, &err) == TY_E_ARG);
    CHECK(md_random_config(&cfg, MD_ARCH_MD2, MD_RANDOM_TINY, 1000, &err) == TY_E_ARG);
    // Moondream 3 with one layer: that layer is MoE.
    CHECK(md_random_config(&cfg, MD_ARCH_MD3, MD_RANDOM_TINY, 1, &err) == TY_OK);
    CHECK(cfg.text.n_layers == 1 && cfg.text.moe.start_layer == 0);
}

int main(void) {
    test_real_counts();
    test_tiny(MD_ARCH_MD2);
    test_tiny(MD_ARCH_MD3);
    test_bad_args();
    return test_report("test_random_weights");
}
