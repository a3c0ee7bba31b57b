#include "engine/crop_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ty_status crop_set_make(crop_set *cs, const image_rgb *img, ty_err *err) {
    memset(cs, 0, sizeof *cs);
    image_crops c;
    ty_status s = image_make_crops(&c, img, err);
    if (s != TY_OK) return s;
    size_t crop_bytes = (size_t)IMAGE_CROP_SIZE * IMAGE_CROP_SIZE * 3;
    cs->pix = malloc(crop_bytes * (size_t)c.n_crops);
    if (!cs->pix) {
        image_crops_free(&c);
        return ty_err_set(err, TY_E_NOMEM, "out of memory for the image crops");
    }
    for (int i = 0; i < c.n_crops; i++) image_crop_copy(&c, i, cs->pix + crop_bytes * (size_t)i);
    cs->n_crops = c.n_crops;
    cs->rows = c.tiling.rows;
    cs->cols = c.tiling.cols;
    image_crops_free(&c);
    return TY_OK;
}

void crop_set_free(crop_set *cs) {
    free(cs->pix);
    memset(cs, 0, sizeof *cs);
}

struct crop_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;  // a job was queued, one was released, or stop
    pthread_cond_t done;  // a worker finished a job
    crop_job *head, *tail;
    int ahead, max_ahead;  // crops held by the pool's jobs (running or made, not released)
    int stop;
    pthread_t *threads;
    int n_threads;
};

static void *crop_worker(void *arg) {
    crop_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (!p->head || p->ahead >= p->max_ahead)) pthread_cond_wait(&p->work, &p->mu);
        if (p->stop) break;
        crop_job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        j->next = NULL;
        j->state = CROP_RUNNING;
        j->counted = 1;
        p->ahead++;
        const image_rgb *img = j->img;
        pthread_mutex_unlock(&p->mu);
        crop_set cs;
        ty_err e = {0};
        ty_status s = crop_set_make(&cs, img, &e);
        pthread_mutex_lock(&p->mu);
        j->crops = cs;
        j->status = s;
        j->err = e;
        j->state = CROP_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ty_status crop_pool_init(crop_pool **out, int n_threads, int max_ahead, ty_err *err) {
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN) / 4;
        n_threads = n < 1 ? 1 : n > 4 ? 4 : (int)n;
    }
    if (n_threads > 64) return ty_err_set(err, TY_E_ARG, "%d crop threads is more than 64", n_threads);
    crop_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)n_threads, sizeof *p->threads))) {
        free(p);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->max_ahead = max_ahead < 1 ? 1 : max_ahead;
    for (; p->n_threads < n_threads; p->n_threads++)
        if (pthread_create(&p->threads[p->n_threads], NULL, crop_worker, p)) {
            crop_pool_free(p);
            return ty_err_set(err, TY_E_NOMEM, "cannot start the image crop threads");
        }
    *out = p;
    return TY_OK;
}

void crop_pool_free(crop_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (crop_job *j = p->head, *next; j; j = next) {  // should be none: left idle for their owners
        next = j->next;
        j->next = NULL;
        j->state = CROP_IDLE;
        j->pool = NULL;
    }
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int crop_pool_threads(const crop_pool *p) { return p->n_threads; }

int crop_pool_ahead(crop_pool *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->ahead;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void crop_pool_queue(crop_pool *p, crop_job *j) {
    pthread_mutex_lock(&p->mu);
    j->pool = p;
    j->state = CROP_QUEUED;
    j->next = NULL;
    if (p->tail) p->tail->next = j;
    else p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

// With p->mu held: j is off the queue (idle) or made (done) when this returns.
static void settle(crop_pool *p, crop_job *j) {
    if (j->state == CROP_QUEUED) {
        crop_job **pp = &p->head, *prev = NULL;
        while (*pp && *pp != j) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = j->next;
            if (p->tail == j) p->tail = prev;
        }
        j->next = NULL;
        j->state = CROP_IDLE;
    }
    while (j->state == CROP_RUNNING) pthread_cond_wait(&p->done, &p->mu);
}

ty_status crop_job_get(crop_job *j, const crop_set **out, ty_err *err) {
    *out = NULL;
    if (j->pool) {
        pthread_mutex_lock(&j->pool->mu);
        settle(j->pool, j);
        pthread_mutex_unlock(&j->pool->mu);
    }
    if (j->state == CROP_IDLE) {  // no worker made them: make them here (off the pool's count)
        memset(&j->err, 0, sizeof j->err);
        j->status = crop_set_make(&j->crops, j->img, &j->err);
        j->state = CROP_DONE;
    }
    if (j->status != TY_OK) {
        if (err) *err = j->err;
        return j->status;
    }
    *out = &j->crops;
    return TY_OK;
}

void crop_job_release(crop_job *j) {
    crop_pool *p = j->pool;
    if (p) {
        pthread_mutex_lock(&p->mu);
        settle(p, j);
        if (j->counted) {
            p->ahead--;
            j->counted = 0;
            pthread_cond_signal(&p->work);
        }
        pthread_mutex_unlock(&p->mu);
    }
    crop_set_free(&j->crops);
    j->state = CROP_IDLE;
    j->status = TY_OK;
    j->pool = NULL;
}
