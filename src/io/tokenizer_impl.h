// Internals of the tokenizer shared by tokenizer_load.c (building) and
// tokenizer.c (encode/decode). Not part of the API: include io/tokenizer.h.
#ifndef TYCHO_IO_TOKENIZER_IMPL_H
#define TYCHO_IO_TOKENIZER_IMPL_H

#include <stdint.h>
#include <string.h>

#include "io/tokenizer.h"

// Byte string -> id, open addressing with linear probing. Keys live in the
// tokenizer's arena (offsets, so the arena may grow while maps are built).
typedef struct {
    uint32_t off, len;  // key bytes: arena[off .. off + len)
    uint32_t hash;
    int32_t value;      // -1 marks an empty slot
} tok_strmap_slot;

typedef struct {
    tok_strmap_slot *slots;  // (mask + 1), NULL while empty
    uint32_t mask;
    uint32_t count;
} tok_strmap;

// (left id, right id) -> (rank, merged id), the BPE merge table.
typedef struct {
    uint64_t key;    // left << 32 | right
    uint32_t rank;   // position in the merges list: lower merges first
    int32_t new_id;  // -1 marks an empty slot
} tok_merge_slot;

// What decode needs per id.
typedef struct {
    uint32_t dec_off, dec_len;  // the bytes the ByteLevel decoder turns this token into
    uint8_t flags;              // TOK_ID_*
} tok_id_info;

enum { TOK_ID_EXISTS = 1, TOK_ID_SPECIAL = 2 };

// One entry of added_tokens (those with non-empty content).
typedef struct {
    uint32_t off, len;  // content in the arena
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} tok_added;

// Added tokens that one matching pass looks for, bucketed by first byte and
// longest first inside a bucket, so the first hit at a position is the
// leftmost-longest match HF's Aho-Corasick (MatchKind::LeftmostLongest) finds.
typedef struct {
    uint32_t *order;        // indices into tokenizer.added
    uint32_t bucket[257];   // order[bucket[b] .. bucket[b + 1]) start with byte b
} tok_added_set;

struct tokenizer {
    char *arena;  // every string the maps point into
    size_t arena_len, arena_cap;

    tok_strmap vocab;        // model vocab: tokenizer.json spelling -> id
    tok_strmap vocab_bytes;  // model vocab by raw bytes (spelling mapped back through ByteLevel)
    tok_strmap added_map;    // added token content -> id
    tok_merge_slot *merges;  // (merges_mask + 1)
    uint32_t merges_mask;
    uint32_t n_merges;

    int32_t byte_id[256];  // model id of the one-character token for each byte, -1 if none
    int32_t n_ids;         // one past the largest id
    tok_id_info *ids;      // (n_ids)

    tok_added *added;  // (n_added) in tokenizer.json order
    uint32_t n_added;
    tok_added_set sets[2];  // [0]: normalized=false tokens (matched first), [1]: normalized=true

    // Options read from tokenizer.json.
    int add_prefix_space;  // pre_tokenizer.add_prefix_space
    int use_regex;         // pre_tokenizer.use_regex
    int ignore_merges;     // model.ignore_merges: a word already in the vocab is one token
    int has_unk;           // model.unk_token is set ...
    int32_t unk_id;        // ... and its id (-1 if it is not in the vocab: an error when needed)
    int fuse_unk;
};

static inline uint32_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint32_t h = 2166136261u;  // FNV-1a: keys are short (a word or token)
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static inline int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const void *key, size_t len) {
    if (!m->slots) return -1;
    uint32_t h = tok_hash_bytes(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const tok_strmap_slot *s = &m->slots[i];
        if (s->value < 0) return -1;
        if (s->hash == h && s->len == len && memcmp(arena + s->off, key, len) == 0) return s->value;
    }
}

static inline uint32_t tok_merge_hash(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;  // Fibonacci hashing: the high bits mix every input bit
    return (uint32_t)(key >> 32);
}

static inline const tok_merge_slot *tok_merge_get(const tokenizer *t, int32_t left, int32_t right) {
    if (!t->merges) return NULL;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = tok_merge_hash(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->new_id < 0) return NULL;
        if (s->key == key) return s;
    }
}

#endif
