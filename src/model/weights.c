#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;  // name without "._orig_mod" and without a leading "model."
    const safetensors_tensor *t;
} name_entry;

struct md_names {
    name_entry *e;  // sorted by key
    size_t n;
};

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const name_entry *)a)->key, ((const name_entry *)b)->key);
}

static char *normalise(const char *name) {
    if (!strncmp(name, "model.", 6)) name += 6;
    char *s = strdup(name);
    if (!s) return NULL;
    for (char *p; (p = strstr(s, "._orig_mod"));) memmove(p, p + 10, strlen(p + 10) + 1);
    return s;
}

ty_status md_names_init(md_names **out, const safetensors *st, ty_err *err) {
    *out = NULL;
    md_names *n = calloc(1, sizeof *n);
    size_t count = safetensors_count(st);
    if (!n || !(n->e = calloc(count + 1, sizeof *n->e))) {
        free(n);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        const safetensors_tensor *t = safetensors_at(st, i);
        n->e[n->n].key = normalise(t->name);
        n->e[n->n].t = t;
        if (!n->e[n->n].key) {
            md_names_free(n);
            return ty_err_set(err, TY_E_NOMEM, "out of memory");
        }
        n->n++;
    }
    qsort(n->e, n->n, sizeof *n->e, entry_cmp);
    for (size_t i = 1; i < n->n; i++)
        if (!strcmp(n->e[i - 1].key, n->e[i].key)) {
            ty_status s = ty_err_set(err, TY_E_FORMAT, "checkpoint: '%s' and '%s' name the same weight",
                                     n->e[i - 1].t->name, n->e[i].t->name);
            md_names_free(n);
            return s;
        }
    *out = n;
    return TY_OK;
}

void md_names_free(md_names *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) free(n->e[i].key);
    free(n->e);
    free(n);
}

static const safetensors_tensor *lookup(const md_names *n, const char *key) {
    name_entry k = {(char *)key, NULL};
    const name_entry *e = bsearch(&k, n->e, n->n, sizeof *n->e, entry_cmp);
    return e ? e->t : NULL;
}

// Canonical -> legacy prefix rewrites (§3.2, and §3.4 for Moondream 3), tried
// in order until one names a tensor of the checkpoint; "{i}" stands for a
// layer number that is carried over. Canonical names are the HF ones, so a
// MoE layer's experts are "mlp.fc1"/"mlp.fc2" like a dense layer's MLP.
static const struct {
    const char *canonical, *legacy;
} legacy_rules[] = {
    {"vision.patch_emb.", "vision_encoder.encoder.model.visual.patch_embed.linear."},
    {"vision.pos_emb", "vision_encoder.encoder.model.visual.pos_embed"},
    {"vision.post_ln.", "vision_encoder.encoder.model.visual.norm."},
    {"vision.proj_mlp.", "vision_encoder.projection.mlp."},
    {"vision.blocks.{i}.ln1.", "vision_encoder.encoder.model.visual.blocks.{i}.norm1."},
    {"vision.blocks.{i}.ln2.", "vision_encoder.encoder.model.visual.blocks.{i}.norm2."},
    {"vision.blocks.{i}.", "vision_encoder.encoder.model.visual.blocks.{i}."},
    {"text.wte", "text_model.transformer.embd.wte.weight"},
    {"text.blocks.{i}.attn.qkv.", "text_model.transformer.h.{i}.mixer.Wqkv."},
    {"text.blocks.{i}.attn.proj.", "text_model.transformer.h.{i}.mixer.out_proj."},
    {"text.blocks.{i}.attn.tau.wqwv", "text_model.transformer.h.{i}.tau_wqwv"},
    {"text.blocks.{i}.attn.tau.wq", "text_model.transformer.h.{i}.tau_wq"},
    {"text.blocks.{i}.attn.tau.wv", "text_model.transformer.h.{i}.tau_wv"},
    {"text.blocks.{i}.attn.tau.alpha", "text_model.transformer.h.{i}.tau_alpha"},
    {"text.blocks.{i}.mlp.router.", "text_model.transformer.h.{i}.gate."},
    {"text.blocks.{i}.mlp.fc1.weight", "text_model.transformer.h.{i}.mlp.experts.weight"},
    {"text.blocks.{i}.mlp.fc2.weight", "text_model.transformer.h.{i}.mlp.output_experts.weight"},
    {"text.blocks.{i}.", "text_model.transformer.h.{i}."},
    {"text.post_ln.", "text_model.lm_head.ln."},
    {"text.lm_head.", "text_model.lm_head.linear."},
    {"region.coord_features", "region_model.coordinate_features.weight"},
    {"region.size_features", "region_model.size_features.weight"},
    {"region.coord_encoder.", "region_model.coordinate_encoder."},
    {"region.coord_decoder.fc", "region_model.coordinate_decoder.fc"},
    {"region.coord_decoder.", "region_model.coordinate_head."},  // Moondream 3: one Linear
    {"region.size_decoder.fc", "region_model.size_decoder.fc"},
    {"region.size_decoder.", "region_model.size_head."},
    {"region.", "region_model."},
};

// Matches `name` against a rule pattern; on success writes the legacy name.
static int apply_rule(const char *name, const char *pat, const char *legacy, char *out, size_t cap) {
    const char *hole = strstr(pat, "{i}");
    if (!hole) {
        size_t pl = strlen(pat);
        if (strncmp(name, pat, pl)) return 0;
        return snprintf(out, cap, "%s%s", legacy, name + pl) < (int)cap;
    }
    size_t head = (size_t)(hole - pat);
    if (strncmp(name, pat, head)) return 0;
    const char *num = name + head;
    size_t digits = strspn(num, "0123456789");
    if (!digits || strncmp(num + digits, hole + 3, strlen(hole + 3))) return 0;
    const char *lhole = strstr(legacy, "{i}");
    return snprintf(out, cap, "%.*s%.*s%s%s", (int)(lhole - legacy), legacy, (int)digits, num, lhole + 3,
                    num + digits + strlen(hole + 3)) < (int)cap;
}

const safetensors_tensor *md_names_find(const md_names *n, const char *canonical, int *legacy) {
    if (legacy) *legacy = 0;
    const safetensors_tensor *t = lookup(n, canonical);
    if (t) return t;
    char buf[256];
    for (size_t i = 0; i < sizeof legacy_rules / sizeof legacy_rules[0]; i++) {
        if (!apply_rule(canonical, legacy_rules[i].canonical, legacy_rules[i].legacy, buf, sizeof buf)) continue;
        if ((t = lookup(n, buf))) {
            if (legacy) *legacy = 1;
            return t;
        }
    }
    return NULL;
}

int md_names_any(const md_names *n, const char *prefix) {
    size_t len = strlen(prefix);
    for (size_t i = 0; i < n->n; i++)
        if (!strncmp(n->e[i].key, prefix, len)) return 1;
    return 0;
}

static void format_shape(char *buf, size_t cap, int n_dims, const int64_t *dims) {
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < n_dims && at < cap; d++) at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)dims[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

ty_status md_names_get(const md_names *n, const char *canonical, int n_dims, const int64_t *dims,
                       const safetensors_tensor **out, int *legacy, ty_err *err) {
    *out = NULL;
    const safetensors_tensor *t = md_names_find(n, canonical, legacy);
    if (!t) return ty_err_set(err, TY_E_NOT_FOUND, "checkpoint: missing tensor '%s'", canonical);
    int same = t->n_dims == n_dims;
    for (int d = 0; same && d < n_dims; d++) same = t->shape[d] == dims[d];
    if (!same) {
        char want[96], got[96];
        format_shape(want, sizeof want, n_dims, dims);
        format_shape(got, sizeof got, t->n_dims, t->shape);
        return ty_err_set(err, TY_E_FORMAT, "checkpoint: tensor '%s' has shape %s, the config needs %s", t->name, got,
                          want);
    }
    if (t->dtype != TY_DTYPE_BF16 && t->dtype != TY_DTYPE_F16 && t->dtype != TY_DTYPE_F32)
        return ty_err_set(err, TY_E_UNSUPPORTED, "checkpoint: tensor '%s' is %s (need BF16, F16 or F32)", t->name,
                          dtype_name(t->dtype));
    *out = t;
    return TY_OK;
}
