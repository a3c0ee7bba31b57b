// Image crops made ahead of the vision tower on a few CPU threads the engine
// owns (issue 8): libvips' resizes take tens of ms per image (37 ms for an
// 800x600 image on the 2-core dev machine), and on the scheduler thread they
// left the GPU idle while they ran. A request's image is queued here when it
// is submitted; when its vision runs, the scheduler thread takes the crops if
// they are made, waits for them if a worker is making them, and makes them
// itself if no worker has started (so it never waits behind a queue).
//
// Memory stays bounded: workers hold at most max_ahead images' crops at a
// time (taking the next job only when one is released), and a job's crops
// are freed when it is released (its vision ran, its prefix came from the
// cache, or it failed or was cancelled).
//
// A job belongs to one owner at a time (the engine: the submitting thread,
// then the engine thread); the pool's lock orders the hand-offs with workers.
#ifndef TYCHO_ENGINE_CROP_POOL_H
#define TYCHO_ENGINE_CROP_POOL_H

#include "io/image.h"

// The vision tower's input for one image.
typedef struct {
    uint8_t *pix;  // (n_crops, 378, 378, 3) uint8 RGB: crop 0 the global one, then the tiles
    int n_crops, rows, cols;
} crop_set;

// Makes the crops of img on the calling thread (image_make_crops + copies).
ty_status crop_set_make(crop_set *cs, const image_rgb *img, ty_err *err);
void crop_set_free(crop_set *cs);

typedef struct crop_pool crop_pool;

typedef enum { CROP_IDLE, CROP_QUEUED, CROP_RUNNING, CROP_DONE } crop_state;

typedef struct crop_job crop_job;
struct crop_job {
    const image_rgb *img;  // set by the owner; read until the job is released
    crop_pool *pool;       // where it was queued (NULL: never)
    // Under the pool's lock while queued or running:
    crop_state state;
    crop_job *next;
    int counted;      // a worker made it: it counts against max_ahead until released
    crop_set crops;   // CROP_DONE and status TY_OK
    ty_status status;
    ty_err err;
};

// n_threads workers (<= 0: a quarter of the online CPUs, 1 to 4); max_ahead
// images' crops held by the pool at most (>= 1).
ty_status crop_pool_init(crop_pool **out, int n_threads, int max_ahead, ty_err *err);
// Every queued job must have been released first.
void crop_pool_free(crop_pool *p);
int crop_pool_threads(const crop_pool *p);
// Images whose crops the workers hold now (being made, or made and not released).
int crop_pool_ahead(crop_pool *p);

// Queues j (j->img set, j idle) for a worker.
void crop_pool_queue(crop_pool *p, crop_job *j);
// The crops of j, now: *out points at j->crops until j is released. Takes
// j off the queue and makes them here when no worker has started them; waits
// when one has. A failure (the image cannot be cropped) is j's alone, and
// asking again gives the same answer.
ty_status crop_job_get(crop_job *j, const crop_set **out, ty_err *err);
// Takes j off the queue (or waits for its worker) and frees its crops; j is
// idle again. Safe on a job never queued.
void crop_job_release(crop_job *j);

#endif
