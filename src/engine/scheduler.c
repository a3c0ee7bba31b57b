#include "engine/scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double sched_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

ty_status sched_init(scheduler *s, const sched_model *m, const sched_options *o, ty_err *err) {
    memset(s, 0, sizeof *s);
    if (o->max_batch < 1 || o->max_batch > 1024) return ty_err_set(err, TY_E_ARG, "max_batch_size must be in [1, 1024]");
    if (o->max_rows < m->prefix_len)
        return ty_err_set(err, TY_E_ARG, "max_batch_tokens (%d) must be at least the image prefix (%d)", o->max_rows,
                          m->prefix_len);
    s->model = *m;
    s->max_batch = o->max_batch;
    s->max_rows = o->max_rows;
    s->use_cache = o->use_cache;
    ty_status st = kv_pages_init(&s->pool, o->n_pages, o->page_size, err);
    if (st == TY_OK) st = prefix_cache_init(&s->cache, &s->pool, m->prefix_len, m->dim, err);
    if (st == TY_OK) {
        s->running = calloc((size_t)o->max_batch, sizeof *s->running);
        s->step_seqs = calloc((size_t)o->max_batch, sizeof *s->step_seqs);
        s->prefix = calloc((size_t)o->max_batch, sizeof *s->prefix);
        s->kv_len = calloc((size_t)o->max_batch, sizeof *s->kv_len);
        s->page_tables = calloc((size_t)o->max_batch, sizeof *s->page_tables);
        s->out_rows = calloc((size_t)o->max_batch, sizeof *s->out_rows);
        s->logits = malloc((size_t)o->max_batch * m->vocab * sizeof(float));
        s->hidden = malloc((size_t)o->max_batch * m->dim * sizeof(float));
        if (!s->running || !s->step_seqs || !s->prefix || !s->kv_len || !s->page_tables || !s->out_rows ||
            !s->logits || !s->hidden)
            st = ty_err_set(err, TY_E_NOMEM, "out of memory for the scheduler");
    }
    if (st != TY_OK) sched_free(s);
    return st;
}

void sched_free(scheduler *s) {
    prefix_cache_free(&s->cache);
    kv_pages_free(&s->pool);
    free(s->running);
    free(s->step_seqs);
    free(s->ids);
    free(s->seq_of);
    free(s->pos);
    free(s->out_rows);
    free(s->prefix);
    free(s->kv_len);
    free(s->page_tables);
    free(s->embeds);
    free(s->logits);
    free(s->hidden);
    memset(s, 0, sizeof *s);
}

// ---- pages -----------------------------------------------------------------

static int pages_for(const scheduler *s, int positions) { return kv_pages_for(&s->pool, positions); }

static int table_push(scheduler *s, sched_seq *q, int32_t page) {
    int cap = pages_for(s, s->model.max_context) + 1;
    if (!q->pages) q->pages = malloc((size_t)cap * sizeof *q->pages);
    if (!q->pages || q->n_pages >= cap) return -1;
    q->pages[q->n_pages++] = page;
    return 0;
}

// Makes the page table cover positions [0, end) with pages of its own.
static int grow_pages(scheduler *s, sched_seq *q, int end) {
    while (q->n_pages < pages_for(s, end)) {
        if (!s->pool.n_free) prefix_cache_evict(&s->cache, 1);
        int32_t page = kv_pages_take(&s->pool);
        if (page < 0) return -1;  // admission guarantees this cannot happen
        if (table_push(s, q, page)) {
            kv_pages_unref(&s->pool, page);
            return -1;
        }
        q->own_pages++;
        if (q->reserved > 0) q->reserved--;
    }
    return 0;
}

static void release_pages(scheduler *s, sched_seq *q) {
    for (int i = 0; i < q->n_pages; i++) kv_pages_unref(&s->pool, q->pages[i]);
    free(q->pages);
    q->pages = NULL;
    q->n_pages = q->own_pages = q->reserved = 0;
    if (q->root) {
        q->root->users--;
        if (q->computing_root && !q->root->ready) prefix_cache_drop_root(&s->cache, q->root);
        q->root = NULL;
    }
    q->computing_root = 0;
    free(q->embeds);
    q->embeds = NULL;
}

// ---- queue -----------------------------------------------------------------

static void unlink_waiting(scheduler *s, sched_seq *q) {
    sched_seq **pp = &s->wait_head, *prev = NULL;
    while (*pp && *pp != q) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = q->next;
    if (s->wait_tail == q) s->wait_tail = prev;
    q->next = NULL;
    s->n_waiting--;
}

static void unlink_running(scheduler *s, sched_seq *q) {
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i] == q) {
            memmove(&s->running[i], &s->running[i + 1], (size_t)(s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
            return;
        }
}

static void finish(scheduler *s, sched_seq *q, ty_status st, const ty_err *err) {
    if (q->state == SEQ_WAITING) unlink_waiting(s, q);
    if (q->state == SEQ_RUNNING) unlink_running(s, q);
    release_pages(s, q);
    q->state = SEQ_DONE;
    q->ops->done(q->owner, st, err);
}

ty_status sched_submit(scheduler *s, sched_seq *q, ty_err *err) {
    if (q->max_positions > s->model.max_context)
        return ty_err_set(err, TY_E_LIMIT, "the request needs %d positions; the model's context is %d",
                          q->max_positions, s->model.max_context);
    if (pages_for(s, q->max_positions) > s->pool.n_pages)
        return ty_err_set(err, TY_E_LIMIT,
                          "the request needs %d KV pages (%d positions) and the KV budget is %d pages: "
                          "it can never run; raise the KV budget or lower max_tokens",
                          pages_for(s, q->max_positions), q->max_positions, s->pool.n_pages);
    q->state = SEQ_WAITING;
    q->next = NULL;
    if (s->wait_tail) s->wait_tail->next = q;
    else s->wait_head = q;
    s->wait_tail = q;
    s->n_waiting++;
    return TY_OK;
}

void sched_cancel(scheduler *s, sched_seq *q) {
    if (q->state != SEQ_WAITING && q->state != SEQ_RUNNING) return;
    ty_err e;
    ty_err_set(&e, TY_E_CANCELLED, "cancelled");
    finish(s, q, TY_E_CANCELLED, &e);
}

// ---- admission -------------------------------------------------------------

// Content id of position p for prefix matching: image rows are marked by
// position (the root already names the image), prompt rows are token ids.
static int32_t content_at(const sched_seq *q, const skill_feed *f, int p) {
    if (p < q->prefix) return -1 - p;
    return f->ids[p - q->prefix];
}

// Positions of the first feed that may be matched or cached: token rows up to
// the first embedding row; never the prompt's last row (its logits are needed).
static int cacheable_end(const sched_seq *q, const skill_feed *f, int for_match) {
    int n = 0;
    while (n < f->n_rows && f->ids[n] >= 0) n++;
    if (for_match && n == f->n_rows) n--;
    return q->prefix + n;
}

// Takes the cached pages that q can reuse and sets where it starts.
static void match_prefix(scheduler *s, sched_seq *q, const skill_feed *f) {
    int P = s->pool.page_size;
    pc_node *node = q->root;
    for (int i = 0; i < node->n_pages; i++) {
        kv_pages_ref(&s->pool, node->pages[i]);
        table_push(s, q, node->pages[i]);
    }
    int start = q->has_image ? prefix_cache_full_end(&s->cache) : 0;
    int end = f ? cacheable_end(q, f, 1) : 0, matched = start;
    int32_t content[4096];
    for (int page = start / P; P <= 4096 && (page + 1) * P <= end; page++) {
        for (int k = 0; k < P; k++) content[k] = content_at(q, f, page * P + k);
        pc_node *ch = prefix_cache_child(&s->cache, node, content);
        if (!ch) break;
        kv_pages_ref(&s->pool, ch->pages[0]);
        table_push(s, q, ch->pages[0]);
        node = ch;
        matched = (page + 1) * P;
    }
    if (node != q->root) prefix_cache_touch(&s->cache, node);
    q->pos = matched;
    q->cached_tokens = matched;
    q->feed_base = q->prefix;
    if (matched > q->prefix) q->feed_off = matched - q->prefix;
}

// Pages still to be taken by running sequences.
static int outstanding(const scheduler *s) {
    int n = 0;
    for (int i = 0; i < s->n_running; i++) n += s->running[i]->reserved;
    return n;
}

// Tries to start q. Returns 1 when admitted, 0 when it must wait.
static int admit(scheduler *s, sched_seq *q) {
    const skill_feed *f = q->prefix_only ? NULL : q->ops->next_feed(q->owner);
    if (!f && !q->prefix_only) {  // nothing to run at all
        finish(s, q, TY_OK, NULL);
        return 1;
    }
    q->prefix = q->has_image ? s->model.prefix_len : 0;
    pc_node *root = NULL;
    if (s->use_cache) {
        pc_key key = q->has_image ? q->image_key : (pc_key){0, 0};
        root = prefix_cache_find_root(&s->cache, key, 0);
        if (root && !root->ready) return 0;  // another request is computing this image: wait for it
        if (root && q->prefix_only) {           // already cached
            s->cache.hits++;
            finish(s, q, TY_OK, NULL);
            return 1;
        }
        if (!root && !q->has_image) {
            ty_err e;
            if (prefix_cache_add_root(&s->cache, key, &root, &e) != TY_OK) return 0;
            root->ready = 1;  // the text-only root: no prefix
        }
    }
    q->feed = f;
    q->feed_off = 0;
    q->feed_base = q->prefix;
    q->pos = 0;
    if (root) {
        q->root = root;
        root->users++;
        match_prefix(s, q, f);
    }
    int need = pages_for(s, q->max_positions) - q->n_pages;
    int avail = s->pool.n_free + prefix_cache_reclaimable(&s->cache) - outstanding(s);
    if (need > avail) {  // undo and wait
        release_pages(s, q);
        q->feed = NULL;
        return 0;
    }
    q->reserved = need;
    if (q->has_image && !root) q->need_vision = 1;  // no cache
    if (q->has_image && root && q->ops->image_used) q->ops->image_used(q->owner);
    if (q->has_image && s->use_cache && !q->root) {
        ty_err e;
        if (prefix_cache_add_root(&s->cache, q->image_key, &q->root, &e) == TY_OK) {
            q->root->users++;
            q->computing_root = 1;
        }
        q->need_vision = 1;
    }
    unlink_waiting(s, q);
    q->state = SEQ_RUNNING;
    q->t_admit = sched_now_ms();
    s->running[s->n_running++] = q;
    s->stats.cached_tokens += (uint64_t)q->cached_tokens;
    if (q->has_image && s->use_cache) {
        if (q->computing_root) s->cache.misses++;
        else s->cache.hits++;
    }
    return 1;
}

static void admit_waiting(scheduler *s) {
    sched_seq *q = s->wait_head;
    while (q && s->n_running < s->max_batch) {
        sched_seq *next = q->next;
        int was_waiting_on_image = 0;
        if (s->use_cache && q->has_image) {
            pc_node *r = prefix_cache_find_root(&s->cache, q->image_key, 0);
            was_waiting_on_image = r && !r->ready;
        }
        if (!admit(s, q) && !was_waiting_on_image) break;  // FIFO: later requests wait behind one that does not fit
        q = next;
    }
}

// ---- the step --------------------------------------------------------------

static void run_vision(scheduler *s) {
    void *images[256];
    float *embeds[256];
    sched_seq *who[256];
    int n = 0;
    for (int i = 0; i < s->n_running && n < 256; i++) {
        sched_seq *q = s->running[i];
        if (!q->need_vision) continue;
        if (!q->image) {  // submitted by key, and the key is no longer cached
            ty_err e;
            ty_err_set(&e, TY_E_NOT_FOUND, "the image key is not in the prefix cache (evicted or never encoded): "
                                           "send the image again");
            finish(s, q, TY_E_NOT_FOUND, &e);
            i--;
            continue;
        }
        ty_err pe = {0};
        ty_status ps = s->model.prepare_image ? s->model.prepare_image(s->model.ctx, q->image, &pe) : TY_OK;
        if (ps != TY_OK) {
            finish(s, q, ps, &pe);
            i--;
            continue;
        }
        q->embeds = malloc((size_t)(s->model.prefix_len - 1) * s->model.dim * sizeof(float));
        if (!q->embeds) {
            ty_err e;
            ty_err_set(&e, TY_E_NOMEM, "out of memory for image embeddings");
            finish(s, q, TY_E_NOMEM, &e);
            i--;
            continue;
        }
        images[n] = q->image;
        embeds[n] = q->embeds;
        who[n++] = q;
    }
    if (!n) return;
    ty_err e = {0};
    ty_status st = s->model.encode_images(s->model.ctx, n, images, embeds, &e);
    s->stats.vision_images += (uint64_t)n;
    for (int i = 0; i < n; i++) {
        if (st != TY_OK) {
            finish(s, who[i], st, &e);
            continue;
        }
        who[i]->need_vision = 0;
        if (who[i]->ops->image_used) who[i]->ops->image_used(who[i]->owner);
    }
}

static int grow_rows(scheduler *s, int rows, int embeds) {
    if (rows > s->cap_rows) {
        int cap = rows * 2;
        int32_t *a = realloc(s->ids, (size_t)cap * sizeof *a);
        if (a) s->ids = a;
        int32_t *b = realloc(s->seq_of, (size_t)cap * sizeof *b);
        if (b) s->seq_of = b;
        int32_t *c = realloc(s->pos, (size_t)cap * sizeof *c);
        if (c) s->pos = c;
        if (!a || !b || !c) return -1;
        s->cap_rows = cap;
    }
    if (embeds > s->cap_embeds) {
        int cap = embeds * 2;
        float *e = realloc(s->embeds, (size_t)cap * s->model.dim * sizeof(float));
        if (!e) return -1;
        s->embeds = e;
        s->cap_embeds = cap;
    }
    return 0;
}

// Appends rows [from, to) of q (positions) to the step. Prefix rows take BOS
// or image embedding rows; feed rows take the feed's ids and embeddings.
static int add_rows(scheduler *s, sched_seq *q, int si, int from, int to, int *n_rows, int *n_emb) {
    const int dim = s->model.dim, full_end = prefix_cache_full_end(&s->cache);
    if (grow_rows(s, *n_rows + (to - from), *n_emb + (to - from))) return -1;
    for (int p = from; p < to; p++) {
        int r = (*n_rows)++;
        s->seq_of[r] = si;
        s->pos[r] = p;
        const float *src = NULL;
        if (p < q->prefix) {
            s->ids[r] = p == 0 ? s->model.bos_id : -1;
            if (p > 0) src = q->embeds ? q->embeds + (size_t)(p - 1) * dim : q->root->tail + (size_t)(p - full_end) * dim;
        } else {
            const skill_feed *f = q->feed;
            int k = p - q->feed_base;  // row of the feed
            s->ids[r] = f->ids[k];
            if (f->ids[k] < 0) {
                int e = 0;
                for (int j = 0; j < k; j++) e += f->ids[j] < 0;
                src = f->embeds + (size_t)e * dim;
            }
        }
        if (src) memcpy(s->embeds + (size_t)(*n_emb)++ * dim, src, (size_t)dim * sizeof(float));
    }
    return 0;
}

// After the prompt ran: offers its full pages (image prefix rows and leading
// prompt tokens) to the cache, below the deepest node q already shares.
static void cache_prompt(scheduler *s, sched_seq *q) {
    if (!s->use_cache || !q->root || !q->root->ready) return;
    int P = s->pool.page_size, end = cacheable_end(q, q->feed, 0);
    int32_t content[4096];
    pc_node *node = q->root;
    for (int page = q->root->n_pages; P <= 4096 && (page + 1) * P <= end && page < q->n_pages; page++) {
        for (int k = 0; k < P; k++) content[k] = content_at(q, q->feed, page * P + k);
        ty_err e;
        // An equal node inserted by another request keeps its page; ours stays
        // private, and deeper pages may still hang below it (same content, same KV).
        if (prefix_cache_add_child(&s->cache, node, content, q->pages[page], &node, &e) != TY_OK) return;
    }
}

// The sequence's image prefix is computed: its full pages and tail rows become the root.
static void publish_root(scheduler *s, sched_seq *q) {
    int full_end = prefix_cache_full_end(&s->cache), tail_rows = q->prefix - full_end, dim = s->model.dim;
    float *tail = tail_rows ? calloc((size_t)tail_rows * dim, sizeof(float)) : NULL;
    ty_err e;
    if (tail_rows && !tail) return;  // stays not ready; dropped when q leaves
    for (int p = full_end; p < q->prefix; p++)
        if (p > 0) memcpy(tail + (size_t)(p - full_end) * dim, q->embeds + (size_t)(p - 1) * dim, (size_t)dim * sizeof(float));
    if (prefix_cache_set_ready(&s->cache, q->root, q->pages, tail, &e) == TY_OK) q->computing_root = 0;
    free(tail);
}

static void fail_seq(scheduler *s, sched_seq *q, ty_status st, const char *msg) {
    ty_err e;
    ty_err_set(&e, st, "%s", msg);
    finish(s, q, st, &e);
}

typedef struct {
    int n_rows, n_emb, n_seqs, n_out, prefill;
} step_plan;

// Adds positions [from, to) of q to the step; feed_rows of them belong to the
// feed, and when `completes` the last one is the feed's last row (outputs needed).
static int push_seq(scheduler *s, sched_seq *q, int from, int to, int feed_rows, int completes, step_plan *pl) {
    if (grow_pages(s, q, to)) {
        fail_seq(s, q, TY_E_LIMIT, "KV page pool exhausted (the request outgrew its reservation)");
        return -1;
    }
    int si = pl->n_seqs;
    s->step_seqs[si] = q;
    s->prefix[si] = q->prefix;
    s->kv_len[si] = to;
    s->page_tables[si] = q->pages;
    if (add_rows(s, q, si, from, to, &pl->n_rows, &pl->n_emb)) {
        fail_seq(s, q, TY_E_NOMEM, "out of memory");
        return -1;
    }
    pl->n_seqs++;
    q->step_rows = to - from;
    q->step_feed_rows = feed_rows;
    q->step_completes = completes;
    if (completes) s->out_rows[pl->n_out++] = pl->n_rows - 1;
    if (!q->feeds_done) pl->prefill += to - from;
    return to - from;
}

// Plans q's rows for this step: the whole remaining image prefix (it attends
// bidirectionally, so it cannot be split) and then as much of the feed as the
// row budget allows.
static void plan_seq(scheduler *s, sched_seq *q, step_plan *pl) {
    if (q->need_vision) return;  // its image waits for the next step's tower run
    int budget = s->max_rows - pl->n_rows, from = q->pos, to = q->pos;
    if (q->pos < q->prefix) {
        int n = q->prefix - q->pos;
        if (n > budget && pl->prefill > 0) return;  // the first prefill of a step always gets its prefix in
        to = q->prefix;
        budget -= n;
    }
    if (!q->feed) {  // prefix only
        if (to > from) push_seq(s, q, from, to, 0, 0, pl);
        return;
    }
    if (!q->feeds_done && budget < 16 && pl->prefill == 0 && to == from) budget = 16;  // never starve prefill
    int fstart = q->feed_base + q->feed_off, fend = q->feed_base + q->feed->n_rows;
    int n = fend - fstart < budget ? fend - fstart : budget;
    if (n < 0) n = 0;
    if (to < fstart) to = fstart;
    to += n;
    if (to > from) push_seq(s, q, from, to, n, fstart + n == fend, pl);
}

void sched_step(scheduler *s, int *idle) {
    admit_waiting(s);
    run_vision(s);
    *idle = s->n_running == 0;
    if (*idle) return;
    step_plan pl = {0};
    // Decode rows first (latency), then prefill, in admission order.
    sched_seq *order[2][1024];
    int n_order[2] = {0, 0};
    for (int i = 0; i < s->n_running && i < 1024; i++) {
        sched_seq *q = s->running[i];
        int k = q->feeds_done > 0 ? 0 : 1;
        order[k][n_order[k]++] = q;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_order[pass]; i++) plan_seq(s, order[pass][i], &pl);
    if (!pl.n_seqs) return;
    int n_seqs = pl.n_seqs;
    ty_batch b = {.n_rows = pl.n_rows, .seq = s->seq_of, .pos = s->pos, .n_seqs = n_seqs, .prefix = s->prefix,
                  .kv_len = s->kv_len, .pages = s->page_tables};
    md_text_step step = {.batch = &b, .ids = s->ids, .embeds = s->embeds, .n_out = pl.n_out, .out_rows = s->out_rows,
                         .logits = s->logits, .hidden = s->hidden};
    ty_err e = {0};
    ty_status st = s->model.forward(s->model.ctx, &step, &e);
    s->stats.steps++;
    s->stats.rows += (uint64_t)pl.n_rows;
    int o = 0;
    for (int si = 0; si < n_seqs; si++) {
        sched_seq *q = s->step_seqs[si];
        if (st != TY_OK) {
            finish(s, q, st, &e);
            continue;
        }
        int from = q->pos;
        q->pos += q->step_rows;
        if (from < q->prefix && q->pos >= q->prefix) {
            if (q->computing_root) publish_root(s, q);
            free(q->embeds);  // the prefix is in the KV cache now
            q->embeds = NULL;
        }
        q->feed_off += q->step_feed_rows;
        if (q->prefix_only && q->pos >= q->prefix) {
            finish(s, q, TY_OK, NULL);
            continue;
        }
        if (!q->step_completes) continue;
        float *logits = s->logits + (size_t)o * s->model.vocab, *hidden = s->hidden + (size_t)o * s->model.dim;
        o++;
        if (!q->feeds_done) {
            cache_prompt(s, q);
            q->t_first = sched_now_ms();
        }
        q->feeds_done++;
        ty_err ce = {0};
        ty_status cs = q->ops->consume(q->owner, logits, hidden, &ce);
        if (cs != TY_OK) {
            finish(s, q, cs, &ce);
            continue;
        }
        const skill_feed *f = q->ops->next_feed(q->owner);
        if (!f) {
            finish(s, q, TY_OK, NULL);
            continue;
        }
        q->feed = f;
        q->feed_base = q->pos;
        q->feed_off = 0;
    }
}
