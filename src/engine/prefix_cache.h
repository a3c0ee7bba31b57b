// The prefix cache: KV pages of computed prompt prefixes, reused by later
// requests (moondream.md's 730-position image prefix, then shared prompt text).
//
// A tree per image: the root is keyed by a 128-bit hash of the decoded pixels
// (and the model) and holds the image prefix's full pages, positions
// [0, full_end) with full_end = prefix_len rounded down to a page, plus the
// input rows of the positions [full_end, prefix_len) that share a page with
// what follows (a request recomputes those few rows against the cached keys,
// which gives bitwise the same values: the CPU kernels are batch invariant).
// Below a root, each node is one full page of prompt positions, matched by its
// content (token ids; image rows are marked by position), so requests that
// share a prompt prefix after the image (a fixed instruction) share its pages:
// a radix tree with page-sized edges. Requests without an image use a root
// with an all-zero key and an empty prefix.
//
// Pages are reference counted in the pool (kv_pages.h): the cache holds one
// reference per node page and every sequence reading a page holds one more.
// Entries nobody reads are evicted least recently used first, leaves first.
#ifndef TYCHO_ENGINE_PREFIX_CACHE_H
#define TYCHO_ENGINE_PREFIX_CACHE_H

#include <stdint.h>

#include "engine/kv_pages.h"

typedef struct {
    uint64_t lo, hi;
} pc_key;

typedef struct pc_node pc_node;
struct pc_node {
    pc_node *parent, *child, *sibling;  // tree
    pc_node *lru_prev, *lru_next;       // every node, least recently used first
    pc_node *hash_next;                 // roots: bucket chain
    pc_key key;                         // roots
    int is_root;
    int ready;        // roots: the prefix is computed (else one request is computing it)
    int users;        // roots: sequences built on it (keeps it and its tail rows alive)
    int n_pages;      // roots: full pages of the prefix; other nodes: 1
    int32_t *pages;   // (n_pages)
    int32_t *content; // non-root nodes: (page_size) content ids of the page's positions
    float *tail;      // roots: (prefix_len - full_end, row_dim) input rows of the partial page; row 0 unused when it is BOS
    uint64_t last_use;
};

typedef struct {
    kv_pages *pool;
    int prefix_len;   // positions of an image prefix (730)
    int row_dim;      // floats per input row (text dim)
    pc_node **buckets;
    int n_buckets;
    pc_node *lru_head, *lru_tail;
    uint64_t clock;
    int n_nodes, n_roots;
    uint64_t hits, misses;  // image root lookups
} prefix_cache;

ty_status prefix_cache_init(prefix_cache *c, kv_pages *pool, int prefix_len, int row_dim, ty_err *err);
// Drops every entry's page references and frees the cache.
void prefix_cache_free(prefix_cache *c);

// First position of the partial page of an image prefix.
static inline int prefix_cache_full_end(const prefix_cache *c) {
    return c->prefix_len / c->pool->page_size * c->pool->page_size;
}

// The root of key, or NULL (counts a hit or a miss when count is set).
pc_node *prefix_cache_find_root(prefix_cache *c, pc_key key, int count);
// A new root for key in the computing state (not ready, no pages).
ty_status prefix_cache_add_root(prefix_cache *c, pc_key key, pc_node **out, ty_err *err);
// The root's prefix is computed: takes a reference on its full pages and
// copies the tail rows ((prefix_len - full_end) rows of row_dim).
ty_status prefix_cache_set_ready(prefix_cache *c, pc_node *root, const int32_t *pages, const float *tail,
                                 ty_err *err);
// Removes a root that is not ready (the request computing it went away).
void prefix_cache_drop_root(prefix_cache *c, pc_node *root);

// The child of node whose page holds exactly content (page_size ids), or NULL.
pc_node *prefix_cache_child(prefix_cache *c, pc_node *node, const int32_t *content);
// Adds page (content) below parent and takes a reference on it. If an equal
// child exists it is returned instead and no reference is taken.
ty_status prefix_cache_add_child(prefix_cache *c, pc_node *parent, const int32_t *content, int32_t page,
                                 pc_node **out, ty_err *err);
// Marks node and its ancestors as just used.
void prefix_cache_touch(prefix_cache *c, pc_node *node);

// Pages that evicting every unread entry would free.
int prefix_cache_reclaimable(const prefix_cache *c);
// Evicts unread entries, least recently used leaves first, until the pool has
// at least `want` free pages or nothing more can go. Returns pages freed.
int prefix_cache_evict(prefix_cache *c, int want);
// Pages the cache holds references on.
int prefix_cache_pages(const prefix_cache *c);

#endif
