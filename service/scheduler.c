/*
 * The worker's pipeline: the decode threads turn an accepted request's
 * image bytes into pixel tensors, and the inference thread coalesces items
 * (one image or one text) of the same kind from any number of requests
 * into one forward pass of up to max_batch items, waiting for a batch to
 * fill as batch_wait says; so decoding overlaps inference. Both hand what
 * they finish back to the I/O thread (reply.c).
 */
#include "service/svc_worker.h"
#include "vit/fail.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the decode threads ---- */

/* Queues the items of a decoded request for the inference thread. */
void svc_queue_items_locked(worker *w, req *r)
{
    double now = svc_now_ms();
    for (int i = 0; i < r->n_images + r->n_texts; i++) {
        item *it = &r->items[i];
        it->t_enq = now;
        it->next = NULL;
        it->prev = w->iq_tail;
        if (w->iq_tail)
            w->iq_tail->next = it;
        else
            w->iq_head = it;
        w->iq_tail = it;
        w->n_items++;
    }
    pthread_cond_signal(&w->cv_infer);
}

/* Queues an accepted request: to the decode threads when it has images,
 * else (texts need no decoding) its items to the inference thread. */
void svc_sched_submit(worker *w, req *r)
{
    pthread_mutex_lock(&w->mu);
    if (r->n_images > 0) {
        r->next = NULL;
        w->decoding++;
        if (w->dq_tail)
            w->dq_tail->next = r;
        else
            w->dq_head = r;
        w->dq_tail = r;
        pthread_cond_signal(&w->cv_decode);
    } else {
        svc_queue_items_locked(w, r);
    }
    pthread_mutex_unlock(&w->mu);
}

static void decode_one(worker *w, void *push, req *r)
{
    if (svc_now_ms() > r->deadline) {
        svc_finish_error(push, r, C_DEADLINE,
                         "the deadline passed before the request was started",
                         -1);
        return;
    }
    if (r->n_images > 0) {
        r->pixels = malloc((size_t)r->n_images * w->chw * sizeof(float));
        if (!r->pixels) {
            svc_finish_error(push, r, C_INTERNAL, "out of memory", -1);
            return;
        }
    }
    for (int i = 0; i < r->n_images; i++) {
        vit_error err = {{0}};
        vit_image img;
        char msg[600];
        vit_status st = vit_image_decode(svc_data(&r->data, i),
                                         svc_size(&r->data, i), &w->vopt,
                                         &img, &err);
        if (st == VIT_OK) {
            st = vit_preprocess(w->model, &img, 1,
                                r->pixels + (size_t)i * w->chw, &err);
            vit_image_free(&img);
        }
        if (st != VIT_OK) {
            snprintf(msg, sizeof msg, "image %d: %s", i,
                     err.msg[0] ? err.msg : vit_status_str(st));
            code_t c = st == VIT_E_TOO_LARGE ? C_TOO_LARGE
                       : st == VIT_E_NOMEM   ? C_INTERNAL
                                             : C_BAD_IMAGE;
            svc_finish_error(push, r, c, msg, c == C_INTERNAL ? -1 : i);
            return;
        }
    }
    /* The bytes are no longer needed; the pixels are. */
    svc_msg_close(&r->data);
    pthread_mutex_lock(&w->mu);
    svc_queue_items_locked(w, r);
    pthread_mutex_unlock(&w->mu);
}

static void *decode_main(void *arg)
{
    thread_arg *a = arg;
    worker *w = a->w;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->dq_head && !w->quit)
            pthread_cond_wait(&w->cv_decode, &w->mu);
        req *r = w->dq_head;
        if (!r) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        w->dq_head = r->next;
        if (!w->dq_head)
            w->dq_tail = NULL;
        pthread_mutex_unlock(&w->mu);
        decode_one(w, a->push, r);
        pthread_mutex_lock(&w->mu);
        w->decoding--;
        /* The batcher may be waiting for this request's images. */
        pthread_cond_signal(&w->cv_infer);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

static void unlink_item_locked(worker *w, item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        w->iq_head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        w->iq_tail = it->prev;
    it->prev = it->next = NULL;
    w->n_items--;
}

/* Removes every queued item of `r`, so it can be answered early. */
void svc_purge_req_locked(worker *w, req *r)
{
    for (item *it = w->iq_head, *nx; it; it = nx) {
        nx = it->next;
        if (it->r == r)
            unlink_item_locked(w, it);
    }
}

static int same_key(const item *a, const item *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == K_ZEROSHOT)
        return a->r->k == b->r->k && strcmp(a->r->zs_key, b->r->zs_key) == 0;
    return a->kind != K_CLASSIFY || a->r->k == b->r->k;
}

/* The label set of request `r`, from the cache or made now (which runs the
 * text tower over its prompts, on this thread's state). */
static vit_status zs_get(infer_ctx *c, const req *r, vit_zeroshot **out,
                         vit_error *err)
{
    int slot = 0;
    for (int i = 0; i < 8; i++) {
        if (c->zs[i].key && strcmp(c->zs[i].key, r->zs_key) == 0) {
            c->zs[i].used = ++c->zs_clock;
            *out = c->zs[i].z;
            return VIT_OK;
        }
        if (c->zs[i].used < c->zs[slot].used)
            slot = i;
    }
    vit_zeroshot *z;
    vit_status st = vit_zeroshot_new(c->state, (const char *const *)r->labels,
                                     r->n_labels, r->tmpl, &z, err);
    if (st != VIT_OK)
        return st;
    char *key = strdup(r->zs_key);
    if (!key) {
        vit_zeroshot_free(z);
        return VIT_E_NOMEM;
    }
    free(c->zs[slot].key);
    vit_zeroshot_free(c->zs[slot].z);
    c->zs[slot].key = key;
    c->zs[slot].z = z;
    c->zs[slot].used = ++c->zs_clock;
    *out = z;
    return VIT_OK;
}

/* Runs one batch (all items share a key) and scatters the results. */
static void run_batch(infer_ctx *c, int n)
{
    worker *w = c->w;
    item **b = c->batch;
    vit_error err = {{0}};
    vit_status st;
    int D = w->info.embed_dim;
    item_kind kind = b[0]->kind;
    int k = b[0]->r->k, L = b[0]->r->L;
    double t0 = svc_now_ms();

    if (kind == K_TEXT) {
        for (int i = 0; i < n; i++)
            c->texts[i] = b[i]->r->texts[b[i]->idx];
        st = vit_embed_texts(c->state, c->texts, n, c->emb, &err);
    } else {
        for (int i = 0; i < n; i++)
            memcpy(c->pixels + (size_t)i * w->chw,
                   b[i]->r->pixels + (size_t)b[i]->idx * w->chw,
                   w->chw * sizeof(float));
        vit_zeroshot *z = NULL;
        if (kind == K_CLASSIFY)
            st = vit_classify_pixels(c->state, c->pixels, n, k, c->top,
                                     c->logits, &err);
        else if (kind == K_ZEROSHOT &&
                 (st = zs_get(c, b[0]->r, &z, &err)) == VIT_OK)
            st = vit_zeroshot_classify_pixels(c->state, z, c->pixels, n, k,
                                              c->top, c->logits, &err);
        else if (kind == K_ZEROSHOT)
            ;  /* the label set could not be made: st says why */
        else
            st = vit_embed_pixels(c->state, c->pixels, n, c->emb, &err);
    }

    double t1 = svc_now_ms();
    c->item_ms = (t1 - t0) / n;
    pthread_mutex_lock(&w->mu);
    w->busy_ms += t1 - t0;
    w->batches++;
    w->batch_items += (uint64_t)n;
    w->batch_hist[n < MAX_HIST ? n : MAX_HIST - 1]++;
    pthread_mutex_unlock(&w->mu);

    for (int i = 0; i < n; i++) {
        req *r = b[i]->r;
        if (!r)
            continue;  /* its request already failed in this batch */
        if (st != VIT_OK) {
            code_t code = C_INTERNAL;
            if (st == VIT_E_NO_HEAD)
                code = kind == K_TEXT || kind == K_ZEROSHOT ? C_NO_TEXT_TOWER
                       : kind == K_CLASSIFY               ? C_NO_HEAD
                                                          : C_NO_VISION_TOWER;
            pthread_mutex_lock(&w->mu);
            svc_purge_req_locked(w, r);
            pthread_mutex_unlock(&w->mu);
            for (int j = i + 1; j < n; j++)
                if (b[j]->r == r)
                    b[j]->r = NULL;
            svc_finish_error(c->push, r, code,
                             err.msg[0] ? err.msg : vit_status_str(st), -1);
            continue;
        }
        int x = b[i]->idx;
        if (kind == K_CLASSIFY || kind == K_ZEROSHOT) {
            memcpy(r->top + (size_t)x * k, c->top + (size_t)i * k,
                   (size_t)k * sizeof *r->top);
            if (r->want_logits)
                memcpy(r->logits + (size_t)x * L, c->logits + (size_t)i * L,
                       (size_t)L * sizeof(float));
        } else {
            float *dst = kind == K_TEXT ? r->txt_emb : r->img_emb;
            memcpy(dst + (size_t)x * D, c->emb + (size_t)i * D,
                   (size_t)D * sizeof(float));
        }
        if (--r->pending == 0)
            svc_finish_ok(c, r);
    }
    /* The replies are on their way: their clients may send again. */
    c->free_since = svc_now_ms();
}

static void abs_time(struct timespec *ts, double ms_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double ns = (double)ts->tv_nsec + ms_from_now * 1e6;
    ts->tv_sec += (time_t)(ns / 1e9);
    ts->tv_nsec = (long)fmod(ns, 1e9);
}

/* How much longer a batch that is not full waits for more items, in ms.
 * `full`: until its oldest item has waited max_delay_ms. Adaptive: that
 * long while more images are being decoded; and, whatever is queued, a
 * short while for the clients just answered to send again (closed-loop
 * clients do, within a millisecond or two): counted from when the oldest
 * item arrived or the last forward pass ended, whichever is later, and at
 * most max_delay_ms and a sixteenth of what a full batch takes (from the
 * last pass's time per item), so that it never costs more than about 1/16
 * of the throughput; a model that computes in microseconds hardly waits,
 * as a lone request should not. Without that wait, a pass that ran part
 * of the clients' requests (they arrived a little apart) stays apart from
 * the rest: when it ends, the rest are queued and run at once, and so on,
 * in alternate part-full batches for as long as the clients keep sending.
 */
static double batch_wait(const infer_ctx *c, const item *head, double now)
{
    const worker *w = c->w;
    double to_full = head->t_enq + w->o.max_delay_ms - now;
    if (w->o.batch_wait_full)
        return to_full;
    double from = head->t_enq > c->free_since ? head->t_enq : c->free_since;
    double limit = c->item_ms * c->cap / 16;
    if (limit > w->o.max_delay_ms)
        limit = w->o.max_delay_ms;
    double back = from + limit - now;
    return w->decoding > 0 && to_full > back ? to_full : back;
}

static void *infer_main(void *arg)
{
    infer_ctx *c = arg;
    worker *w = c->w;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->iq_head && !w->quit)
            pthread_cond_wait(&w->cv_infer, &w->mu);
        if (!w->iq_head)
            break;
        /* Expired work is dropped before it is computed. */
        double now = svc_now_ms();
        for (;;) {
            item *it = w->iq_head;
            while (it && now <= it->r->deadline)
                it = it->next;
            if (!it)
                break;
            req *r = it->r;
            svc_purge_req_locked(w, r);
            pthread_mutex_unlock(&w->mu);
            svc_finish_error(c->push, r, C_DEADLINE,
                             "the deadline passed before the request was "
                             "computed", -1);
            pthread_mutex_lock(&w->mu);
        }
        item *head = w->iq_head;
        if (!head)
            continue;
        int n = 0;
        for (item *it = head; it && n < c->cap; it = it->next)
            n += same_key(head, it);
        double wait = batch_wait(c, head, now);
        if (n < c->cap && wait > 0 && !w->quit) {
            struct timespec ts;
            abs_time(&ts, wait);
            pthread_cond_timedwait(&w->cv_infer, &w->mu, &ts);
            continue;
        }
        n = 0;
        for (item *it = head, *nx; it && n < c->cap; it = nx) {
            nx = it->next;
            if (same_key(head, it)) {
                unlink_item_locked(w, it);
                c->batch[n++] = it;
            }
        }
        pthread_mutex_unlock(&w->mu);
        run_batch(c, n);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- starting and stopping ---- */

vit_status svc_sched_init(worker *w, svc_sched *s, vit_error *err)
{
    const vit_serve_options *opt = &w->o;
    infer_ctx *ic = &s->ic;
    vit_status st = vit_state_new(w->model, &ic->state, err);
    if (st != VIT_OK)
        return st;
    /* Room for a classifier's labels or a zero-shot set's (max_texts). */
    int L = w->info.num_labels > opt->max_texts ? w->info.num_labels
                                                : opt->max_texts;
    int D = w->info.embed_dim > 0 ? w->info.embed_dim : 1;
    ic->w = w;
    ic->cap = opt->max_batch;
    size_t cap = (size_t)ic->cap;
    ic->pixels = malloc(cap * (w->chw ? w->chw : 1) * sizeof(float));
    ic->top = malloc(cap * L * sizeof *ic->top);
    ic->logits = malloc(cap * L * sizeof(float));
    ic->emb = malloc(cap * D * sizeof(float));
    ic->texts = malloc(cap * sizeof *ic->texts);
    ic->batch = malloc(cap * sizeof *ic->batch);
    s->dec = calloc((size_t)opt->decode_threads, sizeof *s->dec);
    s->dargs = calloc((size_t)opt->decode_threads, sizeof *s->dargs);
    if (!ic->pixels || !ic->top || !ic->logits || !ic->emb || !ic->texts ||
        !ic->batch || !s->dec || !s->dargs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    return VIT_OK;
}

vit_status svc_sched_start(worker *w, svc_sched *s, const char *done_ep,
                           vit_error *err)
{
    infer_ctx *ic = &s->ic;
    /* Each thread gets its own PUSH socket: ZeroMQ sockets are not shared
     * between threads. */
    ic->push = zmq_socket(w->ctx, ZMQ_PUSH);
    if (!ic->push || zmq_connect(ic->push, done_ep) != 0 ||
        pthread_create(&s->infer_th, NULL, infer_main, ic) != 0)
        return vit__fail(err, VIT_E_IO, "cannot start the inference thread");
    s->infer_started = 1;
    for (; s->n_dec < w->o.decode_threads; s->n_dec++) {
        thread_arg *a = &s->dargs[s->n_dec];
        a->w = w;
        a->push = zmq_socket(w->ctx, ZMQ_PUSH);
        if (!a->push || zmq_connect(a->push, done_ep) != 0 ||
            pthread_create(&s->dec[s->n_dec], NULL, decode_main, a) != 0) {
            if (a->push)
                zmq_close(a->push);
            return vit__fail(err, VIT_E_IO, "cannot start a decode thread");
        }
    }
    return VIT_OK;
}

void svc_sched_stop(worker *w, svc_sched *s)
{
    if (s->infer_started) {
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_broadcast(&w->cv_decode);
        pthread_cond_broadcast(&w->cv_infer);
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < s->n_dec; i++) {
        pthread_join(s->dec[i], NULL);
        zmq_close(s->dargs[i].push);
    }
    if (s->infer_started)
        pthread_join(s->infer_th, NULL);
    if (s->ic.push)
        zmq_close(s->ic.push);
    /* Requests still queued (only after a failed start or a hard stop). */
    for (req *r = w->dq_head, *nx; r; r = nx) {
        nx = r->next;
        svc_req_free(r);
    }
    while (w->iq_head) {
        req *r = w->iq_head->r;
        svc_purge_req_locked(w, r);
        svc_req_free(r);
    }
}

void svc_sched_free(svc_sched *s)
{
    infer_ctx *ic = &s->ic;
    free(ic->pixels);
    free(ic->top);
    free(ic->logits);
    free(ic->emb);
    free(ic->texts);
    free(ic->batch);
    free(s->dec);
    free(s->dargs);
    for (int i = 0; i < 8; i++) {
        free(ic->zs[i].key);
        vit_zeroshot_free(ic->zs[i].z);
    }
    vit_state_free(ic->state);
}
