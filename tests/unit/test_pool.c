// Thread pool: every index runs exactly once, across many jobs, from several
// callers at once, and with pools of 1 and many threads.
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/pool.h"
#include "test.h"

typedef struct {
    atomic_int *hits;
} job;

static void count(void *ctx, int i) { atomic_fetch_add(&((job *)ctx)->hits[i], 1); }

static int run_jobs(pool *p, int n, int rounds) {
    atomic_int *hits = calloc((size_t)n, sizeof *hits);
    job j = {hits};
    for (int r = 0; r < rounds; r++) pool_run(p, n, count, &j);
    int ok = 1;
    for (int i = 0; i < n; i++) ok &= atomic_load(&hits[i]) == rounds;
    free(hits);
    return ok;
}

static void *caller(void *arg) { return (void *)(intptr_t)run_jobs(arg, 1000, 50); }

int main(void) {
    ty_err err;
    int sizes[] = {1, 2, 5};
    for (int s = 0; s < 3; s++) {
        pool *p = NULL;
        CHECK(pool_init(&p, sizes[s], &err) == TY_OK);
        CHECK(pool_size(p) == sizes[s]);
        CHECK(run_jobs(p, 1, 10));
        CHECK(run_jobs(p, 7, 100));
        CHECK(run_jobs(p, 10000, 3));
        pool_run(p, 0, count, NULL);  // nothing to do must not touch ctx
        pthread_t t[3];
        for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, caller, p);
        for (int i = 0; i < 3; i++) {
            void *ok;
            pthread_join(t[i], &ok);
            CHECK(ok != NULL);
        }
        pool_free(p);
    }
    pool *p = NULL;
    CHECK(pool_init(&p, 0, &err) == TY_OK && pool_size(p) >= 1);
    pool_free(p);
    CHECK(pool_init(&p, 5000, &err) == TY_E_ARG);
    return test_report("test_pool");
}
