// The scheduler, KV page pool and prefix cache driven with a fake model.
//
// The fake model keeps one number per KV slot. Position p's number mixes its
// input (token id or embedding value) with the numbers of every earlier
// position of the sequence, read through the page table, and the logits pick
// token (number % vocab). So a sequence's tokens are a checksum of its whole
// KV history: a page shared wrongly, overwritten, freed early or read through
// a stale table changes them. Expected tokens come from the same recurrence
// computed directly. The pool is checked after every step: no page lost, none
// referenced twice by a table without a reason.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/scheduler.h"
#include "test.h"

enum { PREFIX = 10, PAGE = 4, DIM = 2, VOCAB = 16, CONTEXT = 96, MAX_SEQS = 64 };

// ---- the fake model -------------------------------------------------------------

typedef struct {
    uint64_t *slots;  // (n_pages * PAGE)
    int n_pages;
    int vision_runs, images_encoded;
    scheduler *s;  // to check that every page read is referenced
    int fail_forward;
    int fail_prepare;  // image id whose preparation fails (0: none; id + 1)
    int prepared;      // images prepared and not yet encoded
} fake_model;

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t input_value(int32_t id, const float *embed) { return id >= 0 ? (uint64_t)id : 100000 + (uint64_t)embed[0]; }

// As the engine's crops: an image that cannot be prepared fails alone.
static ty_status fake_prepare(void *ctx, void *image, ty_err *err) {
    fake_model *f = ctx;
    if (f->fail_prepare && *(const int *)image == f->fail_prepare - 1)
        return ty_err_set(err, TY_E_FORMAT, "fake image failure");
    f->prepared++;
    return TY_OK;
}

static ty_status fake_encode(void *ctx, int n, void *const *images, float *const *embeds, ty_err *err) {
    fake_model *f = ctx;
    f->vision_runs++;
    f->images_encoded += n;
    CHECK_MSG(f->prepared == n, "%d images prepared, %d encoded", f->prepared, n);  // each one, just before
    f->prepared = 0;
    for (int i = 0; i < n; i++) {
        CHECK(images[i] != NULL);
        int img = *(const int *)images[i];
        for (int r = 0; r < PREFIX - 1; r++) {
            embeds[i][r * DIM] = (float)(img * 100 + r);
            embeds[i][r * DIM + 1] = 0;
        }
    }
    return TY_OK;
}

static ty_status fake_forward(void *ctx, const md_text_step *st, ty_err *err) {
    fake_model *f = ctx;
    const ty_batch *b = st->batch;
    if (f->fail_forward) return ty_err_set(err, TY_E_NOMEM, "fake failure");
    int e = 0, o = 0;
    for (int r = 0; r < b->n_rows; r++) {
        const int32_t *pages = b->pages[b->seq[r]];
        int p = b->pos[r];
        CHECK(p < b->kv_len[b->seq[r]]);
        uint64_t h = mix(0, input_value(st->ids[r], st->ids[r] < 0 ? st->embeds + (size_t)e++ * DIM : NULL));
        h = mix(h, (uint64_t)p);
        for (int j = 0; j < p; j++) {
            int32_t page = pages[j / PAGE];
            CHECK(page >= 0 && page < f->n_pages && f->s->pool.refs[page] > 0);
            h = mix(h, f->slots[page * PAGE + j % PAGE]);
        }
        int32_t page = pages[p / PAGE];
        CHECK(f->s->pool.refs[page] > 0);
        f->slots[page * PAGE + p % PAGE] = h;
        if (o < st->n_out && st->out_rows[o] == r) {
            for (int v = 0; v < VOCAB; v++) st->logits[(size_t)o * VOCAB + v] = v == (int)(h % VOCAB) ? 1.0f : 0.0f;
            for (int d = 0; d < DIM; d++) st->hidden[(size_t)o * DIM + d] = (float)d;
            o++;
        }
    }
    CHECK(o == st->n_out);
    return TY_OK;
}

// ---- fake sequences: a prompt (tokens, maybe an embedding row), then n_gen tokens fed back ----

typedef struct {
    sched_seq seq;
    int image;          // -1: text-only
    int32_t prompt[24];
    float prompt_embed[DIM];
    int prompt_len, n_gen;
    int32_t out[64];
    int n_out;
    int32_t feed_id;
    skill_feed feed;
    int phase;  // 0 prompt, 1 generating, 2 finished
    int done_calls, image_used;
    ty_status status;
} fake_seq;

static const skill_feed *fs_next(void *owner) {
    fake_seq *q = owner;
    if (q->phase == 0) {
        q->feed = (skill_feed){q->prompt_len, q->prompt, q->prompt_embed};
        return &q->feed;
    }
    if (q->phase == 2) return NULL;
    q->feed = (skill_feed){1, &q->feed_id, NULL};
    return &q->feed;
}

static ty_status fs_consume(void *owner, float *logits, const float *hidden, ty_err *err) {
    fake_seq *q = owner;
    int tok = 0;
    for (int v = 0; v < VOCAB; v++)
        if (logits[v] > 0) tok = v;
    q->out[q->n_out++] = tok;
    q->feed_id = tok;
    q->phase = q->n_out >= q->n_gen ? 2 : 1;
    return TY_OK;
}

static void fs_done(void *owner, ty_status st, const ty_err *err) {
    fake_seq *q = owner;
    q->done_calls++;
    q->status = st;
}

static void fs_image_used(void *owner) {
    fake_seq *q = owner;
    q->image_used++;
    q->seq.image = NULL;  // as the engine frees the pixels: reading them again would crash
}

static const sched_seq_ops FS_OPS = {fs_next, fs_consume, fs_done, fs_image_used};
static int IMAGE_IDS[8] = {0, 1, 2, 3, 4, 5, 6, 7};

static void fs_init(fake_seq *q, int image, const int32_t *prompt, int n, int n_gen) {
    memset(q, 0, sizeof *q);
    q->image = image;
    memcpy(q->prompt, prompt, (size_t)n * sizeof *prompt);
    q->prompt_len = n;
    q->prompt_embed[0] = 7;
    q->n_gen = n_gen;
    q->seq.ops = &FS_OPS;
    q->seq.owner = q;
    q->seq.has_image = image >= 0;
    q->seq.image_key = (pc_key){(uint64_t)image + 1, 42};
    q->seq.image = image >= 0 ? &IMAGE_IDS[image] : NULL;
    int start = image >= 0 ? PREFIX : 0;
    q->seq.max_positions = start + n + n_gen;
    if (q->seq.max_positions > CONTEXT) q->seq.max_positions = CONTEXT;
}

// The tokens q must produce: the recurrence over its inputs, computed directly.
static void fs_expected(const fake_seq *q, int32_t *out) {
    uint64_t vals[256];
    int n = 0;
    float emb[DIM];
    for (int p = 0; q->image >= 0 && p < PREFIX; p++) {
        emb[0] = (float)(q->image * 100 + p - 1);
        uint64_t h = mix(mix(0, input_value(p == 0 ? 0 : -1, emb)), (uint64_t)n);
        for (int j = 0; j < n; j++) h = mix(h, vals[j]);
        vals[n++] = h;
    }
    for (int i = 0; i < q->prompt_len + q->n_gen - 1; i++) {
        int32_t id = i < q->prompt_len ? q->prompt[i] : out[i - q->prompt_len];
        uint64_t h = mix(mix(0, input_value(id, q->prompt_embed)), (uint64_t)n);
        for (int j = 0; j < n; j++) h = mix(h, vals[j]);
        vals[n++] = h;
        if (i >= q->prompt_len - 1) out[i - q->prompt_len + 1] = (int32_t)(h % VOCAB);
    }
}

// ---- harness -----------------------------------------------------------------------

typedef struct {
    scheduler s;
    fake_model f;
} rig;

static void rig_init(rig *g, int n_pages, int max_batch, int max_rows, int cache) {
    memset(g, 0, sizeof *g);
    g->f.n_pages = n_pages;
    g->f.slots = calloc((size_t)n_pages * PAGE, sizeof *g->f.slots);
    g->f.s = &g->s;
    sched_model m = {.ctx = &g->f, .dim = DIM, .vocab = VOCAB, .max_context = CONTEXT, .prefix_len = PREFIX,
                     .bos_id = 0, .encode_images = fake_encode, .prepare_image = fake_prepare,
                     .forward = fake_forward};
    sched_options o = {.n_pages = n_pages, .page_size = PAGE, .max_batch = max_batch, .max_rows = max_rows,
                       .use_cache = cache};
    ty_err err;
    CHECK_MSG(sched_init(&g->s, &m, &o, &err) == TY_OK, "%s", err.msg);
}

// Every page is free, or referenced exactly by the tables of running
// sequences plus the cache's nodes.
static void check_pool(rig *g) {
    scheduler *s = &g->s;
    int *want = calloc((size_t)s->pool.n_pages, sizeof *want);
    for (int i = 0; i < s->n_running; i++)
        for (int k = 0; k < s->running[i]->n_pages; k++) want[s->running[i]->pages[k]]++;
    for (const pc_node *n = s->cache.lru_head; n; n = n->lru_next)
        for (int k = 0; k < n->n_pages; k++) want[n->pages[k]]++;
    int bad = 0, free_pages = 0;
    for (int p = 0; p < s->pool.n_pages; p++) {
        bad += want[p] != s->pool.refs[p];
        free_pages += !s->pool.refs[p];
    }
    CHECK_MSG(!bad, "%d pages with wrong reference counts", bad);
    CHECK(free_pages == s->pool.n_free);
    free(want);
}

static int run_until_idle(rig *g, int max_steps) {
    int steps = 0, idle = 0;
    while (steps < max_steps) {
        sched_step(&g->s, &idle);
        check_pool(g);
        if (idle) break;
        steps++;
    }
    return steps;
}

static void rig_free(rig *g) {
    prefix_cache_evict(&g->s.cache, g->s.pool.n_pages);
    CHECK_MSG(g->s.pool.n_free == g->s.pool.n_pages, "%d of %d pages free after evicting everything", g->s.pool.n_free,
              g->s.pool.n_pages);
    sched_free(&g->s);
    free(g->f.slots);
}

static void check_output(const fake_seq *q, const char *what) {
    int32_t want[64];
    fs_expected(q, want);
    CHECK_MSG(q->done_calls == 1 && q->status == TY_OK, "%s: done %d status %d", what, q->done_calls, q->status);
    CHECK_MSG(q->image_used == (q->image >= 0), "%s: image released %d times", what, q->image_used);
    CHECK_MSG(q->n_out == q->n_gen && !memcmp(q->out, want, (size_t)q->n_gen * sizeof *want), "%s: tokens differ", what);
}

static const int32_t P_A[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};  // shares its first 9 tokens with P_B
static const int32_t P_B[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2, 3};

// Mixed requests, repeated images, shared prompt prefixes: exact tokens,
// each image through the tower once, prompt pages reused, and cache
// hits give exactly what misses give.
static void test_basic(void) {
    rig g;
    rig_init(&g, 200, 8, 64, 1);
    static fake_seq q[12];
    for (int i = 0; i < 12; i++) {
        const int32_t *p = i % 2 ? P_A : P_B;
        fs_init(&q[i], i % 4 == 3 ? -1 : i % 3, p, i % 2 ? 11 : 12, 3 + i);
        ty_err err;
        CHECK(sched_submit(&g.s, &q[i].seq, &err) == TY_OK);
    }
    run_until_idle(&g, 1000);
    for (int i = 0; i < 12; i++) check_output(&q[i], "basic");
    CHECK_MSG(g.f.images_encoded == 3, "%d images encoded", g.f.images_encoded);
    CHECK(g.s.cache.hits == 6 && g.s.cache.misses == 3);
    // A later request with the same image and prompt reuses pages past the image.
    fake_seq late;
    fs_init(&late, 0, P_B, 12, 4);
    ty_err err;
    CHECK(sched_submit(&g.s, &late.seq, &err) == TY_OK);
    run_until_idle(&g, 100);
    check_output(&late, "late");
    CHECK_MSG(late.seq.cached_tokens == 20, "cached %d", late.seq.cached_tokens);  // pages up to position 20 < 21
    CHECK(g.f.images_encoded == 3);
    rig_free(&g);
}

// The pool fits two requests' reservations: the rest wait (never fail), and
// the cache gives up unused entries for them, least recently used first.
static void test_exhaustion_and_eviction(void) {
    rig g;
    int per = (PREFIX + 11 + 20 + PAGE - 1) / PAGE;  // pages one request reserves
    rig_init(&g, 2 * per + 1, 8, 64, 1);
    static fake_seq q[6];
    ty_err err;
    for (int i = 0; i < 6; i++) {
        fs_init(&q[i], i, P_A, 11, 20);
        CHECK(sched_submit(&g.s, &q[i].seq, &err) == TY_OK);
    }
    int idle = 0, most = 0;
    for (int steps = 0; steps < 2000 && !idle; steps++) {
        sched_step(&g.s, &idle);
        check_pool(&g);
        most = g.s.n_running > most ? g.s.n_running : most;
    }
    CHECK_MSG(most == 2, "%d ran at once", most);
    for (int i = 0; i < 6; i++) check_output(&q[i], "exhaustion");
    CHECK(g.f.images_encoded == 6);
    // Image 0 was evicted (least recently used) to make room: asking again encodes it again.
    fake_seq again;
    fs_init(&again, 0, P_A, 11, 2);
    CHECK(sched_submit(&g.s, &again.seq, &err) == TY_OK);
    run_until_idle(&g, 100);
    check_output(&again, "after eviction");
    CHECK(g.f.images_encoded == 7);
    // The most recent image is still cached.
    fake_seq recent;
    fs_init(&recent, 5, P_A, 11, 2);
    CHECK(sched_submit(&g.s, &recent.seq, &err) == TY_OK);
    run_until_idle(&g, 100);
    check_output(&recent, "recent");
    CHECK(g.f.images_encoded == 7 && recent.seq.cached_tokens > 0);
    rig_free(&g);
}

static void test_never_fits(void) {
    rig g;
    rig_init(&g, 8, 4, 64, 1);
    fake_seq q;
    ty_err err;
    fs_init(&q, 0, P_A, 11, 30);  // 51 positions = 13 pages > 8
    CHECK(sched_submit(&g.s, &q.seq, &err) == TY_E_LIMIT && strstr(err.msg, "never"));
    fs_init(&q, 0, P_A, 11, 3);
    q.seq.max_positions = CONTEXT + 1;
    CHECK(sched_submit(&g.s, &q.seq, &err) == TY_E_LIMIT && strstr(err.msg, "context"));
    CHECK(q.done_calls == 0);
    // A request that fits still runs.
    fs_init(&q, 0, P_A, 11, 3);
    CHECK(sched_submit(&g.s, &q.seq, &err) == TY_OK);
    run_until_idle(&g, 100);
    check_output(&q, "fits");
    rig_free(&g);
}

// Cancels a request in each state; the others finish exactly as alone.
static void test_cancel_states(void) {
    for (int when = 0; when < 6; when++) {
        rig g;
        rig_init(&g, 60, 2, PREFIX + 4, 1);  // small row budget: prompts are prefilled in chunks
        static fake_seq q[4];
        ty_err err;
        for (int i = 0; i < 4; i++) {
            fs_init(&q[i], i < 3 ? 0 : 1, i % 2 ? P_A : P_B, i % 2 ? 11 : 12, 6);
            CHECK(sched_submit(&g.s, &q[i].seq, &err) == TY_OK);
        }
        // when: 0 waiting (q3, behind the batch limit), 1 admitted before the tower,
        // 2 computing the image others wait for (q0, first step), 3 mid-prompt,
        // 4 decoding, 5 after it finished.
        fake_seq *victim = when == 0 ? &q[3] : &q[0];
        int idle = 0;
        if (when == 1) {  // admitted, not yet stepped: cancel between admission and the tower
            sched_step(&g.s, &idle);
            sched_cancel(&g.s, &q[1].seq);
            victim = &q[1];
        } else if (when == 2) {
            sched_cancel(&g.s, &q[0].seq);  // before its first step: q1, q2 must compute the image themselves
        } else if (when == 3 || when == 4) {
            for (int k = 0; k < 60 && !idle; k++) {
                int pos = q[0].seq.pos;
                if ((when == 3 && pos > PREFIX && q[0].phase == 0) || (when == 4 && q[0].phase == 1)) break;
                sched_step(&g.s, &idle);
            }
            CHECK(when == 4 ? q[0].phase == 1 : q[0].phase == 0);
            sched_cancel(&g.s, &q[0].seq);
        } else if (when == 0) {
            sched_cancel(&g.s, &q[3].seq);
        }
        check_pool(&g);
        run_until_idle(&g, 1000);
        if (when == 5) sched_cancel(&g.s, &q[0].seq);  // no-op after done
        for (int i = 0; i < 4; i++) {
            if (&q[i] == victim && when != 5) {
                CHECK_MSG(q[i].done_calls == 1 && q[i].status == TY_E_CANCELLED, "when %d: done %d status %d", when,
                          q[i].done_calls, q[i].status);
            } else {
                char what[32];
                snprintf(what, sizeof what, "cancel %d, seq %d", when, i);
                check_output(&q[i], what);
            }
        }
        rig_free(&g);
    }
}

// Three requests on images 0, 1, 2 submitted to a fresh rig (the failure tests' start).
static void submit_three(rig *g, fake_seq q[3]) {
    rig_init(g, 60, 4, 64, 1);
    ty_err err;
    for (int i = 0; i < 3; i++) {
        fs_init(&q[i], i, P_A, 11, 4);
        CHECK(sched_submit(&g->s, &q[i].seq, &err) == TY_OK);
    }
}

// After a failure: a request on `image` (never published, so computed again) gives its tokens.
static void check_again(rig *g, int image, const char *what) {
    fake_seq again;
    ty_err err;
    fs_init(&again, image, P_A, 11, 4);
    CHECK(sched_submit(&g->s, &again.seq, &err) == TY_OK);
    run_until_idle(g, 100);
    check_output(&again, what);
}

// A failing forward fails the sequences in it, and nothing leaks.
static void test_forward_failure(void) {
    rig g;
    static fake_seq q[3];
    submit_three(&g, q);
    g.f.fail_forward = 1;
    run_until_idle(&g, 10);
    for (int i = 0; i < 3; i++) CHECK(q[i].done_calls == 1 && q[i].status == TY_E_NOMEM);
    g.f.fail_forward = 0;
    check_again(&g, 0, "after failure");
    rig_free(&g);
}

// An image that cannot be prepared (its crops fail) fails its own request;
// the others in the same tower run go on, and the image is not cached.
static void test_prepare_failure(void) {
    rig g;
    static fake_seq q[3];
    submit_three(&g, q);
    g.f.fail_prepare = 1 + 1;  // image 1 (the field holds id + 1)
    run_until_idle(&g, 100);
    CHECK(q[1].done_calls == 1 && q[1].status == TY_E_FORMAT && !q[1].image_used);
    check_output(&q[0], "beside a failed image");
    check_output(&q[2], "beside a failed image");
    CHECK(g.f.vision_runs == 1 && g.f.images_encoded == 2);
    g.f.fail_prepare = 0;
    check_again(&g, 1, "after a failed image");
    CHECK(g.f.images_encoded == 3);
    rig_free(&g);
}

// 10,000 random submits, cancels and steps over a small pool; every request
// that was not cancelled gives exactly its tokens, and no page is lost.
static void test_random(void) {
    rig g;
    rig_init(&g, 48, 6, PREFIX + 6, 1);
    static fake_seq pool[MAX_SEQS];
    int live[MAX_SEQS] = {0};
    uint64_t rng = 12345;
    int submitted = 0, cancelled = 0, finished = 0;
    for (int op = 0; op < 10000; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int r = (int)((rng >> 33) % 100), k = (int)((rng >> 20) % MAX_SEQS);
        fake_seq *q = &pool[k];
        if (r < 30 && !live[k]) {  // submit into a free slot
            int img = (int)((rng >> 40) % 5) - 1;
            int plen = 3 + (int)((rng >> 45) % 9);
            fs_init(q, img, (rng >> 50) & 1 ? P_A : P_B, plen, 1 + (int)((rng >> 52) % 12));
            if ((rng >> 55) & 1) q->prompt[plen / 2] = -1;  // an embedding row in the prompt: not cacheable past it
            ty_err err;
            if (sched_submit(&g.s, &q->seq, &err) == TY_OK) {
                live[k] = 1;
                submitted++;
            }
        } else if (r < 40 && live[k]) {
            if (q->done_calls == 0) {
                sched_cancel(&g.s, &q->seq);
                cancelled++;
            }
        } else {
            int idle;
            sched_step(&g.s, &idle);
        }
        if (op % 97 == 0) check_pool(&g);
        for (int i = 0; i < MAX_SEQS; i++) {  // collect finished ones
            if (!live[i] || !pool[i].done_calls) continue;
            CHECK(pool[i].done_calls == 1);
            if (pool[i].status == TY_OK) {
                check_output(&pool[i], "random");
                finished++;
            } else {
                CHECK(pool[i].status == TY_E_CANCELLED);
            }
            live[i] = 0;
        }
    }
    run_until_idle(&g, 100000);
    for (int i = 0; i < MAX_SEQS; i++)
        if (live[i]) {
            if (pool[i].status == TY_OK) check_output(&pool[i], "random tail");
            else CHECK(pool[i].done_calls == 1 && pool[i].status == TY_E_CANCELLED);
        }
    fprintf(stderr, "random: %d submitted, %d cancelled, %d finished during the run, %llu hits %llu misses\n",
            submitted, cancelled, finished, (unsigned long long)g.s.cache.hits, (unsigned long long)g.s.cache.misses);
    CHECK(g.s.n_running == 0 && g.s.n_waiting == 0);
    check_pool(&g);
    rig_free(&g);
}

int main(void) {
    test_basic();
    test_exhaustion_and_eviction();
    test_never_fits();
    test_cancel_states();
    test_forward_failure();
    test_prepare_failure();
    test_random();
    return test_report("test_scheduler");
}
