#include "model/config.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

static const md_template caption_defaults[3] = {
    {5, {1, 32708, 2, 12492, 3}}, {5, {1, 32708, 2, 6382, 3}}, {5, {1, 32708, 2, 4059, 3}}};

void md_config_defaults(md_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = MD_ARCH_MD2;
    c->vision = (md_vision_config){.enc_dim = 1152, .enc_patch_size = 14, .enc_n_layers = 27, .enc_ff_dim = 4304,
                                   .enc_n_heads = 16, .proj_out_dim = 2048, .proj_inner_dim = 8192,
                                   .crop_size = 378, .in_channels = 3, .max_crops = 12, .overlap_margin = 4};
    c->text = (md_text_config){.dim = 2048, .ff_dim = 8192, .n_layers = 24, .vocab_size = 51200,
                               .max_context = 2048, .n_heads = 32, .n_kv_heads = 32, .prefix_attn = 730,
                               .rope_theta = 10000.0f};
    c->region = (md_region_config){.dim = 2048, .coord_feat_dim = 256, .coord_out_dim = 1024,
                                   .size_feat_dim = 512, .size_out_dim = 2048, .inner_dim = 8192};
    md_tokenizer_config *t = &c->tok;
    *t = (md_tokenizer_config){.bos_id = 0, .eos_id = 0, .answer_id = 3, .thinking_id = 4, .coord_id = 5,
                               .size_id = 6, .start_ground_points_id = 7, .end_ground_id = 9};
    memcpy(t->caption, caption_defaults, sizeof caption_defaults);
    t->query_prefix = (md_template){3, {1, 15381, 2}};
    t->query_suffix = (md_template){1, {3}};
    t->detect_prefix = (md_template){4, {1, 7235, 476, 2}};
    t->detect_suffix = (md_template){1, {3}};
    t->point_prefix = (md_template){3, {1, 2581, 2}};
    t->point_suffix = (md_template){1, {3}};
}

// Reads obj[key] into *out when present: an integer in [lo, hi].
static ty_status get_int(const cJSON *obj, const char *sec, const char *key, int lo, int hi, int *out, ty_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return TY_OK;
    // Range first: converting an out-of-range double to an integer is undefined.
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return ty_err_set(err, TY_E_FORMAT, "config: %s.%s must be an integer in [%d, %d]", sec, key, lo, hi);
    *out = (int)v->valuedouble;
    return TY_OK;
}

static ty_status get_template(const cJSON *obj, const char *sec, const char *key, md_template *out, ty_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return TY_OK;
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n > MD_MAX_TEMPLATE)
        return ty_err_set(err, TY_E_FORMAT, "config: template %s.%s must be a list of at most %d token ids", sec, key,
                          MD_MAX_TEMPLATE);
    md_template t = {0};
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e9 ||
            e->valuedouble != (double)(int)e->valuedouble)
            return ty_err_set(err, TY_E_FORMAT, "config: template %s.%s holds a non-id", sec, key);
        t.ids[t.n++] = (int)e->valuedouble;
    }
    *out = t;
    return TY_OK;
}

#define INT(obj, sec, field, lo, hi)                                                   \
    do {                                                                              \
        ty_status s_ = get_int(obj, sec, #field, lo, hi, &dst->field, err);           \
        if (s_ != TY_OK) return s_;                                                   \
    } while (0)

static ty_status parse_vision(const cJSON *o, md_vision_config *dst, ty_err *err) {
    INT(o, "vision", enc_dim, 1, 1 << 16);
    INT(o, "vision", enc_patch_size, 1, 1024);
    INT(o, "vision", enc_n_layers, 1, 1024);
    INT(o, "vision", enc_ff_dim, 1, 1 << 18);
    INT(o, "vision", enc_n_heads, 1, 1024);
    INT(o, "vision", proj_out_dim, 1, 1 << 16);
    INT(o, "vision", proj_inner_dim, 1, 1 << 18);
    INT(o, "vision", crop_size, 1, 1 << 14);
    INT(o, "vision", in_channels, 1, 16);
    INT(o, "vision", max_crops, 1, 1024);
    INT(o, "vision", overlap_margin, 0, 1024);
    return TY_OK;
}

static int has_key(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v);
}

static ty_status parse_moe(const cJSON *moe, md_moe_config *m, unsigned *given, ty_err *err) {
    if (!cJSON_IsObject(moe)) return ty_err_set(err, TY_E_FORMAT, "config: text.moe must be an object");
    const struct {
        const char *key;
        int lo, hi;
        int *dst;
        unsigned flag;
    } f[] = {{"num_experts", 1, 1 << 16, &m->num_experts, MD_GIVEN_NUM_EXPERTS},
             {"start_layer", 0, 1024, &m->start_layer, MD_GIVEN_START_LAYER},
             {"experts_per_token", 1, 1 << 16, &m->experts_per_token, MD_GIVEN_TOP_K},
             {"expert_inner_dim", 1, 1 << 18, &m->expert_inner_dim, MD_GIVEN_EXPERT_INNER}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        ty_status s = get_int(moe, "text.moe", f[i].key, f[i].lo, f[i].hi, f[i].dst, err);
        if (s != TY_OK) return s;
        if (has_key(moe, f[i].key)) *given |= f[i].flag;
    }
    return TY_OK;
}

static ty_status parse_text(const cJSON *o, md_text_config *dst, unsigned *given, ty_err *err) {
    INT(o, "text", dim, 1, 1 << 16);
    INT(o, "text", ff_dim, 1, 1 << 18);
    INT(o, "text", n_layers, 1, 1024);
    INT(o, "text", vocab_size, 1, 1 << 24);
    INT(o, "text", max_context, 1, MD_MAX_CONTEXT_LIMIT);
    INT(o, "text", n_heads, 1, 1024);
    INT(o, "text", n_kv_heads, 1, 1024);
    INT(o, "text", prefix_attn, 0, 1 << 20);
    if (has_key(o, "max_context")) *given |= MD_GIVEN_MAX_CONTEXT;
    const cJSON *gelu = cJSON_GetObjectItemCaseSensitive(o, "tau_gelu");
    if (gelu && !cJSON_IsNull(gelu)) {
        if (!cJSON_IsString(gelu) || (strcmp(gelu->valuestring, "erf") && strcmp(gelu->valuestring, "tanh")))
            return ty_err_set(err, TY_E_FORMAT, "config: text.tau_gelu must be \"erf\" or \"tanh\"");
        dst->tau_gelu_tanh = !strcmp(gelu->valuestring, "tanh");
    }
    const cJSON *moe = cJSON_GetObjectItemCaseSensitive(o, "moe");
    if (moe && !cJSON_IsNull(moe)) return parse_moe(moe, &dst->moe, given, err);
    return TY_OK;
}

static ty_status parse_region(const cJSON *o, md_region_config *dst, ty_err *err) {
    INT(o, "region", dim, 1, 1 << 16);
    INT(o, "region", coord_feat_dim, 1, 1 << 16);
    INT(o, "region", coord_out_dim, 1, 1 << 16);
    INT(o, "region", size_feat_dim, 1, 1 << 16);
    INT(o, "region", size_out_dim, 1, 1 << 16);
    INT(o, "region", inner_dim, 1, 1 << 18);
    return TY_OK;
}

static ty_status parse_tokenizer(const cJSON *o, md_tokenizer_config *dst, ty_err *err) {
    INT(o, "tokenizer", bos_id, 0, 1 << 24);
    INT(o, "tokenizer", eos_id, 0, 1 << 24);
    INT(o, "tokenizer", answer_id, 0, 1 << 24);
    INT(o, "tokenizer", thinking_id, 0, 1 << 24);
    INT(o, "tokenizer", coord_id, 0, 1 << 24);
    INT(o, "tokenizer", size_id, 0, 1 << 24);
    INT(o, "tokenizer", start_ground_points_id, 0, 1 << 24);
    INT(o, "tokenizer", end_ground_id, 0, 1 << 24);
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(o, "templates");
    if (!tpl || cJSON_IsNull(tpl)) return TY_OK;
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(tpl, "caption");
    static const char *lengths[3] = {"short", "normal", "long"};
    ty_status s = TY_OK;
    for (int i = 0; i < 3 && s == TY_OK && cap; i++)
        s = get_template(cap, "templates.caption", lengths[i], &dst->caption[i], err);
    struct {
        const char *name;
        md_template *prefix, *suffix;
    } skills[] = {{"query", &dst->query_prefix, &dst->query_suffix},
                  {"detect", &dst->detect_prefix, &dst->detect_suffix},
                  {"point", &dst->point_prefix, &dst->point_suffix}};
    for (int i = 0; i < 3 && s == TY_OK; i++) {
        const cJSON *sk = cJSON_GetObjectItemCaseSensitive(tpl, skills[i].name);
        if (!sk || cJSON_IsNull(sk)) continue;
        s = get_template(sk, skills[i].name, "prefix", skills[i].prefix, err);
        if (s == TY_OK) s = get_template(sk, skills[i].name, "suffix", skills[i].suffix, err);
    }
    return s;
}

ty_status md_config_parse(md_config *c, const char *json, size_t len, ty_err *err) {
    md_config_defaults(c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ty_err_set(err, TY_E_FORMAT, "config: not a JSON object");
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "moondream3")) {
        c->arch = MD_ARCH_MD3;
        c->text.rope_theta = MD3_ROPE_THETA;
        c->text.max_context = MD3_DEFAULT_MAX_CONTEXT;
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (!cJSON_IsObject(cfg)) cfg = root;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "vision");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "text");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cfg, "region");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer");
    ty_status s = TY_OK;
    if ((v && !cJSON_IsObject(v)) || (t && !cJSON_IsObject(t)) || (r && !cJSON_IsObject(r)) ||
        (k && !cJSON_IsObject(k)))
        s = ty_err_set(err, TY_E_FORMAT, "config: vision, text, region and tokenizer must be objects");
    if (s == TY_OK && v) s = parse_vision(v, &c->vision, err);
    if (s == TY_OK && t) s = parse_text(t, &c->text, &c->given, err);
    if (s == TY_OK && r) s = parse_region(r, &c->region, err);
    if (s == TY_OK && k) s = parse_tokenizer(k, &c->tok, err);
    const cJSON *theta = cJSON_GetObjectItemCaseSensitive(cfg, "rope_theta");
    if (s == TY_OK && theta) {
        if (!cJSON_IsNumber(theta) || !(theta->valuedouble > 1.0 && theta->valuedouble < 1e12))
            s = ty_err_set(err, TY_E_FORMAT, "config: rope_theta must be a number > 1");
        else
            c->text.rope_theta = (float)theta->valuedouble, c->given |= MD_GIVEN_ROPE_THETA;
    }
    cJSON_Delete(root);
    if (s != TY_OK) return s;
    // Relations the architecture needs.
    if (c->vision.enc_dim % c->vision.enc_n_heads)
        return ty_err_set(err, TY_E_FORMAT, "config: vision.enc_dim %d is not a multiple of enc_n_heads %d",
                          c->vision.enc_dim, c->vision.enc_n_heads);
    if (c->text.dim % c->text.n_heads || c->text.n_heads % c->text.n_kv_heads)
        return ty_err_set(err, TY_E_FORMAT, "config: text.dim %d, n_heads %d, n_kv_heads %d do not divide",
                          c->text.dim, c->text.n_heads, c->text.n_kv_heads);
    if (c->text.dim / c->text.n_heads < 32)
        return ty_err_set(err, TY_E_FORMAT, "config: text head_dim %d is below the 32 rotary dims",
                          c->text.dim / c->text.n_heads);
    if (c->vision.crop_size != 378 || c->vision.enc_patch_size != 14 || c->vision.in_channels != 3)
        return ty_err_set(err, TY_E_UNSUPPORTED, "config: crops must be 378 px of 14-px RGB patches");
    // MoE settings the config gives must fit together; the loader checks the
    // rest against the tensors.
    const md_moe_config *m = &c->text.moe;
    if ((c->given & MD_GIVEN_NUM_EXPERTS) && (c->given & MD_GIVEN_TOP_K) && m->experts_per_token > m->num_experts)
        return ty_err_set(err, TY_E_FORMAT, "config: text.moe.experts_per_token %d > num_experts %d",
                          m->experts_per_token, m->num_experts);
    if ((c->given & MD_GIVEN_START_LAYER) && m->start_layer >= c->text.n_layers)
        return ty_err_set(err, TY_E_FORMAT, "config: text.moe.start_layer %d is past the last of %d layers",
                          m->start_layer, c->text.n_layers);
    return TY_OK;
}

ty_status md_config_load(md_config *c, const char *path, ty_err *err) {
    uint8_t *buf;
    size_t len;
    ty_status s = file_read_all(path, 1 << 20, &buf, &len, err);
    if (s != TY_OK) return s;
    s = md_config_parse(c, (const char *)buf, len, err);
    free(buf);
    if (s != TY_OK) ty_err_wrap(err, "%s", path);
    return s;
}
