// Encode and decode, following HF tokenizers step by step:
//   1. AddedVocabulary::extract_and_normalize: split out normalized=false
//      added tokens, then (normalizer is null) normalized=true ones;
//   2. ByteLevel pre-tokenizer: optional prefix space, the GPT-2 regex;
//   3. BPE::merge_word / Word::merge_all on the bytes of each piece;
//   4. decode: ByteLevel decoder + String::from_utf8_lossy.
// The tokenizer is read-only here; all scratch memory belongs to the call.
#include <stdlib.h>

#include "io/tokenizer_impl.h"
#include "io/unicode.h"

typedef struct {
    int32_t id;
    int32_t prev, next;  // neighbours in the word, -1 at the ends
    int32_t len;         // 0 once merged into its left neighbour
} bpe_sym;

typedef struct {
    uint32_t rank, pos;  // popped lowest rank first, then leftmost, as HF's Merge ordering
    int32_t new_id;
} bpe_merge;

// Per-call working memory, so concurrent calls share nothing mutable.
typedef struct {
    int32_t *ids;  // (cap) the output
    size_t n, cap;
    uint8_t *prefixed;  // (prefixed_cap) a piece with the pre-tokenizer's prefix space
    size_t prefixed_cap;
    bpe_sym *syms;  // (word_cap) symbols of the word being merged
    bpe_merge *heap;  // (2 * word_cap) candidate merges: n - 1 to start, +2 -1 (at least) per merge
    size_t word_cap;
    ty_err *err;
} enc_state;

static ty_status grow(void **p, size_t *cap, size_t need, size_t elem, ty_err *err) {
    if (need <= *cap) return TY_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return ty_err_set(err, TY_E_NOMEM, "tokenizer: out of memory (%zu items)", c);
    *p = q;
    *cap = c;
    return TY_OK;
}

static ty_status push_id(enc_state *st, int32_t id) {
    if (st->n == st->cap) {
        ty_status s = grow((void **)&st->ids, &st->cap, st->n + 1, sizeof *st->ids, st->err);
        if (s) return s;
    }
    st->ids[st->n++] = id;
    return TY_OK;
}

// ---- BPE over one pre-token ----

static void heap_push(bpe_merge *h, size_t *n, bpe_merge m) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < m.rank || (h[p].rank == m.rank && h[p].pos <= m.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static bpe_merge heap_pop(bpe_merge *h, size_t *n) {
    bpe_merge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos))) c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos <= h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void sym_add(bpe_sym *syms, int32_t *ns, int32_t id) {
    if (*ns > 0) syms[*ns - 1].next = *ns;
    syms[*ns] = (bpe_sym){id, *ns - 1, -1, 1};
    (*ns)++;
}

static ty_status bpe_word(const tokenizer *t, enc_state *st, const uint8_t *w, size_t n) {
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab_bytes, t->arena, w, n);
        if (id >= 0) return push_id(st, id);
    }
    if (n == 1 && t->byte_id[w[0]] >= 0) return push_id(st, t->byte_id[w[0]]);  // the common 1-byte word
    if (n > INT32_MAX / 4) return ty_err_set(st->err, TY_E_LIMIT, "tokenizer: a %zu-byte word is too long", n);
    if (n > st->word_cap) {
        size_t cap = st->word_cap, cap2 = st->word_cap;
        ty_status s = grow((void **)&st->syms, &cap, n, sizeof *st->syms, st->err);
        if (!s) s = grow((void **)&st->heap, &cap2, 2 * n, sizeof *st->heap, st->err);
        if (s) return s;
        st->word_cap = n;
    }
    bpe_sym *syms = st->syms;
    int32_t ns = 0, unk = -1;  // unk: a pending unknown-token symbol, as in BPE::merge_word
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id >= 0) {
            if (unk >= 0) sym_add(syms, &ns, unk), unk = -1;
            sym_add(syms, &ns, id);
        } else if (t->has_unk) {
            if (t->unk_id < 0) return ty_err_set(st->err, TY_E_FORMAT, "tokenizer: model.unk_token is not in the vocab");
            if (unk >= 0 && !t->fuse_unk) sym_add(syms, &ns, unk);
            unk = t->unk_id;
        }  // else: no token for this byte and no unk_token: HF drops it
    }
    if (unk >= 0) sym_add(syms, &ns, unk);

    // Word::merge_all: apply the lowest-rank merge (leftmost on ties) until none applies.
    bpe_merge *heap = st->heap;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
        const tok_merge_slot *m = tok_merge_get(t, syms[i].id, syms[i + 1].id);
        if (m) heap_push(heap, &hn, (bpe_merge){m->rank, (uint32_t)i, m->new_id});
    }
    while (hn > 0) {
        bpe_merge top = heap_pop(heap, &hn);
        bpe_sym *cur = &syms[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        bpe_sym right = syms[cur->next];
        // Skip entries made stale by earlier merges (the pair there changed).
        const tok_merge_slot *m = tok_merge_get(t, cur->id, right.id);
        if (!m || m->new_id != top.new_id) continue;
        syms[cur->next].len = 0;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) syms[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0 && (m = tok_merge_get(t, syms[cur->prev].id, cur->id)))
            heap_push(heap, &hn, (bpe_merge){m->rank, (uint32_t)cur->prev, m->new_id});
        if (cur->next >= 0 && (m = tok_merge_get(t, cur->id, syms[cur->next].id)))
            heap_push(heap, &hn, (bpe_merge){m->rank, top.pos, m->new_id});
    }
    for (int32_t i = 0; i < ns; i++) {
        if (syms[i].len == 0) continue;
        ty_status s = push_id(st, syms[i].id);
        if (s) return s;
    }
    return TY_OK;
}

// ---- the ByteLevel pre-tokenizer ----

enum { CLS_OTHER, CLS_L, CLS_N, CLS_WS };

// Class of the character at s[i] for the GPT-2 regex; *len gets its byte length.
// The text was validated as UTF-8, so decoding cannot fail.
static inline int char_class(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint32_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        if ((uint32_t)((c | 0x20) - 'a') < 26) return CLS_L;
        if ((uint32_t)(c - '0') < 10) return CLS_N;
        return c == ' ' || (c >= 9 && c <= 13) ? CLS_WS : CLS_OTHER;
    }
    *len = unicode_utf8_decode(s + i, n - i, &c);
    unsigned p = unicode_props(c);
    return p & UNICODE_L ? CLS_L : p & UNICODE_N ? CLS_N : p & UNICODE_WS ? CLS_WS : CLS_OTHER;
}

// End of the regex match that starts at i (< n), for
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// tried left to right at i as Oniguruma does. Every character is in exactly
// one class, so some alternative always matches and matches cover the text.
static size_t pretok_next(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    size_t len, start = i;
    int cls = char_class(s, n, i, &len);
    if (s[i] == ' ' && i + 1 < n) {  // " ?X+": the space joins a following non-space run
        size_t len2;
        int cls2 = char_class(s, n, i + 1, &len2);
        if (cls2 != CLS_WS) cls = cls2, len = len2, i++;
    }
    if (cls != CLS_WS) {
        size_t j = i + len;
        while (j < n && char_class(s, n, j, &len) == cls) j += len;
        return j;
    }
    size_t j = i, last = i;  // last: where the final whitespace character of the run starts
    while (j < n && char_class(s, n, j, &len) == CLS_WS) last = j, j += len;
    if (j == n) return n;             // \s+(?!\S) at the end of the text takes the whole run
    return last > start ? last : j;   // else it leaves the last space to the next word; \s+ takes a lone one
}

static ty_status encode_piece(const tokenizer *t, enc_state *st, const uint8_t *s, size_t n) {
    if (n == 0) return TY_OK;
    if (t->add_prefix_space && s[0] != ' ') {
        ty_status e = grow((void **)&st->prefixed, &st->prefixed_cap, n + 1, 1, st->err);
        if (e) return e;
        st->prefixed[0] = ' ';
        memcpy(st->prefixed + 1, s, n);
        s = st->prefixed;
        n++;
    }
    if (!t->use_regex) return bpe_word(t, st, s, n);
    for (size_t i = 0; i < n;) {
        size_t end = pretok_next(s, n, i);
        ty_status e = bpe_word(t, st, s + i, end - i);
        if (e) return e;
        i = end;
    }
    return TY_OK;
}

// ---- added tokens (AddedVocabulary::find_matches) ----

static size_t char_start(const uint8_t *s, size_t i) {  // start of the character holding byte i
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    return i;
}

static unsigned props_at(const uint8_t *s, size_t n, size_t i) {
    uint32_t cp;
    return unicode_utf8_decode(s + i, n - i, &cp) ? unicode_props(cp) : 0;
}

static ty_status split_added(const tokenizer *t, enc_state *st, int pass, const uint8_t *s, size_t n) {
    const tok_added_set *set = &t->sets[pass];
    size_t start_offset = 0, pos = 0;
    while (set->bucket[256] > 0 && pos < n) {
        // The leftmost-longest match at or after pos.
        const tok_added *hit = NULL;
        size_t p = pos;
        for (; p < n && !hit; p++)
            for (uint32_t k = set->bucket[s[p]]; k < set->bucket[s[p] + 1]; k++) {
                const tok_added *a = &t->added[set->order[k]];
                if (a->len <= n - p && !memcmp(t->arena + a->off, s + p, a->len)) {
                    hit = a;
                    break;
                }
            }
        if (!hit) break;
        size_t start = p - 1, stop = start + hit->len;
        pos = stop;  // the search resumes after the match even if the flags reject it
        if (hit->single_word) {
            int word_before = start > 0 && (props_at(s, n, char_start(s, start - 1)) & UNICODE_W);
            int word_after = stop < n && (props_at(s, n, stop) & UNICODE_W);
            if (word_before || word_after) continue;
        }
        if (hit->lstrip) {  // take the whitespace before it, unless an earlier match has it
            size_t ws = start;
            while (ws > 0) {
                size_t c = char_start(s, ws - 1);
                if (!(props_at(s, n, c) & UNICODE_WS)) break;
                ws = c;
            }
            start = ws > start_offset ? ws : start_offset;
        }
        while (hit->rstrip && stop < n) {  // take the whitespace after it
            uint32_t cp;
            size_t l = unicode_utf8_decode(s + stop, n - stop, &cp);
            if (!l || !(unicode_props(cp) & UNICODE_WS)) break;
            stop += l;
        }
        ty_status e = TY_OK;
        if (start_offset < start)
            e = pass == 0 ? split_added(t, st, 1, s + start_offset, start - start_offset)
                          : encode_piece(t, st, s + start_offset, start - start_offset);
        if (e || (e = push_id(st, hit->id))) return e;
        start_offset = stop;
    }
    if (start_offset >= n) return TY_OK;
    return pass == 0 ? split_added(t, st, 1, s + start_offset, n - start_offset)
                     : encode_piece(t, st, s + start_offset, n - start_offset);
}

// ---- API ----

ty_status tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids,
                           ty_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return ty_err_set(err, TY_E_ARG, "tokenizer_encode: NULL argument");
    if (len > TOKENIZER_MAX_TEXT_BYTES)
        return ty_err_set(err, TY_E_LIMIT, "text of %zu bytes exceeds the limit of %zu", len, TOKENIZER_MAX_TEXT_BYTES);
    size_t bad = unicode_utf8_check((const uint8_t *)text, len);
    if (bad != len) return ty_err_set(err, TY_E_ARG, "text is not valid UTF-8 (bad byte at offset %zu)", bad);
    enc_state st = {.err = err};
    ty_status s = split_added(t, &st, 0, (const uint8_t *)text, len);
    free(st.prefixed);
    free(st.syms);
    free(st.heap);
    if (s || st.n == 0) {
        free(st.ids);
        return s;
    }
    *ids = st.ids;
    *n_ids = st.n;
    return TY_OK;
}

ty_status tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, ty_err *err) {
    *text = NULL;
    *len = 0;
    if (!t || (!ids && n)) return ty_err_set(err, TY_E_ARG, "tokenizer_decode: NULL argument");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !(t->ids[id].flags & TOK_ID_EXISTS)) continue;  // dropped, as HF does
        if (!(t->ids[id].flags & TOK_ID_SPECIAL)) total += t->ids[id].dec_len;
    }
    if (total > SIZE_MAX / 4) return ty_err_set(err, TY_E_LIMIT, "decoded text too long");
    uint8_t *raw = malloc(total + 1);
    if (!raw) return ty_err_set(err, TY_E_NOMEM, "out of memory (%zu bytes)", total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !(t->ids[id].flags & TOK_ID_EXISTS)) continue;
        const tok_id_info *info = &t->ids[id];
        if (info->flags & TOK_ID_SPECIAL) continue;  // skip_special_tokens=True
        memcpy(raw + o, t->arena + info->dec_off, info->dec_len);
        o += info->dec_len;
    }
    if (unicode_utf8_check(raw, total) != total) {  // rare: a character split between tokens
        uint8_t *fixed = malloc(3 * total + 1);
        if (!fixed) {
            free(raw);
            return ty_err_set(err, TY_E_NOMEM, "out of memory (%zu bytes)", 3 * total + 1);
        }
        total = unicode_utf8_lossy(raw, total, fixed);
        free(raw);
        raw = fixed;
    }
    raw[total] = '\0';
    *text = (char *)raw;
    *len = total;
    return TY_OK;
}

int32_t tokenizer_vocab_size(const tokenizer *t) { return t ? t->n_ids : 0; }

int32_t tokenizer_token_id(const tokenizer *t, const char *token_string) {
    if (!t || !token_string) return -1;
    size_t n = strlen(token_string);
    int32_t id = tok_strmap_get(&t->added_map, t->arena, token_string, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, t->arena, token_string, n);
}

int tokenizer_is_special(const tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->ids[id].flags & TOK_ID_SPECIAL);
}
