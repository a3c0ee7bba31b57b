#include "engine/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

enum { N_BUCKETS = 4096 };

ty_status prefix_cache_init(prefix_cache *c, kv_pages *pool, int prefix_len, int row_dim, ty_err *err) {
    *c = (prefix_cache){.pool = pool, .prefix_len = prefix_len, .row_dim = row_dim, .n_buckets = N_BUCKETS};
    c->buckets = calloc(N_BUCKETS, sizeof *c->buckets);
    if (!c->buckets) return ty_err_set(err, TY_E_NOMEM, "out of memory for the prefix cache");
    return TY_OK;
}

static void lru_unlink(prefix_cache *c, pc_node *n) {
    if (n->lru_prev) n->lru_prev->lru_next = n->lru_next;
    else c->lru_head = n->lru_next;
    if (n->lru_next) n->lru_next->lru_prev = n->lru_prev;
    else c->lru_tail = n->lru_prev;
    n->lru_prev = n->lru_next = NULL;
}

static void lru_push(prefix_cache *c, pc_node *n) {
    n->last_use = ++c->clock;
    n->lru_prev = c->lru_tail;
    n->lru_next = NULL;
    if (c->lru_tail) c->lru_tail->lru_next = n;
    else c->lru_head = n;
    c->lru_tail = n;
}

void prefix_cache_touch(prefix_cache *c, pc_node *node) {
    // Ancestors first, so a parent is never less recently used than its child
    // and eviction (which only takes leaves) walks the list in a useful order.
    pc_node *chain[4096];
    int n = 0;
    for (pc_node *p = node; p && n < 4096; p = p->parent) chain[n++] = p;
    for (int i = n - 1; i >= 0; i--) {
        lru_unlink(c, chain[i]);
        lru_push(c, chain[i]);
    }
}

static size_t bucket_of(const prefix_cache *c, pc_key key) {
    return (size_t)((key.lo ^ (key.hi * 0x9e3779b97f4a7c15ull)) % (uint64_t)c->n_buckets);
}

// Unlinks and frees a node, dropping its page references. The node has no children.
static void node_free(prefix_cache *c, pc_node *n) {
    lru_unlink(c, n);
    if (n->is_root) {
        pc_node **pp = &c->buckets[bucket_of(c, n->key)];
        while (*pp != n) pp = &(*pp)->hash_next;
        *pp = n->hash_next;
        c->n_roots--;
    } else {
        pc_node **pp = &n->parent->child;
        while (*pp != n) pp = &(*pp)->sibling;
        *pp = n->sibling;
    }
    for (int i = 0; i < n->n_pages; i++) kv_pages_unref(c->pool, n->pages[i]);
    free(n->pages);
    free(n->content);
    free(n->tail);
    free(n);
    c->n_nodes--;
}

static void subtree_free(prefix_cache *c, pc_node *n) {
    while (n->child) subtree_free(c, n->child);
    node_free(c, n);
}

void prefix_cache_free(prefix_cache *c) {
    for (int b = 0; c->buckets && b < c->n_buckets; b++)
        while (c->buckets[b]) subtree_free(c, c->buckets[b]);
    free(c->buckets);
    *c = (prefix_cache){0};
}

pc_node *prefix_cache_find_root(prefix_cache *c, pc_key key, int count) {
    pc_node *n = c->buckets[bucket_of(c, key)];
    while (n && (n->key.lo != key.lo || n->key.hi != key.hi)) n = n->hash_next;
    if (count) {
        if (n && n->ready) c->hits++;
        else if (!n) c->misses++;
    }
    if (n) prefix_cache_touch(c, n);
    return n;
}

ty_status prefix_cache_add_root(prefix_cache *c, pc_key key, pc_node **out, ty_err *err) {
    pc_node *n = calloc(1, sizeof *n);
    if (!n) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    n->is_root = 1;
    n->key = key;
    size_t b = bucket_of(c, key);
    n->hash_next = c->buckets[b];
    c->buckets[b] = n;
    lru_push(c, n);
    c->n_nodes++;
    c->n_roots++;
    *out = n;
    return TY_OK;
}

ty_status prefix_cache_set_ready(prefix_cache *c, pc_node *root, const int32_t *pages, const float *tail,
                                 ty_err *err) {
    int full_end = prefix_cache_full_end(c), n_pages = full_end / c->pool->page_size;
    int tail_rows = c->prefix_len - full_end;
    root->pages = malloc((size_t)(n_pages ? n_pages : 1) * sizeof *root->pages);
    root->tail = tail_rows ? malloc((size_t)tail_rows * c->row_dim * sizeof(float)) : NULL;
    if (!root->pages || (tail_rows && !root->tail)) {
        free(root->pages);
        free(root->tail);
        root->pages = NULL;
        root->tail = NULL;
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_pages; i++) {
        root->pages[i] = pages[i];
        kv_pages_ref(c->pool, pages[i]);
    }
    root->n_pages = n_pages;
    if (tail_rows) memcpy(root->tail, tail, (size_t)tail_rows * c->row_dim * sizeof(float));
    root->ready = 1;
    return TY_OK;
}

void prefix_cache_drop_root(prefix_cache *c, pc_node *root) {
    if (!root->ready && !root->child) node_free(c, root);
}

pc_node *prefix_cache_child(prefix_cache *c, pc_node *node, const int32_t *content) {
    size_t bytes = (size_t)c->pool->page_size * sizeof(int32_t);
    for (pc_node *ch = node->child; ch; ch = ch->sibling)
        if (!memcmp(ch->content, content, bytes)) return ch;
    return NULL;
}

ty_status prefix_cache_add_child(prefix_cache *c, pc_node *parent, const int32_t *content, int32_t page,
                                 pc_node **out, ty_err *err) {
    pc_node *n = prefix_cache_child(c, parent, content);
    if (n) {
        *out = n;
        return TY_OK;
    }
    size_t bytes = (size_t)c->pool->page_size * sizeof(int32_t);
    n = calloc(1, sizeof *n);
    if (n) n->pages = malloc(sizeof *n->pages);
    if (n) n->content = malloc(bytes);
    if (!n || !n->pages || !n->content) {
        if (n) {
            free(n->pages);
            free(n->content);
        }
        free(n);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    memcpy(n->content, content, bytes);
    n->pages[0] = page;
    n->n_pages = 1;
    kv_pages_ref(c->pool, page);
    n->parent = parent;
    n->sibling = parent->child;
    parent->child = n;
    lru_push(c, n);
    c->n_nodes++;
    *out = n;
    return TY_OK;
}

// Nobody reads the node: a leaf whose pages only the cache references.
static int evictable(const prefix_cache *c, const pc_node *n) {
    if (n->child || (n->is_root && (!n->ready || n->users))) return 0;
    for (int i = 0; i < n->n_pages; i++)
        if (c->pool->refs[n->pages[i]] != 1) return 0;
    return 1;
}

// A page only the cache references belongs to an entry that eviction can reach
// (every reader of a node also references all its ancestors' pages).
int prefix_cache_reclaimable(const prefix_cache *c) {
    int n = 0;
    for (const pc_node *p = c->lru_head; p; p = p->lru_next) {
        if (p->is_root && (!p->ready || p->users)) continue;
        for (int i = 0; i < p->n_pages; i++) n += c->pool->refs[p->pages[i]] == 1;
    }
    return n;
}

int prefix_cache_evict(prefix_cache *c, int want) {
    int freed = 0;
    while (c->pool->n_free < want) {
        pc_node *victim = c->lru_head;
        while (victim && !evictable(c, victim)) victim = victim->lru_next;
        if (!victim) break;
        freed += victim->n_pages;
        node_free(c, victim);
    }
    return freed;
}

int prefix_cache_pages(const prefix_cache *c) {
    int n = 0;
    for (const pc_node *p = c->lru_head; p; p = p->lru_next) n += p->n_pages;
    return n;
}
