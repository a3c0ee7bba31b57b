// Random checkpoints in memory (see random_weights.h): the shape table of
// moondream.md §3.1 / §3.3, a safetensors header for it, and the values,
// filled chunk by chunk on a thread pool.
#include "model/random_weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/half.h"
#include "core/pool.h"

enum {
    RW_CHUNK = 1 << 18,  // values per generation job: small enough to balance threads, big enough to amortise
    RW_ALIGN = 64,       // the data area starts on this boundary
};

ty_status md_random_config(md_config *cfg, md_arch arch, md_random_size size, int n_layers, ty_err *err) {
    if (arch != MD_ARCH_MD2 && arch != MD_ARCH_MD3) return ty_err_set(err, TY_E_ARG, "random model: unknown arch");
    if (n_layers < 0 || n_layers > 256) return ty_err_set(err, TY_E_ARG, "random model: text layers must be in [1, 256] (0: the default)");
    md_config_defaults(cfg);  // the real Moondream 2: widths, templates, token ids
    int moe_start = 4;
    if (size == MD_RANDOM_TINY) {
        // Head dims stay 64 (rotary over 32), the vocabulary stays real: the
        // tokenizer and the prompt templates are the real ones.
        cfg->vision = (md_vision_config){.enc_dim = 64, .enc_patch_size = 14, .enc_n_layers = 4, .enc_ff_dim = 128,
                                         .enc_n_heads = 4, .proj_out_dim = 128, .proj_inner_dim = 256,
                                         .crop_size = 378, .in_channels = 3, .max_crops = 12, .overlap_margin = 4};
        cfg->text.dim = 128;
        cfg->text.ff_dim = 256;
        cfg->text.n_heads = cfg->text.n_kv_heads = 2;
        cfg->text.n_layers = arch == MD_ARCH_MD3 ? 3 : 2;
        cfg->region = (md_region_config){.dim = 128, .coord_feat_dim = 256, .coord_out_dim = 1024,
                                         .size_feat_dim = 512, .size_out_dim = 2048, .inner_dim = 256};
        moe_start = 1;
    } else if (size != MD_RANDOM_REAL) {
        return ty_err_set(err, TY_E_ARG, "random model: unknown size");
    }
    if (n_layers) cfg->text.n_layers = n_layers;
    if (arch == MD_ARCH_MD3) {  // moondream.md §2.2
        cfg->arch = MD_ARCH_MD3;
        cfg->text.rope_theta = MD3_ROPE_THETA;
        cfg->text.max_context = MD3_DEFAULT_MAX_CONTEXT;
        int tiny = size == MD_RANDOM_TINY;
        cfg->text.moe = (md_moe_config){.num_experts = tiny ? 8 : 64,
                                         .start_layer = moe_start < cfg->text.n_layers ? moe_start : cfg->text.n_layers - 1,
                                         .experts_per_token = tiny ? 3 : MD3_DEFAULT_TOP_K,
                                         .expert_inner_dim = tiny ? 64 : 1024};
        cfg->given |= MD_GIVEN_NUM_EXPERTS | MD_GIVEN_START_LAYER | MD_GIVEN_TOP_K | MD_GIVEN_EXPERT_INNER;
    }
    return TY_OK;
}

// ---- the shape table --------------------------------------------------------------

typedef struct {
    md_random_tensor *t;
    int n, cap;
    ty_status s;
    ty_err *err;
} tensor_list;

static void add(tensor_list *l, int n_dims, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add(tensor_list *l, int n_dims, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...) {
    if (l->s != TY_OK) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        md_random_tensor *p = realloc(l->t, (size_t)cap * sizeof *p);
        if (!p) {
            l->s = ty_err_set(l->err, TY_E_NOMEM, "out of memory");
            return;
        }
        l->t = p;
        l->cap = cap;
    }
    md_random_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    int k = snprintf(t->name, sizeof t->name, "model.");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name + k, sizeof t->name - (size_t)k, fmt, ap);
    va_end(ap);
    t->n_dims = n_dims;
    int64_t d[3] = {d0, d1, d2};
    t->n_elements = 1;
    for (int i = 0; i < n_dims; i++) t->shape[i] = d[i], t->n_elements *= d[i];
    size_t len = strlen(t->name);
    int is_bias = len > 5 && !strcmp(t->name + len - 5, ".bias");
    int is_norm = strstr(t->name, "ln.weight") || strstr(t->name, "ln1.weight") || strstr(t->name, "ln2.weight");
    t->fill = is_bias ? MD_FILL_ZERO : is_norm ? MD_FILL_ONE : MD_FILL_RANDOM;
    int64_t fan_in = n_dims > 1 ? d[n_dims - 1] : 1;
    t->std = 1.0f / sqrtf((float)fan_in);
}

// weight (out, in) and bias (out).
static void add_linear(tensor_list *l, const char *prefix, int64_t out, int64_t in) {
    add(l, 2, out, in, 0, "%s.weight", prefix);
    add(l, 1, out, 0, 0, "%s.bias", prefix);
}

static void add_norm(tensor_list *l, const char *prefix, int64_t dim) {
    add(l, 1, dim, 0, 0, "%s.weight", prefix);
    add(l, 1, dim, 0, 0, "%s.bias", prefix);
}

static void add_vision(tensor_list *l, const md_vision_config *c) {
    int64_t d = c->enc_dim;
    add_linear(l, "vision.patch_emb", d, 3 * 14 * 14);
    add(l, 3, 1, 729, d, "vision.pos_emb");
    char p[96];
    for (int i = 0; i < c->enc_n_layers; i++) {
#define B(sub) (snprintf(p, sizeof p, "vision.blocks.%d." sub, i), p)
        add_norm(l, B("ln1"), d);
        add_norm(l, B("ln2"), d);
        add_linear(l, B("attn.qkv"), 3 * d, d);
        add_linear(l, B("attn.proj"), d, d);
        add_linear(l, B("mlp.fc1"), c->enc_ff_dim, d);
        add_linear(l, B("mlp.fc2"), d, c->enc_ff_dim);
#undef B
    }
    add_norm(l, "vision.post_ln", d);
    add_linear(l, "vision.proj_mlp.fc1", c->proj_inner_dim, 2 * d);
    add_linear(l, "vision.proj_mlp.fc2", c->proj_out_dim, c->proj_inner_dim);
}

static void add_text(tensor_list *l, const md_config *cfg) {
    const md_text_config *c = &cfg->text;
    const md_moe_config *m = &c->moe;
    int md3 = cfg->arch == MD_ARCH_MD3;
    int64_t d = c->dim, h = c->n_heads, qkv = d + 2 * (int64_t)c->n_kv_heads * (d / h);
    add(l, 2, c->vocab_size, d, 0, "text.wte");
    char p[96];
    for (int i = 0; i < c->n_layers; i++) {
#define B(sub) (snprintf(p, sizeof p, "text.blocks.%d." sub, i), p)
        add_norm(l, B("ln"), d);
        add_linear(l, B("attn.qkv"), qkv, d);
        add_linear(l, B("attn.proj"), d, d);
        if (md3) {  // §3.3: tau in every layer
            add(l, 2, h, qkv, 0, "text.blocks.%d.attn.tau.wq", i);
            add(l, 2, h, qkv, 0, "text.blocks.%d.attn.tau.wv", i);
            add(l, 1, h, 0, 0, "text.blocks.%d.attn.tau.alpha", i);
        }
        if (md3 && m->num_experts && i >= m->start_layer) {  // experts without biases
            add_linear(l, B("mlp.router"), m->num_experts, d);
            add(l, 3, m->num_experts, 2 * (int64_t)m->expert_inner_dim, d, "text.blocks.%d.mlp.fc1.weight", i);
            add(l, 3, m->num_experts, d, m->expert_inner_dim, "text.blocks.%d.mlp.fc2.weight", i);
        } else {
            add_linear(l, B("mlp.fc1"), c->ff_dim, d);
            add_linear(l, B("mlp.fc2"), d, c->ff_dim);
        }
#undef B
    }
    add_norm(l, "text.post_ln", d);
    add_linear(l, "text.lm_head", c->vocab_size, d);
}

// Moondream 2: MLP decoders; Moondream 3: region.ln and one Linear each (§3.3).
static void add_region(tensor_list *l, const md_config *cfg) {
    const md_region_config *r = &cfg->region;
    int64_t d = cfg->text.dim;
    add(l, 2, 1, r->coord_feat_dim / 2, 0, "region.coord_features");
    add(l, 2, 2, r->size_feat_dim / 2, 0, "region.size_features");
    add_linear(l, "region.coord_encoder", d, r->coord_feat_dim);
    add_linear(l, "region.size_encoder", d, r->size_feat_dim);
    if (cfg->arch == MD_ARCH_MD3) {
        add_norm(l, "region.ln", d);
        add_linear(l, "region.coord_decoder", r->coord_out_dim, d);
        add_linear(l, "region.size_decoder", r->size_out_dim, d);
    } else {
        add_linear(l, "region.coord_decoder.fc1", r->inner_dim, d);
        add_linear(l, "region.coord_decoder.fc2", r->coord_out_dim, r->inner_dim);
        add_linear(l, "region.size_decoder.fc1", r->inner_dim, d);
        add_linear(l, "region.size_decoder.fc2", r->size_out_dim, r->inner_dim);
    }
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const md_random_tensor *)a)->name, ((const md_random_tensor *)b)->name);
}

ty_status md_random_tensors(const md_config *cfg, md_random_tensor **out, int *n, ty_err *err) {
    *out = NULL;
    *n = 0;
    tensor_list l = {.err = err};
    add_vision(&l, &cfg->vision);
    add_text(&l, cfg);
    add_region(&l, cfg);
    if (l.s != TY_OK) {
        free(l.t);
        return l.s;
    }
    qsort(l.t, (size_t)l.n, sizeof *l.t, tensor_cmp);
    *out = l.t;
    *n = l.n;
    return TY_OK;
}

// ---- the safetensors image ---------------------------------------------------------

typedef struct {
    char *s;
    size_t n, cap;
    int failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = 2 * (b->cap + (size_t)k);
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

// One 64-bit draw per value (splitmix64: a counter through a mixer, so any
// chunk starts anywhere without stepping a generator there).
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    const md_random_tensor *t;
    int n;
    const int64_t *first_chunk;  // (n + 1) index of each tensor's first chunk; the last entry is the total
    uint16_t *data;              // (all values) bf16
    const int64_t *offset;       // (n) each tensor's first value in data
    uint64_t seed;
} fill_job;

static void fill_chunk(void *ctx, int index) {
    const fill_job *j = ctx;
    int lo = 0, hi = j->n - 1;  // the tensor holding chunk `index`
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->first_chunk[mid] <= index) lo = mid;
        else hi = mid - 1;
    }
    const md_random_tensor *t = &j->t[lo];
    int64_t c = index - j->first_chunk[lo], begin = c * RW_CHUNK;
    int64_t end = begin + RW_CHUNK < t->n_elements ? begin + RW_CHUNK : t->n_elements;
    uint16_t *out = j->data + j->offset[lo];
    if (t->fill != MD_FILL_RANDOM) {
        uint16_t v = t->fill == MD_FILL_ONE ? f32_to_bf16(1.0f) : 0;
        for (int64_t i = begin; i < end; i++) out[i] = v;
        return;
    }
    // Sum of four 16-bit uniforms: mean 2 * 65535, std 65536 / sqrt(3).
    const float scale = t->std * 1.7320508075688772f / 65536.0f;
    uint64_t x = mix64(j->seed ^ mix64(((uint64_t)lo << 40) + (uint64_t)c + 1));
    for (int64_t i = begin; i < end; i++) {
        uint64_t r = mix64(x += 0x9e3779b97f4a7c15ull);
        int32_t s = (int32_t)(r & 0xffff) + (int32_t)(r >> 16 & 0xffff) + (int32_t)(r >> 32 & 0xffff) +
                    (int32_t)(r >> 48) - 2 * 65535;
        out[i] = f32_to_bf16((float)s * scale);
    }
}

// {"__metadata__": ..., name: {"dtype", "shape", "data_offsets"}, ...}, padded
// with spaces so the data area starts on RW_ALIGN.
static ty_status build_header(const md_random_tensor *t, int n, strbuf *h, ty_err *err) {
    sb_printf(h, "{\"__metadata__\":{\"format\":\"pt\",\"generator\":\"tycho random_weights\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        sb_printf(h, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[", t[i].name);
        for (int k = 0; k < t[i].n_dims; k++) sb_printf(h, "%s%lld", k ? "," : "", (long long)t[i].shape[k]);
        uint64_t end = off + 2 * (uint64_t)t[i].n_elements;
        sb_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)end);
        off = end;
    }
    sb_printf(h, "}");
    while (!h->failed && (8 + h->n) % RW_ALIGN) sb_printf(h, " ");
    return h->failed ? ty_err_set(err, TY_E_NOMEM, "out of memory") : TY_OK;
}

ty_status md_random_checkpoint(const md_config *cfg, uint64_t seed, int threads, uint8_t **out, size_t *len,
                               ty_err *err) {
    *out = NULL;
    *len = 0;
    md_random_tensor *t;
    int n;
    ty_status s = md_random_tensors(cfg, &t, &n, err);
    if (s != TY_OK) return s;
    strbuf h = {0};
    int64_t *first_chunk = malloc((size_t)(n + 1) * sizeof *first_chunk);
    int64_t *offset = malloc((size_t)n * sizeof *offset);
    if (!first_chunk || !offset) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (s == TY_OK) s = build_header(t, n, &h, err);
    int64_t values = 0;
    if (s == TY_OK) {
        first_chunk[0] = 0;
        for (int i = 0; i < n; i++) {
            offset[i] = values;
            values += t[i].n_elements;
            first_chunk[i + 1] = first_chunk[i] + (t[i].n_elements + RW_CHUNK - 1) / RW_CHUNK;
        }
        if (first_chunk[n] > 0x7fffffff) s = ty_err_set(err, TY_E_LIMIT, "random model: too many values");
    }
    size_t total = 8 + h.n + 2 * (size_t)values;
    uint8_t *buf = NULL;
    if (s == TY_OK) {
        // Anonymous pages (not malloc): a real checkpoint is 18.5 GB, and huge
        // pages make filling it, and every later read of it, cheaper.
        buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
            buf = NULL;
            s = ty_err_set(err, TY_E_NOMEM, "random model: cannot map %.2f GB", (double)total / 1e9);
        }
    }
    pool *p = NULL;
    if (s == TY_OK) {
#ifdef MADV_HUGEPAGE
        madvise(buf, total, MADV_HUGEPAGE);
#endif
        uint64_t hlen = h.n;
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));  // little-endian u64
        memcpy(buf + 8, h.s, h.n);
        s = pool_init(&p, threads, err);
    }
    if (s == TY_OK) {
        fill_job j = {t, n, first_chunk, (uint16_t *)(buf + 8 + h.n), offset, seed};
        pool_run(p, (int)first_chunk[n], fill_chunk, &j);
    }
    pool_free(p);
    free(first_chunk);
    free(offset);
    free(h.s);
    free(t);
    if (s != TY_OK) {
        if (buf) munmap(buf, total);
        return s;
    }
    *out = buf;
    *len = total;
    return TY_OK;
}

void md_random_checkpoint_free(uint8_t *buf, size_t len) {
    if (buf) munmap(buf, len);
}
