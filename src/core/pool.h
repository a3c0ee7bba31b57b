// A fixed thread pool for data-parallel loops. One pool per engine (never a
// global), so two engines in one process do not share or fight over threads.
//
// pool_run(p, n, fn, ctx) calls fn(ctx, i) for every i in [0, n), spread over
// the workers and the calling thread, and returns when all calls are done.
// Calls from several threads at once are serialised; fn must not call
// pool_run on the same pool.
#ifndef TYCHO_CORE_POOL_H
#define TYCHO_CORE_POOL_H

#include "core/err.h"

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int index);

// n_threads <= 0 picks the number of online CPUs; 1 runs everything inline.
ty_status pool_init(pool **out, int n_threads, ty_err *err);
void pool_free(pool *p);
int pool_size(const pool *p);
void pool_run(pool *p, int n, pool_fn fn, void *ctx);

#endif
