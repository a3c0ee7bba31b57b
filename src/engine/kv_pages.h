// The KV page pool: a fixed number of pages of page_size positions, handed
// out by index and reference counted. A page is shared when a sequence reuses
// a cached prefix (the prefix cache and every sequence reading it each hold a
// reference); it returns to the free list when the last reference goes.
// Plain data, no model, no device: the pages' memory lives in the model's
// KV cache (md_kv_cache), indexed the same way.
#ifndef TYCHO_ENGINE_KV_PAGES_H
#define TYCHO_ENGINE_KV_PAGES_H

#include <stdint.h>

#include "core/err.h"

typedef struct {
    int n_pages, page_size;
    int n_free;
    int32_t *free_list;  // (n_pages) stack of free page indices
    int32_t *refs;       // (n_pages) references per page; 0 = free
} kv_pages;

ty_status kv_pages_init(kv_pages *p, int n_pages, int page_size, ty_err *err);
void kv_pages_free(kv_pages *p);

// Takes one free page (reference count 1), or returns -1 when none is free.
int32_t kv_pages_take(kv_pages *p);
void kv_pages_ref(kv_pages *p, int32_t page);
// Drops one reference; returns 1 when the page became free.
int kv_pages_unref(kv_pages *p, int32_t page);

static inline int kv_pages_used(const kv_pages *p) { return p->n_pages - p->n_free; }

// Pages needed for n positions.
static inline int kv_pages_for(const kv_pages *p, int positions) {
    return (positions + p->page_size - 1) / p->page_size;
}

#endif
