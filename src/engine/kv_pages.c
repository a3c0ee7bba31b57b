#include "engine/kv_pages.h"

#include <stdlib.h>

ty_status kv_pages_init(kv_pages *p, int n_pages, int page_size, ty_err *err) {
    *p = (kv_pages){0};
    if (n_pages < 1 || page_size < 1) return ty_err_set(err, TY_E_ARG, "KV pool needs pages (%d) of >= 1 position (%d)",
                                                        n_pages, page_size);
    p->free_list = malloc((size_t)n_pages * sizeof *p->free_list);
    p->refs = calloc((size_t)n_pages, sizeof *p->refs);
    if (!p->free_list || !p->refs) {
        kv_pages_free(p);
        return ty_err_set(err, TY_E_NOMEM, "out of memory for the KV page pool");
    }
    p->n_pages = n_pages;
    p->page_size = page_size;
    // Lowest indices on top of the stack, so a fresh pool hands out 0, 1, 2, ...
    for (int i = 0; i < n_pages; i++) p->free_list[i] = n_pages - 1 - i;
    p->n_free = n_pages;
    return TY_OK;
}

void kv_pages_free(kv_pages *p) {
    free(p->free_list);
    free(p->refs);
    *p = (kv_pages){0};
}

int32_t kv_pages_take(kv_pages *p) {
    if (!p->n_free) return -1;
    int32_t page = p->free_list[--p->n_free];
    p->refs[page] = 1;
    return page;
}

void kv_pages_ref(kv_pages *p, int32_t page) { p->refs[page]++; }

int kv_pages_unref(kv_pages *p, int32_t page) {
    if (p->refs[page] <= 0) abort();  // a reference dropped twice: the caller's bookkeeping is broken
    if (--p->refs[page]) return 0;
    p->free_list[p->n_free++] = page;
    return 1;
}
