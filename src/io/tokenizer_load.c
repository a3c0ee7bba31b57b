// tokenizer.json -> struct tokenizer: validates everything up front so that
// encode/decode never meet a surprise, and refuses (naming it) any component
// whose behaviour tycho does not reproduce.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/file.h"
#include "io/tokenizer_impl.h"
#include "io/unicode.h"

// ---- arena and maps (build side; lookups are in tokenizer_impl.h) ----

static ty_status arena_add(tokenizer *t, const void *p, size_t n, uint32_t *off, ty_err *err) {
    if (t->arena_len + n > UINT32_MAX) return ty_err_set(err, TY_E_LIMIT, "strings exceed 4 GB");
    if (t->arena_len + n > t->arena_cap || !t->arena) {  // allocated even for "" so keys never point into NULL
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_len + n) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return ty_err_set(err, TY_E_NOMEM, "out of memory (%zu bytes of strings)", cap);
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n) memcpy(t->arena + t->arena_len, p, n);
    *off = (uint32_t)t->arena_len;
    t->arena_len += n;
    return TY_OK;
}

static uint32_t table_size(size_t count) {  // a power of two at least twice count
    uint32_t cap = 8;
    while (cap < 2 * count) cap *= 2;
    return cap;
}

static ty_status strmap_init(tok_strmap *m, size_t count, ty_err *err) {
    uint32_t cap = table_size(count);
    m->slots = malloc((size_t)cap * sizeof *m->slots);
    if (!m->slots) return ty_err_set(err, TY_E_NOMEM, "out of memory (map of %zu entries)", count);
    for (uint32_t i = 0; i < cap; i++) m->slots[i].value = -1;
    m->mask = cap - 1;
    m->count = 0;
    return TY_OK;
}

// Inserts key -> value unless the key is present; returns the value already
// there, or -1 when it inserted. The map was sized for every key in advance.
static int32_t strmap_put(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t value) {
    uint32_t h = tok_hash_bytes(arena + off, len);
    uint32_t i = h & m->mask;
    for (; m->slots[i].value >= 0; i = (i + 1) & m->mask) {
        const tok_strmap_slot *s = &m->slots[i];
        if (s->hash == h && s->len == len && memcmp(arena + s->off, arena + off, len) == 0) return s->value;
    }
    m->slots[i] = (tok_strmap_slot){off, len, h, value};
    m->count++;
    return -1;
}

// ---- the ByteLevel byte <-> character map (GPT-2's bytes_to_unicode) ----

// Printable Latin-1 bytes stand for themselves; the other 68 bytes, in order,
// become U+0100.. so that every byte is a visible character.
static void bytelevel_map(uint32_t byte_char[256], int16_t char_byte[324]) {
    for (int c = 0; c < 324; c++) char_byte[c] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_char[b] = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        char_byte[byte_char[b]] = (int16_t)b;
    }
}

// The bytes HF's ByteLevel decoder makes of one token: each character mapped
// back to its byte, or, if any character is outside the map, the token's own
// UTF-8. Appends them to the arena; *mapped says which case it was.
static ty_status bytelevel_decode(tokenizer *t, const int16_t char_byte[324], const char *s, size_t n,
                                  uint32_t *off, uint32_t *len, int *mapped, ty_err *err) {
    uint8_t small[256];
    uint8_t *buf = n <= sizeof small ? small : malloc(n);
    if (!buf) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    size_t o = 0, i = 0;
    *mapped = 1;
    while (i < n) {
        uint32_t cp;
        size_t l = unicode_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (l == 0 || cp >= 324 || char_byte[cp] < 0) {
            *mapped = 0;
            break;
        }
        buf[o++] = (uint8_t)char_byte[cp];
        i += l;
    }
    ty_status st = *mapped ? arena_add(t, buf, o, off, err) : arena_add(t, s, n, off, err);
    *len = (uint32_t)(*mapped ? o : n);
    if (buf != small) free(buf);
    return st;
}

// ---- JSON helpers ----

static int json_is_null(const cJSON *j) { return !j || cJSON_IsNull(j); }

// Reads an optional boolean: missing or null gives def.
static ty_status json_bool(const cJSON *obj, const char *key, int def, int *out, const char *ctx, ty_err *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (json_is_null(j)) {
        if (def < 0) return ty_err_set(err, TY_E_FORMAT, "%s.%s is missing", ctx, key);
        *out = def;
        return TY_OK;
    }
    if (!cJSON_IsBool(j)) return ty_err_set(err, TY_E_FORMAT, "%s.%s must be a boolean", ctx, key);
    *out = cJSON_IsTrue(j);
    return TY_OK;
}

static int json_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d < TOKENIZER_MAX_ID) || (double)(int32_t)d != d) return 0;
    *id = (int32_t)d;
    return 1;
}

// The "type" of a component object; NULL (with err set) when it has none.
static const char *json_type(const cJSON *j, const char *ctx, ty_err *err) {
    const cJSON *ty = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
    if (!cJSON_IsString(ty)) {
        ty_err_set(err, TY_E_FORMAT, "%s must be null or an object with a string \"type\"", ctx);
        return NULL;
    }
    return ty->valuestring;
}

// ---- the pipeline components around the model ----

static ty_status load_components(tokenizer *t, const cJSON *root, ty_err *err) {
    static const char *must_be_null[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++)
        if (!json_is_null(cJSON_GetObjectItemCaseSensitive(root, must_be_null[i])))
            return ty_err_set(err, TY_E_UNSUPPORTED, "%s is not supported (it must be null)", must_be_null[i]);

    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!json_is_null(j)) {
        const char *ty = json_type(j, "normalizer", err);
        if (!ty) return err ? err->code : TY_E_FORMAT;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        int empty_sequence = !strcmp(ty, "Sequence") && cJSON_IsArray(list) && cJSON_GetArraySize(list) == 0;
        if (!empty_sequence)
            return ty_err_set(err, TY_E_UNSUPPORTED, "normalizer type '%.64s' is not supported (only null)", ty);
    }

    j = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (json_is_null(j))
        return ty_err_set(err, TY_E_UNSUPPORTED, "pre_tokenizer null is not supported (only ByteLevel)");
    const char *ty = json_type(j, "pre_tokenizer", err);
    if (!ty) return err ? err->code : TY_E_FORMAT;
    if (strcmp(ty, "ByteLevel"))
        return ty_err_set(err, TY_E_UNSUPPORTED, "pre_tokenizer type '%.64s' is not supported (only ByteLevel)", ty);
    int trim;
    ty_status st;
    if ((st = json_bool(j, "add_prefix_space", -1, &t->add_prefix_space, "pre_tokenizer", err)) ||
        (st = json_bool(j, "trim_offsets", 1, &trim, "pre_tokenizer", err)) ||  // offsets only
        (st = json_bool(j, "use_regex", 1, &t->use_regex, "pre_tokenizer", err)))
        return st;

    j = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!json_is_null(j)) {
        if (!(ty = json_type(j, "post_processor", err))) return err ? err->code : TY_E_FORMAT;
        if (strcmp(ty, "ByteLevel"))  // ByteLevel only trims offsets; the others add tokens
            return ty_err_set(err, TY_E_UNSUPPORTED,
                              "post_processor type '%.64s' is not supported (only ByteLevel or null)", ty);
    }

    j = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (json_is_null(j)) return ty_err_set(err, TY_E_UNSUPPORTED, "decoder null is not supported (only ByteLevel)");
    if (!(ty = json_type(j, "decoder", err))) return err ? err->code : TY_E_FORMAT;
    if (strcmp(ty, "ByteLevel"))
        return ty_err_set(err, TY_E_UNSUPPORTED, "decoder type '%.64s' is not supported (only ByteLevel)", ty);
    return TY_OK;
}

// ---- the BPE model ----

static ty_status load_model_options(tokenizer *t, const cJSON *model, ty_err *err) {
    if (!cJSON_IsObject(model)) return ty_err_set(err, TY_E_FORMAT, "model must be an object");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!json_is_null(j) && (!cJSON_IsString(j) || strcmp(j->valuestring, "BPE")))
        return ty_err_set(err, TY_E_UNSUPPORTED, "model type '%.64s' is not supported (only BPE)",
                          cJSON_IsString(j) ? j->valuestring : "?");
    if (json_is_null(j) && !cJSON_GetObjectItemCaseSensitive(model, "merges"))  // HF guesses by fields
        return ty_err_set(err, TY_E_UNSUPPORTED, "model has no type and no merges (only BPE is supported)");

    static const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {  // an empty affix changes nothing
        j = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!json_is_null(j) && !(cJSON_IsString(j) && j->valuestring[0] == '\0'))
            return ty_err_set(err, TY_E_UNSUPPORTED, "model.%s is not supported (it must be null)", affixes[i]);
    }
    j = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!json_is_null(j) && !(cJSON_IsNumber(j) && j->valuedouble == 0.0))  // HF treats 0 as none
        return ty_err_set(err, TY_E_UNSUPPORTED, "model.dropout is not supported (it must be null)");
    int byte_fallback = 0;
    ty_status st;
    if ((st = json_bool(model, "byte_fallback", 0, &byte_fallback, "model", err)) ||
        (st = json_bool(model, "fuse_unk", 0, &t->fuse_unk, "model", err)) ||
        (st = json_bool(model, "ignore_merges", 0, &t->ignore_merges, "model", err)))
        return st;
    if (byte_fallback) return ty_err_set(err, TY_E_UNSUPPORTED, "model.byte_fallback is not supported");
    return TY_OK;
}

static ty_status load_vocab(tokenizer *t, const cJSON *vocab, ty_err *err) {
    if (!cJSON_IsObject(vocab)) return ty_err_set(err, TY_E_FORMAT, "model.vocab must be an object");
    size_t count = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) count++;
    if (count >= TOKENIZER_MAX_ID) return ty_err_set(err, TY_E_LIMIT, "model.vocab has %zu tokens", count);
    ty_status st = strmap_init(&t->vocab, count, err);
    if (st) return st;
    uint32_t *seen = calloc(TOKENIZER_MAX_ID / 32, sizeof *seen);  // one bit per id
    if (!seen) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (!json_id(e, &id)) {
            st = ty_err_set(err, TY_E_FORMAT, "model.vocab['%.64s'] must be an integer id in [0, %d)", e->string,
                            TOKENIZER_MAX_ID);
            break;
        }
        if (seen[id / 32] & (1u << (id % 32))) {
            st = ty_err_set(err, TY_E_FORMAT, "model.vocab: id %d is given to more than one token ('%.64s')", id,
                            e->string);
            break;
        }
        seen[id / 32] |= 1u << (id % 32);
        uint32_t off, len = (uint32_t)strlen(e->string);
        if ((st = arena_add(t, e->string, len, &off, err))) break;
        if (strmap_put(&t->vocab, t->arena, off, len, id) >= 0) {
            st = ty_err_set(err, TY_E_FORMAT, "model.vocab: token '%.64s' is listed twice", e->string);
            break;
        }
        if (id >= t->n_ids) t->n_ids = id + 1;
    }
    free(seen);
    return st;
}

static ty_status merge_put(tokenizer *t, const char *a, const char *b, uint32_t rank, ty_err *err) {
    size_t la = strlen(a), lb = strlen(b);
    int32_t ia = tok_strmap_get(&t->vocab, t->arena, a, la);
    int32_t ib = tok_strmap_get(&t->vocab, t->arena, b, lb);
    char small[256];
    char *ab = la + lb <= sizeof small ? small : malloc(la + lb);
    if (!ab) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb);
    int32_t merged = tok_strmap_get(&t->vocab, t->arena, ab, la + lb);
    if (ab != small) free(ab);
    if (ia < 0 || ib < 0 || merged < 0)
        return ty_err_set(err, TY_E_FORMAT, "model.merges[%u] ('%.64s' '%.64s'): token '%.64s%s' is not in the vocab",
                          rank, a, b, ia < 0 ? a : ib < 0 ? b : a, ia < 0 || ib < 0 ? "" : b);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint32_t i = tok_merge_hash(key) & t->merges_mask;
    while (t->merges[i].new_id >= 0 && t->merges[i].key != key) i = (i + 1) & t->merges_mask;
    // A repeated pair takes the later rank, as HF's HashMap collect does.
    t->merges[i] = (tok_merge_slot){key, rank, merged};
    return TY_OK;
}

static ty_status load_merges(tokenizer *t, const cJSON *merges, ty_err *err) {
    if (!cJSON_IsArray(merges)) return ty_err_set(err, TY_E_FORMAT, "model.merges must be an array");
    size_t count = 0;
    for (const cJSON *e = merges->child; e; e = e->next) count++;
    uint32_t cap = table_size(count);
    t->merges = malloc((size_t)cap * sizeof *t->merges);
    if (!t->merges) return ty_err_set(err, TY_E_NOMEM, "out of memory (%zu merges)", count);
    for (uint32_t i = 0; i < cap; i++) t->merges[i].new_id = -1;
    t->merges_mask = cap - 1;
    // Every entry has the form of the first: "a b" strings (legacy) or ["a", "b"] pairs.
    int legacy = merges->child && cJSON_IsString(merges->child);
    uint32_t rank = 0;
    for (const cJSON *e = merges->child; e; e = e->next) {
        ty_status st;
        if (legacy) {
            if (!cJSON_IsString(e))
                return ty_err_set(err, TY_E_FORMAT, "model.merges[%u] must be a string like the others", rank);
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;  // merges.txt header, skipped by HF too
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return ty_err_set(err, TY_E_FORMAT, "model.merges[%u] '%.64s' is not two tokens split by one space",
                                  rank, s);
            size_t la = (size_t)(sp - s);
            char small[256];
            char *a = la < sizeof small ? small : malloc(la + 1);
            if (!a) return ty_err_set(err, TY_E_NOMEM, "out of memory");
            memcpy(a, s, la);
            a[la] = '\0';
            st = merge_put(t, a, sp + 1, rank, err);
            if (a != small) free(a);
        } else {
            const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b))
                return ty_err_set(err, TY_E_FORMAT, "model.merges[%u] must be a pair of strings like the others", rank);
            st = merge_put(t, a->valuestring, b->valuestring, rank, err);
        }
        if (st) return st;
        rank++;
    }
    t->n_merges = rank;
    return TY_OK;
}

// ---- added tokens ----

static ty_status load_added(tokenizer *t, const cJSON *list, int32_t vocab_count, ty_err *err) {
    if (json_is_null(list)) return TY_OK;
    if (!cJSON_IsArray(list)) return ty_err_set(err, TY_E_FORMAT, "added_tokens must be an array");
    size_t count = 0;
    for (const cJSON *e = list->child; e; e = e->next) count++;
    t->added = calloc(count ? count : 1, sizeof *t->added);
    ty_status st = t->added ? strmap_init(&t->added_map, count, err) : ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (st) return st;
    int32_t max_added = -1;  // HF numbers new tokens after the largest id handed out so far
    uint32_t i = 0;
    for (const cJSON *e = list->child; e; e = e->next, i++) {
        char ctx[48];
        snprintf(ctx, sizeof ctx, "added_tokens[%u]", i);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int32_t id;
        if (!cJSON_IsObject(e) || !cJSON_IsString(content))
            return ty_err_set(err, TY_E_FORMAT, "%s must be an object with a string \"content\"", ctx);
        if (!json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
            return ty_err_set(err, TY_E_FORMAT, "%s.id must be an integer in [0, %d)", ctx, TOKENIZER_MAX_ID);
        tok_added a = {.id = id};
        int sw = 0, ls = 0, rs = 0, sp = 0, nz = 0;
        if ((st = json_bool(e, "single_word", 0, &sw, ctx, err)) || (st = json_bool(e, "lstrip", 0, &ls, ctx, err)) ||
            (st = json_bool(e, "rstrip", 0, &rs, ctx, err)) || (st = json_bool(e, "special", 0, &sp, ctx, err)) ||
            (st = json_bool(e, "normalized", !sp, &nz, ctx, err)))
            return st;
        a.single_word = (uint8_t)sw, a.lstrip = (uint8_t)ls, a.rstrip = (uint8_t)rs;
        a.special = (uint8_t)sp, a.normalized = (uint8_t)nz;
        const char *s = content->valuestring;
        a.len = (uint32_t)strlen(s);
        if (a.len == 0) continue;  // HF ignores empty added tokens
        if ((st = arena_add(t, s, a.len, &a.off, err))) return st;
        if (tok_strmap_get(&t->added_map, t->arena, s, a.len) >= 0)
            return ty_err_set(err, TY_E_FORMAT, "%s '%.64s' is listed twice", ctx, s);
        // The id HF itself gives the token: its vocab id, else the next free one.
        int32_t hf_id = tok_strmap_get(&t->vocab, t->arena, s, a.len);
        if (hf_id < 0 && max_added < 0) hf_id = vocab_count;
        else if (hf_id < 0) hf_id = max_added >= vocab_count || vocab_count == 0 ? max_added + 1 : vocab_count;
        if (id != hf_id)
            return ty_err_set(err, TY_E_FORMAT, "%s '%.64s' has id %d but tokenizers gives it id %d", ctx, s, id, hf_id);
        strmap_put(&t->added_map, t->arena, a.off, a.len, id);
        if (id > max_added) max_added = id;
        if (id >= t->n_ids) t->n_ids = id + 1;
        t->added[t->n_added++] = a;
    }
    return TY_OK;
}

typedef struct {
    uint8_t first;
    uint32_t len, idx;
} added_key;

static int added_key_cmp(const void *pa, const void *pb) {
    const added_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;  // longest first
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static ty_status build_added_sets(tokenizer *t, ty_err *err) {
    added_key *keys = malloc((t->n_added ? t->n_added : 1) * sizeof *keys);
    if (!keys) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (int s = 0; s < 2; s++) {
        tok_added_set *set = &t->sets[s];
        uint32_t n = 0;
        for (uint32_t i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == s)
                keys[n++] = (added_key){(uint8_t)t->arena[t->added[i].off], t->added[i].len, i};
        qsort(keys, n, sizeof *keys, added_key_cmp);
        set->order = malloc((n ? n : 1) * sizeof *set->order);
        if (!set->order) {
            free(keys);
            return ty_err_set(err, TY_E_NOMEM, "out of memory");
        }
        uint32_t k = 0;
        for (int b = 0; b < 256; b++) {
            set->bucket[b] = k;
            while (k < n && keys[k].first == b) set->order[k] = keys[k].idx, k++;
        }
        set->bucket[256] = n;
    }
    free(keys);
    return TY_OK;
}

// ---- per-id tables ----

static ty_status build_ids(tokenizer *t, ty_err *err) {
    uint32_t byte_char[256];
    int16_t char_byte[324];
    bytelevel_map(byte_char, char_byte);
    t->ids = calloc(t->n_ids ? (size_t)t->n_ids : 1, sizeof *t->ids);
    ty_status st = t->ids ? strmap_init(&t->vocab_bytes, t->vocab.count, err)
                          : ty_err_set(err, TY_E_NOMEM, "out of memory (%d ids)", t->n_ids);
    if (st) return st;
    for (uint32_t i = 0; i <= t->vocab.mask; i++) {
        const tok_strmap_slot s = t->vocab.slots[i];
        if (s.value < 0) continue;
        tok_id_info *info = &t->ids[s.value];
        int mapped;
        if ((st = bytelevel_decode(t, char_byte, t->arena + s.off, s.len, &info->dec_off, &info->dec_len, &mapped, err)))
            return st;
        info->flags = TOK_ID_EXISTS;
        // Only spellings that a ByteLevel pre-tokenizer can produce are worth finding by bytes.
        if (mapped) strmap_put(&t->vocab_bytes, t->arena, info->dec_off, info->dec_len, s.value);
    }
    for (uint32_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        tok_id_info *info = &t->ids[a->id];
        int mapped;
        if (!(info->flags & TOK_ID_EXISTS)) {
            if ((st = bytelevel_decode(t, char_byte, t->arena + a->off, a->len, &info->dec_off, &info->dec_len, &mapped,
                                       err)))
                return st;
            info->flags = TOK_ID_EXISTS;
        }
        if (a->special) info->flags |= TOK_ID_SPECIAL;
    }
    for (int b = 0; b < 256; b++) {  // the BPE alphabet: one token per byte
        uint32_t c = byte_char[b];  // < 324, so one or two UTF-8 bytes
        uint8_t utf8[2] = {(uint8_t)(0xC0 | c >> 6), (uint8_t)(0x80 | (c & 0x3F))};
        if (c < 0x80) utf8[0] = (uint8_t)c;
        t->byte_id[b] = tok_strmap_get(&t->vocab, t->arena, utf8, c < 0x80 ? 1 : 2);
    }
    return TY_OK;
}

// ---- entry points ----

// serde_json accepts "\u0000" but cJSON strings end at NUL: refuse rather than misread.
static int has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return 1;
        i++;  // skip the escaped character, so "\\u0000" is not taken for an escape
    }
    return 0;
}

static ty_status load(tokenizer *t, const char *json, size_t len, ty_err *err) {
    if (len == 0) return ty_err_set(err, TY_E_FORMAT, "file is empty");
    size_t bad = unicode_utf8_check((const uint8_t *)json, len);
    if (bad != len) return ty_err_set(err, TY_E_FORMAT, "not valid UTF-8 at byte %zu", bad);
    if (has_nul_escape(json, len)) return ty_err_set(err, TY_E_UNSUPPORTED, "strings containing \\u0000 are not supported");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return ty_err_set(err, TY_E_FORMAT, "not valid JSON (error near byte %zu)", end ? (size_t)(end - json) : 0);
    size_t rest = (size_t)(end - json);
    while (rest < len && strchr(" \t\r\n", json[rest])) rest++;
    if (rest < len) {  // serde_json refuses trailing characters too
        cJSON_Delete(root);
        return ty_err_set(err, TY_E_FORMAT, "not valid JSON (unexpected data at byte %zu)", rest);
    }
    ty_status st;
    if (!cJSON_IsObject(root)) st = ty_err_set(err, TY_E_FORMAT, "top level must be a JSON object");
    else if (!(st = load_components(t, root, err))) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (!(st = load_model_options(t, model, err)) &&
            !(st = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), err)) &&
            !(st = load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), err)) &&
            !(st = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), (int32_t)t->vocab.count, err)) &&
            !(st = build_added_sets(t, err)) && !(st = build_ids(t, err))) {
            const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
            t->unk_id = -1;
            if (cJSON_IsString(unk)) {
                t->has_unk = 1;  // if it is not in the vocab, encode fails only when it is needed, as in HF
                t->unk_id = tok_strmap_get(&t->vocab, t->arena, unk->valuestring, strlen(unk->valuestring));
            } else if (!json_is_null(unk)) {
                st = ty_err_set(err, TY_E_FORMAT, "model.unk_token must be a string or null");
            }
        }
    }
    cJSON_Delete(root);
    return st;
}

ty_status tokenizer_init_from_json(tokenizer **out, const char *json, size_t len, ty_err *err) {
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ty_err_set(err, TY_E_NOMEM, "tokenizer.json: out of memory");
    ty_status st = load(t, json, len, err);
    if (st) {
        ty_err_wrap(err, "tokenizer.json");
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return TY_OK;
}

ty_status tokenizer_init_from_file(tokenizer **out, const char *path, ty_err *err) {
    *out = NULL;
    uint8_t *buf;
    size_t len;
    ty_status st = file_read_all(path, TOKENIZER_MAX_FILE_BYTES, &buf, &len, err);
    if (st) return st;
    tokenizer *t = calloc(1, sizeof *t);
    st = t ? load(t, (const char *)buf, len, err) : ty_err_set(err, TY_E_NOMEM, "out of memory");
    free(buf);
    if (st) {
        ty_err_wrap(err, "%s", path);
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return TY_OK;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->vocab.slots);
    free(t->vocab_bytes.slots);
    free(t->added_map.slots);
    free(t->merges);
    free(t->ids);
    free(t->added);
    free(t->sets[0].order);
    free(t->sets[1].order);
    free(t);
}
