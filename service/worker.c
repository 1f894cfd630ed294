/*
 * The worker, `vit serve`: one model served over ZeroMQ with dynamic
 * batching. Three kinds of thread share the work. The I/O thread (the
 * caller's) owns every socket: it reads requests, validates them, answers
 * health/info/metrics and every refusal at once, and sends the replies the
 * other threads hand back over an inproc PULL socket. Decode threads take
 * accepted requests and turn image bytes into pixel tensors. The inference
 * thread coalesces items (one image or one text) of the same kind from any
 * number of requests into one forward pass of up to max_batch items,
 * waiting at most max_delay_ms for a batch to fill; so decoding overlaps
 * inference. A request is owned by the I/O thread until it is queued, by
 * the pipeline until it is finished, and is freed by the I/O thread after
 * its reply is sent. Nothing here interprets a model: the library does.
 */
#include "service/service.h"
#include "service/svc_impl.h"
#include "service/svc_index.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- operations, reply codes, metrics ---- */

typedef enum {
    OP_CLASSIFY,
    OP_EMBED_IMAGE,
    OP_EMBED_TEXT,
    OP_MATCH,
    OP_INFO,
    OP_HEALTH,
    OP_METRICS,
    OP_INDEX_ADD,     /* the embedding index, with --index */
    OP_INDEX_REMOVE,
    OP_SEARCH_TEXT,
    OP_SEARCH_IMAGE,
    OP_INDEX_STATS,
    OP_INDEX_GET,
    OP_INVALID,  /* a request too malformed to have an op */
    N_OPS
} op_t;

static const char *const op_names[N_OPS] = {
    "classify",     "embed_image",  "embed_text",   "match",
    "info",         "health",       "metrics",      "index_add",
    "index_remove", "search_text",  "search_image", "index_stats",
    "index_get",    "invalid",
};

/* The codes of PROTOCOL.md section 4, and "ok". */
#define CODE_LIST(X)                                                     \
    X(OK, "ok") X(BAD_REQUEST, "bad_request") X(UNKNOWN_OP, "unknown_op") \
    X(MISSING_FIELD, "missing_field") X(TOO_LARGE, "too_large")          \
    X(BAD_IMAGE, "bad_image") X(NO_TEXT_TOWER, "no_text_tower")          \
    X(NO_VISION_TOWER, "no_vision_tower") X(NO_HEAD, "no_head")          \
    X(UNKNOWN_SERVICE, "unknown_service") X(OVERLOADED, "overloaded")    \
    X(DEADLINE, "deadline_exceeded") X(SHUTTING_DOWN, "shutting_down")   \
    X(INTERNAL, "internal") X(NO_INDEX, "no_index")

typedef enum {
#define CODE_ENUM(name, str) C_##name,
    CODE_LIST(CODE_ENUM)
#undef CODE_ENUM
    N_CODES
} code_t;

static const char *const code_names[N_CODES] = {
#define CODE_STR(name, str) str,
    CODE_LIST(CODE_STR)
#undef CODE_STR
};

#define LAT_RING 4096
/* The upper bounds, in seconds, of the latency histogram's buckets. */
static const double lat_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                0.5,   1,    2.5,   5,    10,  30};
#define N_LAT_LE (int)(sizeof lat_le / sizeof lat_le[0])
#define MAX_HIST 4097  /* batch sizes 1 ... 4096 */

/* ---- requests and items ---- */

/* K_ZEROSHOT: classify over a label set of the request's (CLIP). */
typedef enum { K_CLASSIFY, K_ZEROSHOT, K_EMBED_IMAGE, K_TEXT } item_kind;

typedef struct req req;

/* One image or text of a request: the unit of batching. */
typedef struct item {
    req *r;
    item_kind kind;
    int idx;  /* image or text index within the request */
    double t_enq;
    struct item *prev, *next;
} item;

struct req {
    unsigned char route[SVC_MAX_ID];  /* ROUTER identity, or client address
                                         when behind a broker */
    size_t route_len;
    unsigned char rid[SVC_MAX_ID];
    size_t rid_len;
    op_t op;
    int top_k, k, want_logits, normalize;
    int prometheus;  /* metrics in Prometheus text */
    double t_recv, deadline;
    size_t cost;  /* bytes held while queued (max_queue_bytes) */

    svc_msg data;  /* the image frames, data.f[0 .. n_images) */
    int n_images;
    char **texts;
    int n_texts;
    char **labels;          /* zero-shot classify: the label set */
    int n_labels;
    char *tmpl;             /* its prompt template, or NULL */
    char *zs_key;           /* template and labels, to find the set */
    int L;                  /* labels a classify scores (logits per image) */

    /* the index operations */
    char **ids;             /* index_add, index_remove: the items' keys */
    int n_ids;
    char **metas;           /* index_add: metadata objects as text */
    float *given;           /* index_add of embeddings: (n_ids, D) */
    int search_k;           /* search_*: results per query */
    char *prefix;           /* search_*: only keys starting with it */

    /* filled by the pipeline */
    float *pixels;          /* (n_images, C, H, W) */
    vit_prediction *top;    /* (n_images, k) */
    float *logits;          /* (n_images, L) with want_logits */
    float *img_emb;         /* (n_images, D) */
    float *txt_emb;         /* (n_texts, D) */
    item *items;            /* n_images + n_texts */
    int pending;            /* items not yet computed */
    struct req *next;       /* decode queue */
};

/* What a pipeline thread hands back to the I/O thread: the request, its
 * reply body and binary data. Passed as a pointer in one inproc frame. */
typedef struct {
    req *r;
    code_t code;
    char *body;
    void *data;
    size_t data_len;
} done_msg;

typedef struct {
    vit_serve_options o;
    char name[256];
    vit_model *model;
    vit_model_info info;
    vit_options vopt;
    size_t chw;
    void *ctx;
    svc_index *ix;  /* with --index, else NULL */

    pthread_mutex_t mu;
    pthread_cond_t cv_decode, cv_infer;
    req *dq_head, *dq_tail;       /* waiting for a decode thread */
    item *iq_head, *iq_tail;      /* waiting for the inference thread */
    int n_items;
    int decoding;                 /* requests queued for or in decoding */
    int quit;                     /* threads exit */
    /* batch metrics, written by the inference thread under mu */
    uint64_t batch_hist[MAX_HIST];
    uint64_t batches, batch_items;
    double busy_ms;               /* in forward passes */

    /* I/O thread only */
    int inflight;
    size_t held_bytes;  /* image bytes and pixels of inflight requests */
    uint64_t counts[N_OPS][N_CODES];
    double lat[LAT_RING];
    uint64_t n_lat;
    uint64_t lat_bucket[N_LAT_LE]; /* work requests by the first bound
                                      their latency is within (past the
                                      last: only in n_lat) */
    double lat_sum_s;
    double t_start;
} worker;

static void logf_(worker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(worker *w, const char *fmt, ...)
{
    if (!w->o.log)
        return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    w->o.log(w->o.log_ud, line);
}

static void req_free(req *r)
{
    if (!r)
        return;
    svc_msg_close(&r->data);
    for (int i = 0; i < r->n_texts; i++)
        free(r->texts[i]);
    free(r->texts);
    for (int i = 0; i < r->n_labels; i++)
        free(r->labels[i]);
    free(r->labels);
    free(r->tmpl);
    free(r->zs_key);
    free(r->pixels);
    free(r->top);
    free(r->logits);
    free(r->img_emb);
    free(r->txt_emb);
    free(r->items);
    for (int i = 0; i < r->n_ids; i++) {
        free(r->ids[i]);
        if (r->metas)
            free(r->metas[i]);
    }
    free(r->ids);
    free(r->metas);
    free(r->given);
    free(r->prefix);
    free(r);
}

/* ---- handing results back to the I/O thread ---- */

/* Sends `d` (owned) over a thread's PUSH socket. */
static void hand_back(void *push, done_msg *d)
{
    done_msg *p = malloc(sizeof *p);
    if (p) {
        *p = *d;
        if (zmq_send(push, &p, sizeof p, 0) == sizeof p)
            return;
        free(p);
    }
    /* Out of memory or the context is ending: the I/O thread cannot learn
     * of this request, so it is dropped here. Not reached in practice. */
    free(d->body);
    free(d->data);
}

static void finish_error(void *push, req *r, code_t code, const char *msg,
                         int index)
{
    done_msg d = {.r = r, .code = code,
                  .body = svc_error_body(code_names[code], msg, index, NULL)};
    hand_back(push, &d);
}

/* ---- the decode threads ---- */

typedef struct {
    worker *w;
    void *push;
} thread_arg;

/* Queues the items of a decoded request for the inference thread. */
static void queue_items_locked(worker *w, req *r)
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

static void decode_one(worker *w, void *push, req *r)
{
    if (svc_now_ms() > r->deadline) {
        finish_error(push, r, C_DEADLINE,
                     "the deadline passed before the request was started", -1);
        return;
    }
    if (r->n_images > 0) {
        r->pixels = malloc((size_t)r->n_images * w->chw * sizeof(float));
        if (!r->pixels) {
            finish_error(push, r, C_INTERNAL, "out of memory", -1);
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
            finish_error(push, r, c, msg, c == C_INTERNAL ? -1 : i);
            return;
        }
    }
    /* The bytes are no longer needed; the pixels are. */
    svc_msg_close(&r->data);
    pthread_mutex_lock(&w->mu);
    queue_items_locked(w, r);
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

/* ---- the inference thread ---- */

typedef struct {
    worker *w;
    void *push;
    vit_state *state;
    int cap;
    float *pixels;        /* (cap, C, H, W) */
    vit_prediction *top;  /* (cap, L) */
    float *logits;        /* (cap, L) */
    float *emb;           /* (cap, D) */
    const char **texts;   /* (cap) */
    item **batch;         /* (cap) */
    /* Zero-shot label sets, embedded once and kept for the next requests
     * that name the same set; the least recently used goes first. */
    struct {
        char *key;
        vit_zeroshot *z;
        uint64_t used;
    } zs[8];
    uint64_t zs_clock;
    double free_since;    /* when the last forward pass ended */
    double item_ms;       /* its time per item */
} infer_ctx;

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
static void purge_req_locked(worker *w, req *r)
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

static json_t *jfloat(float x)
{
    return isfinite(x) ? json_real((double)x) : json_null();
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(9))
                : NULL;
    json_decref(o);
    return s;
}

static void to_le(float *v, size_t n)
{
    const uint32_t one = 1;
    if (*(const unsigned char *)&one == 1)
        return;  /* little-endian already, as on every machine we run on */
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&v[i], &u, 4);
    }
}

/* The index writer's answer to a job of request `r` (svc_ix_done_fn). */
static void ix_done(void *push, void *rv, char *body, const char *code,
                    const char *msg)
{
    req *r = rv;
    if (body) {
        done_msg d = {.r = r, .code = C_OK, .body = body};
        hand_back(push, &d);
        return;
    }
    finish_error(push, r,
                 strcmp(code, "bad_request") == 0 ? C_BAD_REQUEST : C_INTERNAL,
                 msg, -1);
}

/* Hands an index_add or index_remove to the index writer, which answers
 * it once committed; the job takes the request's keys and `vecs`.
 * Returns -1, having changed nothing, when out of memory. */
static int ix_submit(worker *w, req *r, float *vecs)
{
    svc_ix_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->remove = r->op == OP_INDEX_REMOVE;
    j->n = r->n_ids;
    j->keys = r->ids;
    j->metas = r->metas;
    j->vecs = vecs;
    j->req = r;
    j->op = op_names[r->op];
    r->ids = NULL;
    r->metas = NULL;
    r->n_ids = 0;
    svc_ix_submit(w->ix, j);
    return 0;
}

/* Builds the reply of a request whose items are all computed. */
static void finish_ok(infer_ctx *c, req *r)
{
    worker *w = c->w;
    done_msg d = {.r = r, .code = C_OK};
    if (r->op == OP_INDEX_ADD) {
        if (ix_submit(w, r, r->img_emb) != 0) {
            finish_error(c->push, r, C_INTERNAL, "out of memory", -1);
            return;
        }
        r->img_emb = NULL;
        return;
    }
    int L = w->info.num_labels, D = w->info.embed_dim;
    json_t *o = json_pack("{s:b, s:s}", "ok", 1, "op", op_names[r->op]);
    if (!o)
        goto oom;
    if (r->op == OP_CLASSIFY) {
        L = r->L;
        json_t *res = json_array();
        json_object_set_new(o, "results", res);
        for (int i = 0; i < r->n_images; i++) {
            json_t *labels = json_array(), *e = json_object();
            json_array_append_new(res, e);
            json_object_set_new(e, "labels", labels);
            for (int j = 0; j < r->k; j++) {
                const vit_prediction *p = &r->top[(size_t)i * r->k + j];
                if (p->id < 0)
                    break;
                /* A label set's strings may be evicted from the cache by
                 * now; the request holds its own. */
                const char *label = r->labels ? r->labels[p->id] : p->label;
                json_array_append_new(
                    labels, json_pack("{s:i, s:s, s:o}", "id", p->id, "label",
                                      label ? label : "", "score",
                                      jfloat(p->score)));
            }
            if (r->want_logits) {
                json_t *lg = json_array();
                json_object_set_new(e, "logits", lg);
                for (int j = 0; j < L; j++)
                    json_array_append_new(
                        lg, jfloat(r->logits[(size_t)i * L + j]));
            }
        }
    } else if (r->op == OP_EMBED_IMAGE || r->op == OP_EMBED_TEXT) {
        int n = r->op == OP_EMBED_IMAGE ? r->n_images : r->n_texts;
        float *v = r->op == OP_EMBED_IMAGE ? r->img_emb : r->txt_emb;
        if (r->normalize)
            vit_l2_normalize(v, n, D);
        json_object_set_new(o, "count", json_integer(n));
        json_object_set_new(o, "dim", json_integer(D));
        json_object_set_new(o, "dtype", json_string("float32"));
        json_object_set_new(o, "normalized", json_boolean(r->normalize));
        to_le(v, (size_t)n * D);
        d.data = v;
        d.data_len = (size_t)n * D * sizeof(float);
        if (r->op == OP_EMBED_IMAGE)
            r->img_emb = NULL;
        else
            r->txt_emb = NULL;
    } else if (r->op == OP_SEARCH_TEXT || r->op == OP_SEARCH_IMAGE) {
        /* The search runs here, on the inference thread, under the
         * matrix's read lock; the index writer never holds it longer than
         * a copy of finished rows. */
        int n = r->op == OP_SEARCH_IMAGE ? r->n_images : r->n_texts;
        float *v = r->op == OP_SEARCH_IMAGE ? r->img_emb : r->txt_emb;
        char msg[256];
        json_t *res = svc_ix_search(w->ix, v, n, r->search_k, r->prefix, msg);
        if (!res) {
            json_decref(o);
            finish_error(c->push, r, C_INTERNAL, msg, -1);
            return;
        }
        json_object_set_new(o, "results", res);
    } else if (r->op == OP_MATCH) {
        size_t nm = (size_t)r->n_images * r->n_texts;
        float *lg = malloc(nm * sizeof(float));
        float *pr = malloc(nm * sizeof(float));
        vit_error err = {{0}};
        vit_status st = lg && pr ? vit_match(w->model, r->img_emb, r->n_images,
                                             r->txt_emb, r->n_texts, lg, pr,
                                             &err)
                                 : VIT_E_NOMEM;
        if (st != VIT_OK) {
            free(lg);
            free(pr);
            json_decref(o);
            finish_error(c->push, r,
                         st == VIT_E_NO_HEAD ? C_NO_TEXT_TOWER : C_INTERNAL,
                         err.msg[0] ? err.msg : vit_status_str(st), -1);
            return;
        }
        json_t *res = json_array();
        json_object_set_new(o, "texts", json_integer(r->n_texts));
        json_object_set_new(o, "results", res);
        for (int i = 0; i < r->n_images; i++) {
            json_t *a = json_array(), *b = json_array();
            for (int j = 0; j < r->n_texts; j++) {
                size_t at = (size_t)i * r->n_texts + j;
                json_array_append_new(a, jfloat(lg[at]));
                json_array_append_new(b, jfloat(pr[at]));
            }
            json_array_append_new(res, json_pack("{s:o, s:o}", "logits", a,
                                                 "probs", b));
        }
        free(lg);
        free(pr);
    }
    d.body = dump(o);
    if (!d.body) {
        free(d.data);
        goto oom;
    }
    hand_back(c->push, &d);
    return;
oom:
    finish_error(c->push, r, C_INTERNAL, "out of memory building the reply",
                 -1);
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
            purge_req_locked(w, r);
            pthread_mutex_unlock(&w->mu);
            for (int j = i + 1; j < n; j++)
                if (b[j]->r == r)
                    b[j]->r = NULL;
            finish_error(c->push, r, code,
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
            finish_ok(c, r);
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
            purge_req_locked(w, r);
            pthread_mutex_unlock(&w->mu);
            finish_error(c->push, r, C_DEADLINE,
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

/* ---- request parsing (I/O thread) ---- */

typedef struct {
    code_t code;
    char msg[300];
    int index;
    const char *field;
} reject;

static int rejectf(reject *rj, code_t code, int index, const char *field,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int rejectf(reject *rj, code_t code, int index, const char *field,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rj->msg, sizeof rj->msg, fmt, ap);
    va_end(ap);
    rj->code = code;
    rj->index = index;
    rj->field = field;
    return -1;
}

static op_t op_parse(const char *s)
{
    for (int i = 0; i < OP_INVALID; i++)
        if (strcmp(s, op_names[i]) == 0)
            return (op_t)i;
    return OP_INVALID;
}

/* An optional integer field in [lo, hi]. */
static int get_int(json_t *h, const char *key, long lo, long hi, long *v,
                   reject *rj)
{
    json_t *x = json_object_get(h, key);
    if (!x)
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < lo ||
        json_integer_value(x) > hi)
        return rejectf(rj, C_BAD_REQUEST, -1, key,
                       "'%s' must be an integer from %ld to %ld", key, lo, hi);
    *v = (long)json_integer_value(x);
    return 0;
}

static int get_bool(json_t *h, const char *key, int *v, reject *rj)
{
    json_t *x = json_object_get(h, key);
    if (!x)
        return 0;
    if (!json_is_boolean(x))
        return rejectf(rj, C_BAD_REQUEST, -1, key, "'%s' must be a boolean",
                       key);
    *v = json_is_true(x);
    return 0;
}

/* ViT models leave has_vision 0 (the flag came with CLIP); any model
 * that takes a pixel tensor and is not CLIP's text tower has one. */
static int has_vision(const vit_model_info *in)
{
    return in->has_vision ||
           (in->arch != VIT_ARCH_CLIP_TEXT && in->image_h > 0 &&
            in->image_w > 0);
}

/* Zero-shot classify: "labels" (strings, like "texts") and an optional
 * "template" with "{}" where each label goes. Builds the set's cache key. */
static int parse_labels(worker *w, json_t *labels, json_t *tmpl, req *r,
                        reject *rj)
{
    if (!labels)
        return rejectf(rj, C_MISSING_FIELD, -1, "labels",
                       "'template' goes with 'labels'");
    if (!json_is_array(labels) || json_array_size(labels) == 0)
        return rejectf(rj, C_BAD_REQUEST, -1, "labels",
                       "'labels' must be a non-empty array of strings");
    size_t n = json_array_size(labels);
    if (n > (size_t)w->o.max_texts)
        return rejectf(rj, C_TOO_LARGE, -1, "labels",
                       "%zu labels; the limit is %d", n, w->o.max_texts);
    if (tmpl && (!json_is_string(tmpl) ||
                 !strstr(json_string_value(tmpl), "{}") ||
                 json_string_length(tmpl) > (size_t)w->o.max_text_bytes))
        return rejectf(rj, C_BAD_REQUEST, -1, "template",
                       "'template' must be a string with '{}' where the "
                       "label goes, at most %d bytes", w->o.max_text_bytes);
    size_t keylen = tmpl ? strlen(json_string_value(tmpl)) + 2 : 2;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(labels, i);
        if (!json_is_string(x))
            return rejectf(rj, C_BAD_REQUEST, (int)i, "labels",
                           "label %zu is not a string", i);
        if (json_string_length(x) > (size_t)w->o.max_text_bytes)
            return rejectf(rj, C_TOO_LARGE, (int)i, "labels",
                           "label %zu is %zu bytes; the limit is %d", i,
                           json_string_length(x), w->o.max_text_bytes);
        keylen += strlen(json_string_value(x)) + 1;
    }
    if (!w->info.has_text)
        return rejectf(rj, C_NO_TEXT_TOWER, -1, NULL,
                       "model '%s' has no text tower for zero-shot labels",
                       w->name);
    r->labels = calloc(n, sizeof *r->labels);
    r->zs_key = malloc(keylen);
    if (tmpl)
        r->tmpl = strdup(json_string_value(tmpl));
    if (!r->labels || !r->zs_key || (tmpl && !r->tmpl))
        return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    /* Template and labels joined by separators no label can hold (a
     * label ends at its first NUL, like a text). */
    size_t o = (size_t)sprintf(r->zs_key, "%s\x1f",
                               tmpl ? json_string_value(tmpl) : "");
    for (size_t i = 0; i < n; i++, r->n_labels++) {
        const char *x = json_string_value(json_array_get(labels, i));
        if (!(r->labels[i] = strdup(x)))
            return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        o += (size_t)sprintf(r->zs_key + o, "%s\x1e", x);
    }
    return 0;
}

/* An array of n strings (n 0: any length from 1 to max) into *out. */
/* The item keys of `key`: n of them (n > 0) or 1 to max, each a string or
 * {"base64": ...} (svc_key_parse) of 1 to max_bytes bytes. */
static int get_keys(json_t *h, const char *key, int n, int max,
                    size_t max_bytes, char ***out, int *count, reject *rj)
{
    json_t *a = json_object_get(h, key);
    if (!a)
        return rejectf(rj, C_MISSING_FIELD, -1, key, "'%s' is required",
                       key);
    size_t na = json_is_array(a) ? json_array_size(a) : 0;
    if (!json_is_array(a) || na == 0 || (n > 0 && na != (size_t)n) ||
        na > (size_t)max)
        return n > 0 ? rejectf(rj, C_BAD_REQUEST, -1, key,
                               "'%s' must be an array of %d strings, one "
                               "per item", key, n)
                     : rejectf(rj, C_BAD_REQUEST, -1, key,
                               "'%s' must be an array of 1 to %d strings",
                               key, max);
    *out = calloc(na, sizeof **out);
    if (!*out)
        return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    for (size_t i = 0; i < na; i++, (*count)++)
        if (!((*out)[i] = svc_key_parse(json_array_get(a, i), max_bytes)))
            return rejectf(rj, C_BAD_REQUEST, (int)i, key,
                           "%s %zu must be a string, or {\"base64\": ...}, "
                           "of 1 to %zu bytes and no NUL",
                           key, i, max_bytes);
    return 0;
}

/* The fields of the index operations: ids and metadata for index_add,
 * ids for index_remove, k and prefix for the searches; for index_add of
 * given embeddings, the vectors from the one data frame. */
static int parse_index(worker *w, json_t *h, svc_msg *m, int hi, int given,
                       req *r, reject *rj)
{
    int D = svc_ix_dim(w->ix);
    if (r->op == OP_SEARCH_TEXT || r->op == OP_SEARCH_IMAGE) {
        long k = 10;
        if (get_int(h, "k", 1, 1000, &k, rj))
            return -1;
        r->search_k = (int)k;
        json_t *p = json_object_get(h, "prefix");
        if (p && !(r->prefix = svc_key_parse(p, 4096)))
            return rejectf(rj, C_BAD_REQUEST, -1, "prefix",
                           "'prefix' must be a string, or {\"base64\": "
                           "...}, of 1 to 4096 bytes and no NUL");
        return 0;
    }
    if (r->op == OP_INDEX_STATS)
        return 0;
    if (r->op == OP_INDEX_GET)
        return get_keys(h, "ids", 0, 1000, 4096, &r->ids, &r->n_ids, rj);
    if (r->op == OP_INDEX_REMOVE)
        return get_keys(h, "ids", 0, 100000, 4096, &r->ids, &r->n_ids, rj);
    /* index_add */
    int n = 0;
    if (given) {
        size_t bytes = svc_size(m, hi + 1);
        if (bytes == 0 || bytes % ((size_t)D * 4) != 0)
            return rejectf(rj, C_BAD_REQUEST, -1, "embeddings",
                           "the data frame holds %zu bytes, not a whole "
                           "number of %d-float vectors", bytes, D);
        n = (int)(bytes / ((size_t)D * 4));
    } else {
        n = m->n - hi - 1 + m->dropped;
    }
    if (get_keys(h, "ids", n, 1 << 20, 4096, &r->ids, &r->n_ids, rj))
        return -1;
    json_t *meta = json_object_get(h, "metadata");
    if (meta) {
        if (!json_is_array(meta) || json_array_size(meta) != (size_t)n)
            return rejectf(rj, C_BAD_REQUEST, -1, "metadata",
                           "'metadata' must be an array of %d objects (or "
                           "nulls), one per item", n);
        if (!(r->metas = calloc((size_t)n, sizeof *r->metas)))
            return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        for (int i = 0; i < n; i++) {
            json_t *x = json_array_get(meta, (size_t)i);
            if (json_is_null(x))
                continue;
            if (!json_is_object(x))
                return rejectf(rj, C_BAD_REQUEST, i, "metadata",
                               "metadata %d is not an object", i);
            if (!(r->metas[i] = json_dumps(x, JSON_COMPACT |
                                                  JSON_PRESERVE_ORDER)))
                return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        }
    }
    if (given) {
        size_t bytes = (size_t)n * (size_t)D * 4;
        if (!(r->given = malloc(bytes)))
            return rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        memcpy(r->given, svc_data(m, hi + 1), bytes);
        to_le(r->given, (size_t)n * (size_t)D);  /* a swap is its inverse */
        for (size_t i = 0; i < (size_t)n * (size_t)D; i++)
            if (!isfinite(r->given[i]))
                return rejectf(rj, C_BAD_REQUEST, (int)(i / (size_t)D),
                               "embeddings", "vector %zu is not finite",
                               i / (size_t)D);
    }
    return 0;
}

/* The decode work a request asks for is known from its images' headers
 * before any is decoded: a small file may state a huge image (a PNG of
 * zeros compresses a thousand to one), and decoding it would hold a decode
 * thread for seconds. Each image's own limits and the request's pixel
 * budget are checked here, in the thread that reads requests, after the
 * rest of the request has been found well formed. An image whose header
 * cannot be read is left to the decoder, which says what is wrong. */
static int check_pixels(worker *w, svc_msg *m, int first, reject *rj)
{
    uint64_t pixels = 0;
    for (int i = 0; first + i < m->n; i++) {
        vit_error err = {{0}};
        int iw, ih;
        vit_status st = vit_image_size(svc_data(m, first + i),
                                       svc_size(m, first + i), &w->vopt, &iw,
                                       &ih, &err);
        if (st == VIT_E_TOO_LARGE)
            return rejectf(rj, C_TOO_LARGE, i, NULL, "image %d: %s", i,
                           err.msg);
        if (st == VIT_OK)
            pixels += (uint64_t)iw * (uint64_t)ih;
    }
    if (w->o.max_request_pixels && pixels > w->o.max_request_pixels)
        return rejectf(rj, C_TOO_LARGE, -1, "images",
                       "the images total %llu pixels by their headers; the "
                       "limit is %llu a request (max-request-pixels)",
                       (unsigned long long)pixels,
                       (unsigned long long)w->o.max_request_pixels);
    return 0;
}

/* Parses header frame `hi` of `m` and the data frames after it into `r`.
 * The op is known (r->op) as soon as it could be read, for the metrics. */
static int parse_body(worker *w, svc_msg *m, int hi, req *r, reject *rj)
{
    size_t hn = svc_size(m, hi);
    if (hn == 0)
        return rejectf(rj, C_BAD_REQUEST, -1, NULL,
                       "the header frame is empty; it must be a JSON object");
    if (hn > SVC_MAX_HEADER)
        return rejectf(rj, C_TOO_LARGE, -1, NULL,
                       "the header is %zu bytes; the limit is %d", hn,
                       SVC_MAX_HEADER);
    json_error_t jerr;
    json_t *h = json_loadb((const char *)svc_data(m, hi), hn,
                           JSON_REJECT_DUPLICATES, &jerr);
    int rc = -1;
    if (!h) {
        /* jansson's reason: a syntax error, or a number it cannot hold
         * (an integer past 64 bits) */
        rejectf(rj, C_BAD_REQUEST, -1, NULL, "the header is not valid JSON: %s",
                jerr.text);
        goto done;
    }
    if (!json_is_object(h)) {
        rejectf(rj, C_BAD_REQUEST, -1, NULL,
                "the header is JSON but not an object");
        goto done;
    }
    json_t *op = json_object_get(h, "op");
    if (!op) {
        rejectf(rj, C_MISSING_FIELD, -1, "op", "the header has no 'op'");
        goto done;
    }
    if (!json_is_string(op)) {
        rejectf(rj, C_BAD_REQUEST, -1, "op", "'op' must be a string");
        goto done;
    }
    r->op = op_parse(json_string_value(op));
    if (r->op == OP_INVALID) {
        rejectf(rj, C_UNKNOWN_OP, -1, "op", "unknown operation '%.100s'",
                json_string_value(op));
        goto done;
    }
    long v = 1, deadline = w->o.deadline_ms, top_k = 5;
    if (get_int(h, "v", 1, 1, &v, rj) || get_int(h, "deadline_ms", 1,
                                                 86400000, &deadline, rj) ||
        get_int(h, "top_k", 1, 1000, &top_k, rj) ||
        get_bool(h, "logits", &r->want_logits, rj) ||
        get_bool(h, "normalize", &r->normalize, rj))
        goto done;
    r->deadline = r->t_recv + (double)deadline;
    r->top_k = (int)top_k;
    json_t *fmt = json_object_get(h, "format");
    if (r->op == OP_METRICS && fmt) {
        if (!json_is_string(fmt) ||
            (strcmp(json_string_value(fmt), "json") != 0 &&
             strcmp(json_string_value(fmt), "prometheus") != 0)) {
            rejectf(rj, C_BAD_REQUEST, -1, "format",
                    "'format' is \"json\" or \"prometheus\"");
            goto done;
        }
        r->prometheus = strcmp(json_string_value(fmt), "prometheus") == 0;
    }

    int n_data = m->n - hi - 1 + m->dropped;
    int is_index = r->op == OP_INDEX_ADD || r->op == OP_INDEX_REMOVE ||
                   r->op == OP_SEARCH_TEXT || r->op == OP_SEARCH_IMAGE ||
                   r->op == OP_INDEX_STATS || r->op == OP_INDEX_GET;
    if (is_index && !w->ix) {
        rejectf(rj, C_NO_INDEX, -1, NULL,
                "this worker serves no index (vit serve --index PATH)");
        goto done;
    }
    /* index_add of vectors computed elsewhere: one data frame of floats. */
    int given = r->op == OP_INDEX_ADD &&
                json_is_true(json_object_get(h, "embeddings"));
    int takes_images = r->op == OP_CLASSIFY || r->op == OP_EMBED_IMAGE ||
                       r->op == OP_MATCH || r->op == OP_SEARCH_IMAGE ||
                       (r->op == OP_INDEX_ADD && !given);
    int takes_texts = r->op == OP_EMBED_TEXT || r->op == OP_MATCH ||
                      r->op == OP_SEARCH_TEXT;
    if (given && n_data != 1) {
        rejectf(rj, C_BAD_REQUEST, -1, "embeddings",
                "index_add with \"embeddings\": true takes one data frame "
                "of float32 vectors");
        goto done;
    }
    if (!takes_images && !given && n_data > 0) {
        rejectf(rj, C_BAD_REQUEST, -1, "images",
                "operation '%s' takes no data frames", op_names[r->op]);
        goto done;
    }
    if (takes_images) {
        if (n_data == 0) {
            rejectf(rj, C_MISSING_FIELD, -1, "images",
                    "operation '%s' needs at least one image frame",
                    op_names[r->op]);
            goto done;
        }
        if (n_data > w->o.max_images) {
            rejectf(rj, C_TOO_LARGE, -1, "images",
                    "%d images in one request; the limit is %d", n_data,
                    w->o.max_images);
            goto done;
        }
        size_t total = 0;
        for (int i = 0; i < n_data; i++) {
            size_t sz = svc_size(m, hi + 1 + i);
            if (sz > w->o.max_image_bytes) {
                rejectf(rj, C_TOO_LARGE, i, NULL,
                        "image %d is %zu bytes; the limit is %zu", i, sz,
                        w->o.max_image_bytes);
                goto done;
            }
            if (sz == 0) {
                rejectf(rj, C_BAD_IMAGE, i, NULL, "image %d is empty", i);
                goto done;
            }
            total += sz;
        }
        if (total > w->o.max_request_bytes) {
            rejectf(rj, C_TOO_LARGE, -1, NULL,
                    "the images total %zu bytes; the limit is %zu", total,
                    w->o.max_request_bytes);
            goto done;
        }
    }
    if (takes_texts) {
        json_t *t = json_object_get(h, "texts");
        if (!t) {
            rejectf(rj, C_MISSING_FIELD, -1, "texts",
                    "operation '%s' needs 'texts'", op_names[r->op]);
            goto done;
        }
        if (!json_is_array(t) || json_array_size(t) == 0) {
            rejectf(rj, C_BAD_REQUEST, -1, "texts",
                    "'texts' must be a non-empty array of strings");
            goto done;
        }
        if (json_array_size(t) > (size_t)w->o.max_texts) {
            rejectf(rj, C_TOO_LARGE, -1, "texts",
                    "%zu texts in one request; the limit is %d",
                    json_array_size(t), w->o.max_texts);
            goto done;
        }
        size_t nt = json_array_size(t);
        for (size_t i = 0; i < nt; i++) {
            json_t *s = json_array_get(t, i);
            if (!json_is_string(s)) {
                rejectf(rj, C_BAD_REQUEST, (int)i, "texts",
                        "text %zu is not a string", i);
                goto done;
            }
            if (json_string_length(s) > (size_t)w->o.max_text_bytes) {
                rejectf(rj, C_TOO_LARGE, (int)i, "texts",
                        "text %zu is %zu bytes; the limit is %d", i,
                        json_string_length(s), w->o.max_text_bytes);
                goto done;
            }
            if (memchr(json_string_value(s), 0, json_string_length(s))) {
                rejectf(rj, C_BAD_REQUEST, (int)i, "texts",
                        "text %zu holds a NUL byte (\\u0000)", i);
                goto done;
            }
        }
        if (!w->info.has_text) {
            rejectf(rj, C_NO_TEXT_TOWER, -1, NULL,
                    "model '%s' has no text tower", w->name);
            goto done;
        }
        r->texts = calloc(nt, sizeof *r->texts);
        if (!r->texts) {
            rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nt; i++, r->n_texts++) {
            /* json strings may hold NUL; the library takes C strings, so a
             * text ends at its first NUL, as a C caller's would. */
            r->texts[i] = strdup(json_string_value(json_array_get(t, i)));
            if (!r->texts[i]) {
                rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
                goto done;
            }
        }
    }
    if (takes_images && !has_vision(&w->info)) {
        rejectf(rj, C_NO_VISION_TOWER, -1, NULL,
                "model '%s' has no vision tower", w->name);
        goto done;
    }
    json_t *labels = json_object_get(h, "labels");
    json_t *tmpl = json_object_get(h, "template");
    if (r->op == OP_CLASSIFY && (labels || tmpl) &&
        parse_labels(w, labels, tmpl, r, rj) != 0)
        goto done;
    if (r->op == OP_CLASSIFY && !r->labels && w->info.num_labels <= 0) {
        rejectf(rj, C_NO_HEAD, -1, NULL,
                "model '%s' has no classification head", w->name);
        goto done;
    }
    if (is_index && parse_index(w, h, m, hi, given, r, rj) != 0)
        goto done;
    if (takes_images && check_pixels(w, m, hi + 1, rj) != 0)
        goto done;
    if (takes_images) {
        for (int i = hi + 1; i < m->n; i++)
            if (svc_msg_add_frame(&r->data, m, i) != 0) {
                rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
                goto done;
            }
        r->n_images = r->data.n;
    }
    rc = 0;
done:
    json_decref(h);
    return rc;
}

/* Allocates the result buffers and items of an accepted request. */
static int req_prepare(worker *w, req *r)
{
    int D = w->info.embed_dim;
    size_t ni = (size_t)r->n_images, nt = (size_t)r->n_texts;
    int L = r->L = r->labels ? r->n_labels : w->info.num_labels;
    r->k = r->top_k < L ? r->top_k : L;
    if (r->op == OP_CLASSIFY) {
        r->top = malloc(ni * (size_t)r->k * sizeof *r->top);
        if (!r->top)
            return -1;
        if (r->want_logits && !(r->logits = malloc(ni * L * sizeof(float))))
            return -1;
    }
    if ((r->op == OP_EMBED_IMAGE || r->op == OP_MATCH ||
         r->op == OP_SEARCH_IMAGE || r->op == OP_INDEX_ADD) && ni &&
        !(r->img_emb = malloc(ni * D * sizeof(float))))
        return -1;
    if (nt && !(r->txt_emb = malloc(nt * D * sizeof(float))))
        return -1;
    r->items = calloc(ni + nt, sizeof *r->items);
    if (!r->items)
        return -1;
    item_kind ik = r->op != OP_CLASSIFY ? K_EMBED_IMAGE
                   : r->labels          ? K_ZEROSHOT
                                        : K_CLASSIFY;
    for (size_t i = 0; i < ni; i++)
        r->items[i] = (item){.r = r, .kind = ik, .idx = (int)i};
    for (size_t i = 0; i < nt; i++)
        r->items[ni + i] = (item){.r = r, .kind = K_TEXT, .idx = (int)i};
    r->pending = (int)(ni + nt);
    return 0;
}

/* ---- replies (I/O thread) ---- */

typedef struct {
    worker *w;
    void *front;     /* ROUTER (direct) or DEALER (to the broker) */
    int brokered;
    double last_send;
    void *mon;       /* with a broker: the DEALER's handshake events */
    unsigned n_connects;
    int shook;       /* the connection's handshake is done */
    int told;        /* a handshake failure was logged (until one
                        succeeds) */
    int wrong_told;  /* the endpoint was said to be no broker's backend
                        (until a broker answers) */
} io;

/* Sends a reply with body `body` (not freed) and optional data. */
static void send_reply(io *x, const unsigned char *route, size_t route_len,
                       const unsigned char *rid, size_t rid_len,
                       const char *body, const void *data, size_t data_len)
{
    svc_msg m = {0};
    int bad = 0;
    if (!x->front)
        return;  /* between broker sessions; the broker re-sends the work */
    if (x->brokered) {
        bad |= svc_msg_add(&m, "", 0) | svc_msg_add_str(&m, SVC_WORKER_PROTO) |
               svc_msg_add_byte(&m, SVC_W_FINAL) |
               svc_msg_add(&m, route, route_len) | svc_msg_add(&m, "", 0);
    } else {
        bad |= svc_msg_add(&m, route, route_len) | svc_msg_add(&m, "", 0) |
               svc_msg_add_str(&m, SVC_CLIENT_PROTO) |
               svc_msg_add_byte(&m, SVC_C_FINAL) |
               svc_msg_add_str(&m, x->w->name);
    }
    bad |= svc_msg_add(&m, rid, rid_len) | svc_msg_add_str(&m, body);
    if (data)
        bad |= svc_msg_add(&m, data, data_len);
    if (bad)
        svc_msg_close(&m);
    else
        svc_msg_send(&m, x->front);  /* an unroutable peer is dropped */
    x->last_send = svc_now_ms();
}

static void count(worker *w, op_t op, code_t code)
{
    w->counts[op][code]++;
}

static void reply_reject(io *x, const unsigned char *route, size_t route_len,
                         const unsigned char *rid, size_t rid_len, op_t op,
                         const reject *rj)
{
    char *body = svc_error_body(code_names[rj->code], rj->msg, rj->index,
                                rj->field);
    if (body)
        send_reply(x, route, route_len, rid, rid_len, body, NULL, 0);
    free(body);
    count(x->w, op, rj->code);
}

static int queue_depth(worker *w)
{
    return w->inflight;
}

/* The CPU path the kernels run (vit_cpu_path). */
static const char *cpu_path(void)
{
    const char *p = "generic";
    vit_cpu_path(&p, NULL, 0, NULL);
    return p;
}

/* How the model makes vectors: what info says, and what an index served
 * records and checks. */
static const char *precision_name(const worker *w)
{
    return w->vopt.precision == VIT_PRECISION_INT8   ? "int8"
           : w->vopt.precision == VIT_PRECISION_BF16 ? "bf16"
                                                     : "fp32";
}

static const char *preprocess_name(const worker *w)
{
    return w->vopt.preprocess == VIT_PREPROCESS_TORCHVISION ? "torchvision"
                                                             : "pil";
}

static char *info_body(worker *w)
{
    const vit_model_info *in = &w->info;
    json_t *model = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b, "
        "s:i, s:s, s:s, s:s}",
        "name", w->name, "architecture",
        in->architecture ? in->architecture : "", "channels", in->channels,
        "image_h", in->image_h, "image_w", in->image_w, "num_labels",
        in->num_labels, "embed_dim", in->embed_dim, "hidden_size",
        in->hidden_size, "num_layers", in->num_layers, "num_heads",
        in->num_heads, "patch_size", in->patch_size, "has_vision",
        has_vision(in), "has_text", in->has_text, "text_max_len",
        in->text_max_len, "precision", precision_name(w), "preprocess",
        preprocess_name(w), "cpu", cpu_path());
    json_t *limits = json_pack(
        "{s:i, s:i, s:i, s:I, s:I, s:I}", "max_images", w->o.max_images,
        "max_texts", w->o.max_texts, "max_text_bytes", w->o.max_text_bytes,
        "max_image_bytes", (json_int_t)w->o.max_image_bytes,
        "max_request_bytes", (json_int_t)w->o.max_request_bytes, "max_pixels",
        (json_int_t)w->o.max_pixels);
    /* Every limit a request meets is stated: the side of a decoded image
     * too, and the header's size. */
    json_object_set_new(limits, "max_side",
                        json_integer((json_int_t)w->vopt.max_width));
    json_object_set_new(limits, "max_header_bytes",
                        json_integer(SVC_MAX_HEADER));
    json_object_set_new(limits, "max_request_pixels",
                        json_integer((json_int_t)w->o.max_request_pixels));
    json_t *batching = json_pack("{s:i, s:i, s:s, s:i, s:I, s:i}",
                                 "max_batch", w->o.max_batch, "max_delay_ms",
                                 w->o.max_delay_ms, "wait",
                                 w->o.batch_wait_full ? "full" : "adaptive",
                                 "max_queue", w->o.max_queue,
                                 "max_queue_bytes",
                                 (json_int_t)w->o.max_queue_bytes,
                                 "decode_threads", w->o.decode_threads);
    return dump(json_pack("{s:b, s:s, s:s, s:s, s:o, s:o, s:o}", "ok", 1, "op",
                          "info", "version", SVC_VERSION, "protocol",
                          SVC_CLIENT_PROTO, "model", model, "limits", limits,
                          "batching", batching));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *metrics_body(worker *w)
{
    json_t *reqs = json_object();
    for (int op = 0; op < N_OPS; op++) {
        json_t *o = NULL;
        for (int c = 0; c < N_CODES; c++) {
            if (!w->counts[op][c])
                continue;
            if (!o)
                o = json_object();
            json_object_set_new(o, code_names[c],
                                json_integer((json_int_t)w->counts[op][c]));
        }
        if (o)
            json_object_set_new(reqs, op_names[op], o);
    }
    json_t *sizes = json_object();
    pthread_mutex_lock(&w->mu);
    for (int i = 1; i < MAX_HIST; i++) {
        if (!w->batch_hist[i])
            continue;
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        json_object_set_new(sizes, key,
                            json_integer((json_int_t)w->batch_hist[i]));
    }
    json_t *batches = json_pack("{s:I, s:I, s:f, s:o}", "count",
                                (json_int_t)w->batches, "items",
                                (json_int_t)w->batch_items, "busy_s",
                                w->busy_ms / 1e3, "sizes", sizes);
    pthread_mutex_unlock(&w->mu);

    size_t n = w->n_lat < LAT_RING ? (size_t)w->n_lat : LAT_RING;
    double sorted[LAT_RING];
    memcpy(sorted, w->lat, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
#define PCT(p) (n ? sorted[(size_t)((double)(n - 1) * (p) + 0.5)] : 0.0)
    json_t *lat = json_pack("{s:I, s:f, s:f, s:f, s:f}", "count",
                            (json_int_t)w->n_lat, "p50", PCT(0.5), "p90",
                            PCT(0.9), "p99", PCT(0.99), "max", PCT(1.0));
#undef PCT
    return dump(json_pack("{s:b, s:s, s:f, s:i, s:o, s:o, s:o}", "ok", 1,
                          "op", "metrics", "uptime_s",
                          (svc_now_ms() - w->t_start) / 1e3, "queue_depth",
                          queue_depth(w), "requests", reqs, "batches",
                          batches, "latency_ms", lat));
}

/* The same counters in Prometheus' text exposition format (0.0.4), for
 * the `metrics` operation with "format": "prometheus" and GET /metrics on
 * --metrics-bind's port. */
static char *metrics_prometheus(worker *w)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f, "# HELP vit_requests_total Replies sent, by operation and "
               "code.\n# TYPE vit_requests_total counter\n");
    for (int op = 0; op < N_OPS; op++)
        for (int c = 0; c < N_CODES; c++)
            if (w->counts[op][c])
                fprintf(f, "vit_requests_total{model=\"%s\",op=\"%s\","
                           "code=\"%s\"} %llu\n",
                        w->name, op_names[op], code_names[c],
                        (unsigned long long)w->counts[op][c]);
    fprintf(f, "# HELP vit_queue_depth Requests accepted and not yet "
               "answered.\n# TYPE vit_queue_depth gauge\n"
               "vit_queue_depth{model=\"%s\"} %d\n",
            w->name, queue_depth(w));
    fprintf(f, "# HELP vit_batch_size Items per forward pass.\n"
               "# TYPE vit_batch_size histogram\n");
    pthread_mutex_lock(&w->mu);
    uint64_t cum = 0;
    for (int le = 1; le <= w->o.max_batch && le < MAX_HIST; le *= 2) {
        for (int i = le / 2 + 1; i <= le; i++)
            cum += w->batch_hist[i];
        fprintf(f, "vit_batch_size_bucket{model=\"%s\",le=\"%d\"} %llu\n",
                w->name, le, (unsigned long long)cum);
    }
    fprintf(f, "vit_batch_size_bucket{model=\"%s\",le=\"+Inf\"} %llu\n"
               "vit_batch_size_sum{model=\"%s\"} %llu\n"
               "vit_batch_size_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->batches, w->name,
            (unsigned long long)w->batch_items, w->name,
            (unsigned long long)w->batches);
    fprintf(f, "# HELP vit_inference_busy_seconds_total Time spent in "
               "forward passes.\n"
               "# TYPE vit_inference_busy_seconds_total counter\n"
               "vit_inference_busy_seconds_total{model=\"%s\"} %.6f\n",
            w->name, w->busy_ms / 1e3);
    pthread_mutex_unlock(&w->mu);
    size_t n = w->n_lat < LAT_RING ? (size_t)w->n_lat : LAT_RING;
    double sorted[LAT_RING];
    memcpy(sorted, w->lat, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_double);
    fprintf(f, "# HELP vit_request_latency_seconds Receipt to reply, over "
               "the last %d work requests.\n"
               "# TYPE vit_request_latency_seconds summary\n", LAT_RING);
    static const double q[] = {0.5, 0.9, 0.99};
    for (int i = 0; i < 3; i++)
        fprintf(f, "vit_request_latency_seconds{model=\"%s\",quantile=\"%g\"}"
                   " %.6f\n", w->name, q[i],
                n ? sorted[(size_t)((double)(n - 1) * q[i] + 0.5)] / 1e3
                  : 0.0);
    fprintf(f, "vit_request_latency_seconds_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->n_lat);
    /* The same latencies as a histogram of every work request, which a
     * server can aggregate across workers (a summary cannot be). */
    fprintf(f, "# HELP vit_request_duration_seconds Receipt to reply of "
               "work requests.\n"
               "# TYPE vit_request_duration_seconds histogram\n");
    uint64_t below = 0;
    for (int i = 0; i < N_LAT_LE; i++) {
        below += w->lat_bucket[i];
        fprintf(f, "vit_request_duration_seconds_bucket{model=\"%s\","
                   "le=\"%g\"} %llu\n",
                w->name, lat_le[i], (unsigned long long)below);
    }
    fprintf(f, "vit_request_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"}"
               " %llu\n"
               "vit_request_duration_seconds_sum{model=\"%s\"} %.6f\n"
               "vit_request_duration_seconds_count{model=\"%s\"} %llu\n",
            w->name, (unsigned long long)w->n_lat, w->name, w->lat_sum_s,
            w->name, (unsigned long long)w->n_lat);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Handles the part of a request from the request id on: frames
 * [ri] request id, [ri+1] header, [ri+2 ...] data. */
static void handle_request(io *x, svc_msg *m, int ri,
                           const unsigned char *route, size_t route_len)
{
    worker *w = x->w;
    reject rj = {.index = -1};
    const unsigned char *rid = (const unsigned char *)"";
    size_t rid_len = 0;
    req *r = NULL;
    if (m->n < ri + 2) {
        rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                "a request needs a request id frame and a header frame");
        goto reject;
    }
    rid = svc_data(m, ri);
    rid_len = svc_size(m, ri);
    if (rid_len == 0 || rid_len > SVC_MAX_ID) {
        rid_len = rid_len > SVC_MAX_ID ? 0 : rid_len;
        rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                "the request id must be 1 to %d bytes", SVC_MAX_ID);
        goto reject;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
        goto reject;
    }
    r->op = OP_INVALID;
    r->t_recv = svc_now_ms();
    if (parse_body(w, m, ri + 1, r, &rj) != 0)
        goto reject;
    if (r->op == OP_HEALTH || r->op == OP_INFO || r->op == OP_METRICS ||
        r->op == OP_INDEX_STATS || r->op == OP_INDEX_GET) {
        char *body;
        char msg[256] = "out of memory";
        json_t *items = NULL;
        if (r->op == OP_INDEX_GET)
            body = (items = svc_ix_get(w->ix, r->ids, r->n_ids, msg))
                       ? dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                                        "index_get", "items", items))
                       : NULL;
        else if (r->op == OP_INDEX_STATS)
            body = dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                                  "index_stats", "index",
                                  svc_ix_stats(w->ix)));
        else if (r->op == OP_HEALTH)
            body = svc_health_body(*w->o.stop ? "draining" : "serving",
                                   queue_depth(w));
        else if (r->op == OP_INFO)
            body = info_body(w);
        else if (r->prometheus) {
            char *text = metrics_prometheus(w);
            body = text ? dump(json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "op",
                                         "metrics", "format", "prometheus",
                                         "text", text))
                        : NULL;
            free(text);
        } else
            body = metrics_body(w);
        if (!body) {
            rejectf(&rj, C_INTERNAL, -1, NULL, "%s", msg);
            goto reject;
        }
        count(w, r->op, C_OK);
        send_reply(x, route, route_len, rid, rid_len, body, NULL, 0);
        free(body);
        req_free(r);
        return;
    }
    if (*w->o.stop) {
        rejectf(&rj, C_SHUTTING_DOWN, -1, NULL,
                "the worker is shutting down and takes no new work");
        goto reject;
    }
    if (w->inflight >= w->o.max_queue) {
        rejectf(&rj, C_OVERLOADED, -1, NULL,
                "the queue is full (%d requests); try again later",
                w->o.max_queue);
        goto reject;
    }
    /* The memory a request holds until it is answered: its image bytes,
     * then its pixel tensors. max_queue requests of max_request_bytes each
     * could be far more than the machine has, so bytes are bounded too. */
    size_t cost = 0;
    for (int i = 0; i < r->data.n; i++)
        cost += svc_size(&r->data, i);
    cost += (size_t)r->n_images * w->chw * sizeof(float);
    if (w->held_bytes > 0 && w->held_bytes + cost > w->o.max_queue_bytes) {
        rejectf(&rj, C_OVERLOADED, -1, NULL,
                "the queue holds %zu MiB of work; try again later",
                w->held_bytes >> 20);
        goto reject;
    }
    r->cost = cost;
    if (req_prepare(w, r) != 0) {
        rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
        goto reject;
    }
    memcpy(r->route, route, route_len);
    r->route_len = route_len;
    memcpy(r->rid, rid, rid_len);
    r->rid_len = rid_len;
    w->inflight++;
    w->held_bytes += r->cost;
    if (r->op == OP_INDEX_REMOVE || (r->op == OP_INDEX_ADD && r->given)) {
        /* Nothing to compute: straight to the index writer. */
        if (ix_submit(w, r, r->given) != 0) {
            w->inflight--;
            w->held_bytes -= r->cost;
            rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
            goto reject;
        }
        r->given = NULL;
        return;
    }
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
        queue_items_locked(w, r);  /* texts need no decoding */
    }
    pthread_mutex_unlock(&w->mu);
    return;
reject:
    reply_reject(x, route, route_len, rid, rid_len, r ? r->op : OP_INVALID,
                 &rj);
    req_free(r);
}

/* A message on the client-facing ROUTER: [identity, "", VITC01, 0x01,
 * service, request id, header, data ...]. */
static void handle_client(io *x, svc_msg *m)
{
    worker *w = x->w;
    reject rj = {.index = -1};
    if (m->n < 1)
        return;
    const unsigned char *route = svc_data(m, 0);
    size_t route_len = svc_size(m, 0);
    if (route_len > SVC_MAX_ID)
        return;  /* not a ROUTER identity; cannot be answered */
    if (m->n < 5 || svc_size(m, 1) != 0) {
        rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                "expected an empty delimiter frame, '%s', a command, a "
                "service, a request id and a header", SVC_CLIENT_PROTO);
    } else if (!svc_frame_is(m, 2, SVC_CLIENT_PROTO)) {
        rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                "frame 1 must be the protocol '%s'", SVC_CLIENT_PROTO);
    } else if (svc_size(m, 3) != 1 || svc_data(m, 3)[0] != SVC_C_REQUEST) {
        rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                "frame 2 must be the command byte 0x01 (REQUEST)");
    } else if (svc_size(m, 4) != 0 && !svc_frame_is(m, 4, w->name)) {
        rejectf(&rj, C_UNKNOWN_SERVICE, -1, NULL,
                "this worker serves '%s' only", w->name);
    } else {
        handle_request(x, m, 5, route, route_len);
        return;
    }
    /* Echo the request id when the message got that far. */
    const unsigned char *rid = (const unsigned char *)"";
    size_t rid_len = 0;
    if (m->n > 5 && svc_size(m, 5) <= SVC_MAX_ID) {
        rid = svc_data(m, 5);
        rid_len = svc_size(m, 5);
    }
    reply_reject(x, route, route_len, rid, rid_len, OP_INVALID, &rj);
}

/* A reply finished by a pipeline thread. */
static void handle_done(io *x, done_msg *d)
{
    worker *w = x->w;
    req *r = d->r;
    if (d->body)
        send_reply(x, r->route, r->route_len, r->rid, r->rid_len, d->body,
                   d->data, d->data_len);
    count(w, r->op, d->body ? d->code : C_INTERNAL);
    double ms = svc_now_ms() - r->t_recv;
    w->lat[w->n_lat++ % LAT_RING] = ms;
    w->lat_sum_s += ms / 1e3;
    for (int i = 0; i < N_LAT_LE; i++)
        if (ms / 1e3 <= lat_le[i]) {
            w->lat_bucket[i]++;
            break;
        }
    w->inflight--;
    w->held_bytes -= r->cost;
    free(d->body);
    free(d->data);
    req_free(r);
    free(d);
}

/* The metrics port (--metrics-bind) is libmicrohttpd's (service/http.c);
 * its thread asks the worker's loop for the text over an inproc REQ/REP
 * pair, so the numbers are read only where they are written. */
typedef struct {
    void *ctx;
    char ep[64];
} metrics_link;

static char *metrics_fetch(void *ud)
{
    metrics_link *l = ud;
    void *s = zmq_socket(l->ctx, ZMQ_REQ);
    int zero = 0, wait_ms = 5000;
    char *text = NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (s && zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0 &&
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms) == 0 &&
        zmq_connect(s, l->ep) == 0 && zmq_send(s, "", 0, 0) == 0 &&
        zmq_msg_recv(&m, s, 0) > 0 && (text = malloc(zmq_msg_size(&m) + 1))) {
        memcpy(text, zmq_msg_data(&m), zmq_msg_size(&m));
        text[zmq_msg_size(&m)] = '\0';
    }
    zmq_msg_close(&m);
    if (s)
        zmq_close(s);
    return text;
}

/* One scrape's question on the loop's REP socket: answered with the text,
 * or an empty frame (which the port turns into 503). */
static void handle_metrics(worker *w, void *rep)
{
    char q[8];
    if (zmq_recv(rep, q, sizeof q, ZMQ_DONTWAIT) < 0)
        return;
    char *text = metrics_prometheus(w);
    zmq_send(rep, text ? text : "", text ? strlen(text) : 0, 0);
    free(text);
}

/* ---- the broker connection ---- */

/* Opens a session with the broker: a new DEALER (with CURVE when the
 * worker has the broker's key), a monitor of its handshakes, and READY.
 * Returns 0, or -1 with errno. */
static int broker_connect(io *x)
{
    worker *w = x->w;
    void *s = zmq_socket(w->ctx, ZMQ_DEALER);
    if (!s)
        return -1;
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    /* A DEALER blocks when its queue to a dead broker is full; the I/O
     * thread must never block, so such a send fails and is dropped. */
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &zero, sizeof zero);
    if (w->o.curve_server_key &&
        svc_curve_client(s, w->o.curve_server_key, w->o.curve_public_key,
                         w->o.curve_secret_key, NULL) != VIT_OK) {
        zmq_close(s);
        errno = EINVAL;
        return -1;
    }
    /* A broker that refuses this worker (CURVE on one side only, or a key
     * not in its allow-list) only ever looks silent; its handshake events
     * say why, once, in the log. */
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://vit-broker-handshakes-%u",
             ++x->n_connects);
    if (zmq_socket_monitor(s, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                      ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                      ZMQ_EVENT_DISCONNECTED) == 0) {
        x->shook = 0;
        x->mon = zmq_socket(w->ctx, ZMQ_PAIR);
        if (x->mon) {
            zmq_setsockopt(x->mon, ZMQ_LINGER, &zero, sizeof zero);
            if (zmq_connect(x->mon, ep) != 0) {
                zmq_close(x->mon);
                x->mon = NULL;
            }
        }
    }
    if (zmq_connect(s, w->o.connect) != 0) {
        int e = errno;
        if (x->mon)
            zmq_close(x->mon);
        x->mon = NULL;
        zmq_close(s);
        errno = e;
        return -1;
    }
    x->front = s;
    char ready[64];
    snprintf(ready, sizeof ready, "{\"credit\":%d,\"heartbeat_ms\":%d}",
             w->o.max_queue, w->o.heartbeat_ms);
    svc_msg m = {0};
    if (svc_msg_add(&m, "", 0) | svc_msg_add_str(&m, SVC_WORKER_PROTO) |
        svc_msg_add_byte(&m, SVC_W_READY) | svc_msg_add_str(&m, w->name) |
        svc_msg_add_str(&m, ready))
        svc_msg_close(&m);
    else
        svc_msg_send(&m, s);
    x->last_send = svc_now_ms();
    return 0;
}

static void broker_close(io *x)
{
    if (x->mon)
        zmq_close(x->mon);
    if (x->front)
        zmq_close(x->front);
    x->mon = x->front = NULL;
}

/* One event of the broker connection's monitor: [event u16, value u32],
 * [endpoint]. Returns 1 when a handshake succeeded (the broker is there
 * from now on, so its silence counts from now). The broker cuts a
 * handshake short when only one side has CURVE, or when the key this
 * worker has for it is not its key: seen here as a protocol error, or,
 * when the broker closed first, as a connection lost before its handshake
 * was done. A failure is logged once, until a handshake succeeds. */
static int handle_monitor(io *x)
{
    svc_msg m;
    if (svc_msg_recv(&m, x->mon, ZMQ_DONTWAIT, 2) != 0)
        return 0;
    uint16_t ev = 0;
    uint32_t val = 0;
    if (m.n >= 1 && svc_size(&m, 0) >= 6) {
        memcpy(&ev, svc_data(&m, 0), 2);
        memcpy(&val, svc_data(&m, 0) + 2, 4);
    }
    svc_msg_close(&m);
    worker *w = x->w;
    if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        x->shook = 1;
        x->told = 0;
        return 1;
    }
    int cut = ev == ZMQ_EVENT_DISCONNECTED && !x->shook;
    if (ev == ZMQ_EVENT_DISCONNECTED)
        x->shook = 0;
    if (x->told || !(cut || ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                     ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
        return 0;
    x->told = 1;
    const char *ep = w->o.connect;
    int mismatch = ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                   val == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        logf_(w, "the broker at %s refused this worker's CURVE key (ZAP "
                 "status %u): it admits only the workers whose public keys "
                 "are in its --allow-worker-keys", ep, (unsigned)val);
    else if (!w->o.curve_server_key)
        logf_(w, "the broker at %s %s: this worker needs the broker's "
                 "public key and a key pair of its own", ep,
              mismatch ? "uses CURVE on its backend"
                       : "cut the handshake short; if it uses CURVE on its "
                         "backend");
    else if (mismatch)
        logf_(w, "the broker at %s does not use CURVE on its backend, and "
                 "this worker does", ep);
    else
        logf_(w, "the broker at %s cut the CURVE handshake short: its "
                 "backend has no CURVE, or its public key is not the one "
                 "this worker was given", ep);
    return 0;
}

static void send_cmd(io *x, unsigned char cmd)
{
    svc_msg m = {0};
    if (svc_msg_add(&m, "", 0) | svc_msg_add_str(&m, SVC_WORKER_PROTO) |
        svc_msg_add_byte(&m, cmd))
        svc_msg_close(&m);
    else
        svc_msg_send(&m, x->front);
    x->last_send = svc_now_ms();
}

/* A message from the broker: ["", VITW01, cmd, ...]. Returns 1 when the
 * broker told us to disconnect, -1 when the message is not the worker
 * protocol (then it is no sign of a broker's life), else 0. What answers
 * in the client protocol is a broker's frontend or another worker: the
 * worker was pointed at the wrong endpoint, and says so at once, once. */
static int handle_broker(io *x, svc_msg *m)
{
    if (m->n >= 2 && svc_size(m, 0) == 0 &&
        svc_frame_is(m, 1, SVC_CLIENT_PROTO)) {
        if (!x->wrong_told)
            logf_(x->w, "%s answers in the client protocol: it is a "
                  "broker's --frontend or a worker's --bind, not a broker's "
                  "--backend, which is what a worker's --connect names",
                  x->w->o.connect);
        x->wrong_told = 1;
        return -1;
    }
    if (m->n < 3 || svc_size(m, 0) != 0 ||
        !svc_frame_is(m, 1, SVC_WORKER_PROTO) || svc_size(m, 2) != 1)
        return -1;  /* not from a vit broker; ignored */
    x->wrong_told = 0;
    unsigned char cmd = svc_data(m, 2)[0];
    if (cmd == SVC_W_DISCONNECT)
        return 1;
    if (cmd != SVC_W_REQUEST || m->n < 5 || svc_size(m, 3) > SVC_MAX_ID ||
        svc_size(m, 4) != 0)
        return 0;
    handle_request(x, m, 5, svc_data(m, 3), svc_size(m, 3));
    return 0;
}

/* ---- setup and the I/O loop ---- */

static void name_from_dir(char *out, size_t size, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/')
        s--;
    snprintf(out, size, "%.*s", (int)(n - s), dir + s);
}

vit_serve_options vit_serve_options_default(void)
{
    return (vit_serve_options){
        .max_batch = 8,
        .max_delay_ms = 5,
        .max_queue = 256,
        .max_queue_bytes = (size_t)1 << 30,
        .decode_threads = 2,
        .deadline_ms = 30000,
        .max_images = 64,
        .max_texts = 64,
        .max_text_bytes = 4096,
        .max_image_bytes = (size_t)16 << 20,
        .max_request_bytes = (size_t)64 << 20,
        .max_pixels = (uint64_t)64 << 20,
        .max_request_pixels = (uint64_t)32 << 20,
        .heartbeat_ms = 1000,
    };
}

static vit_status check_opts(const vit_serve_options *o, vit_error *err)
{
    if (!o->model_dir)
        return vit__fail(err, VIT_E_ARG, "no model directory");
    if (!o->bind == !o->connect)
        return vit__fail(err, VIT_E_ARG,
                         "give exactly one of bind and connect");
    if (o->max_batch < 1 || o->max_batch > 4096 || o->max_delay_ms < 0 ||
        o->max_queue < 1 || o->decode_threads < 1 || o->decode_threads > 64 ||
        o->threads < 0 || o->threads > 1024 ||
        o->deadline_ms < 1 || o->max_images < 1 || o->max_texts < 1 ||
        o->max_text_bytes < 1 || o->max_image_bytes < 1 ||
        o->max_queue_bytes < 1 ||
        o->max_request_bytes < 1 || o->heartbeat_ms < 10)
        return vit__fail(err, VIT_E_ARG, "a serve option is out of range");
    if ((o->curve_secret_key && !svc_key_valid(o->curve_secret_key)) ||
        (o->curve_public_key && !svc_key_valid(o->curve_public_key)) ||
        (o->curve_server_key && !svc_key_valid(o->curve_server_key)))
        return vit__fail(err, VIT_E_ARG,
                         "a CURVE key is not 40 Z85 characters");
    if (o->bind && (o->curve_server_key || o->curve_public_key))
        return vit__fail(err, VIT_E_ARG,
                         "a server public key and a key pair are "
                         "for a worker of a broker (connect)");
    if (o->bind && o->allow_keys_dir && !o->curve_secret_key)
        return vit__fail(err, VIT_E_ARG,
                         "allowed keys need a CURVE secret key");
    if (o->connect && o->allow_keys_dir)
        return vit__fail(err, VIT_E_ARG,
                         "allowed keys are for direct mode (bind); "
                         "a broker admits its workers itself");
    if (o->connect && (o->curve_server_key || o->curve_public_key ||
                       o->curve_secret_key) &&
        !(o->curve_server_key && o->curve_public_key && o->curve_secret_key))
        return vit__fail(err, VIT_E_ARG,
                         "CURVE to a broker needs its public key "
                         "and the worker's key pair");
    return VIT_OK;
}

vit_status vit_serve(const vit_serve_options *opt, vit_error *err)
{
    vit_status st = check_opts(opt, err);
    if (st != VIT_OK)
        return st;
    static volatile sig_atomic_t never;
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    w->o = *opt;
    if (!w->o.stop)
        w->o.stop = &never;
    if (opt->name && *opt->name)
        snprintf(w->name, sizeof w->name, "%s", opt->name);
    else
        name_from_dir(w->name, sizeof w->name, opt->model_dir);
    /* The name travels in frames, JSON and Prometheus labels: keep it
     * plain. */
    for (const char *p = w->name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' ||
            (unsigned char)*p == 0x7f) {
            free(w);
            return vit__fail(
                err, VIT_E_ARG,
                "the service name has a control character, a quote "
                "or a backslash; give another with --name");
        }
    if (!w->name[0]) {
        free(w);
        return vit__fail(err, VIT_E_ARG, "the service name is empty");
    }
    if (strncmp(w->name, SVC_MMI_PREFIX, strlen(SVC_MMI_PREFIX)) == 0) {
        free(w);
        return vit__fail(err, VIT_E_ARG,
                         "service names starting with '" SVC_MMI_PREFIX
                         "' are "
                         "the broker's own; give another with --name");
    }
    w->vopt = vit_options_default();
    w->vopt.max_batch = opt->max_batch;
    w->vopt.threads = opt->threads;
    w->vopt.precision = (vit_precision)opt->precision;
    w->vopt.preprocess = (vit_preprocess_backend)opt->preprocess;
    w->vopt.max_pixels = opt->max_pixels;
    /* A server's side limit, tighter than the library's none: what
     * info's max_side states. */
    w->vopt.max_width = w->vopt.max_height = 16384;
    w->vopt.max_file_bytes = opt->max_image_bytes;
    w->t_start = svc_now_ms();

    pthread_t *dec = NULL;
    thread_arg *dargs = NULL;
    int n_dec = 0, infer_started = 0, mu_init = 0;
    pthread_t infer_th;
    infer_ctx ic = {0};
    io x = {.w = w, .brokered = opt->connect != NULL};
    void *pull = NULL, *http = NULL;
    svc_metrics_http *mhttp = NULL;
    metrics_link mlink = {0};
    svc_auth *auth = NULL;

    st = vit_model_load(opt->model_dir, &w->vopt, &w->model, err);
    if (st != VIT_OK)
        goto out;
    vit_model_get_info(w->model, &w->info);
    w->chw = (size_t)w->info.channels * w->info.image_h * w->info.image_w;
    if ((st = vit_state_new(w->model, &ic.state, err)) != VIT_OK)
        goto out;
    /* Room for a classifier's labels or a zero-shot set's (max_texts). */
    int L = w->info.num_labels > opt->max_texts ? w->info.num_labels
                                                : opt->max_texts;
    int D = w->info.embed_dim > 0 ? w->info.embed_dim : 1;
    ic.w = w;
    ic.cap = opt->max_batch;
    size_t cap = (size_t)ic.cap;
    ic.pixels = malloc(cap * (w->chw ? w->chw : 1) * sizeof(float));
    ic.top = malloc(cap * L * sizeof *ic.top);
    ic.logits = malloc(cap * L * sizeof(float));
    ic.emb = malloc(cap * D * sizeof(float));
    ic.texts = malloc(cap * sizeof *ic.texts);
    ic.batch = malloc(cap * sizeof *ic.batch);
    dec = calloc((size_t)opt->decode_threads, sizeof *dec);
    dargs = calloc((size_t)opt->decode_threads, sizeof *dargs);
    if (!ic.pixels || !ic.top || !ic.logits || !ic.emb || !ic.texts ||
        !ic.batch || !dec || !dargs) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }

    w->ctx = zmq_ctx_new();
    if (!w->ctx) {
        st = vit__fail(err, VIT_E_IO, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto out;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv_decode, &ca);
    pthread_cond_init(&w->cv_infer, &ca);
    pthread_condattr_destroy(&ca);
    mu_init = 1;

    pull = zmq_socket(w->ctx, ZMQ_PULL);
    if (!pull || zmq_bind(pull, "inproc://vit-done") != 0) {
        st =
            vit__fail(err, VIT_E_IO, "inproc socket: %s", zmq_strerror(errno));
        goto out;
    }
    if (opt->index_path &&
        (st = svc_ix_open(opt->index_path,
                          (idx_precision)opt->index_precision,
                          opt->model_dir, &w->info, precision_name(w),
                          preprocess_name(w), w->ctx,
                          "inproc://vit-done", ix_done, &w->ix, err)) !=
            VIT_OK)
        goto out;
    if (opt->allow_keys_dir &&
        (st = svc_auth_start(w->ctx,
                             &(svc_auth_domain){SVC_ZAP_CLIENTS,
                                                opt->allow_keys_dir},
                             1, &auth, err)) != VIT_OK)
        goto out;
    if (opt->bind) {
        x.front = zmq_socket(w->ctx, ZMQ_ROUTER);
        /* libzmq bounds each frame, not a whole message: the largest
         * frame that can be valid is an image, and one up to twice that is
         * still read so that it gets a clear too_large reply. */
        int64_t maxmsg = 2 * (int64_t)opt->max_image_bytes + SVC_HARD_SLACK;
        int zero = 0;
        zmq_setsockopt(x.front, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        zmq_setsockopt(x.front, ZMQ_LINGER, &zero, sizeof zero);
        if (opt->curve_secret_key &&
            (st = svc_curve_server(x.front, opt->curve_secret_key,
                                   SVC_ZAP_CLIENTS, err)) != VIT_OK)
            goto out;
        if (zmq_bind(x.front, opt->bind) != 0) {
            st = vit__fail(err, VIT_E_IO, "cannot bind %s: %s", opt->bind,
                           zmq_strerror(errno));
            goto out;
        }
    } else {
        if (broker_connect(&x) != 0) {
            st = vit__fail(err, VIT_E_IO, "cannot connect to %s: %s",
                           opt->connect, zmq_strerror(errno));
            goto out;
        }
    }

    if (opt->metrics_bind) {
        /* `http` is the loop's end of the scrapes' inproc pair. */
        mlink.ctx = w->ctx;
        snprintf(mlink.ep, sizeof mlink.ep, "inproc://vit-metrics-%p",
                 (void *)w);
        http = zmq_socket(w->ctx, ZMQ_REP);
        int zero = 0, port = 0;
        if (http)
            zmq_setsockopt(http, ZMQ_LINGER, &zero, sizeof zero);
        if (!http || zmq_bind(http, mlink.ep) != 0) {
            st = vit__fail(err, VIT_E_IO, "cannot open the metrics pair: %s",
                           zmq_strerror(errno));
            goto out;
        }
        if ((st = svc_metrics_http_start(opt->metrics_bind, metrics_fetch,
                                         &mlink, &mhttp, &port, err)))
            goto out;
        const char *hp = opt->metrics_bind + 6, *colon = strrchr(hp, ':');
        int hl = colon ? (int)(colon - hp) : (int)strlen(hp);
        logf_(w, "metrics on http://%.*s:%d/metrics", hl, hp, port);
    }

    /* The pipeline threads. Each gets its own PUSH socket: ZeroMQ sockets
     * are not shared between threads. */
    ic.push = zmq_socket(w->ctx, ZMQ_PUSH);
    if (!ic.push || zmq_connect(ic.push, "inproc://vit-done") != 0 ||
        pthread_create(&infer_th, NULL, infer_main, &ic) != 0) {
        st = vit__fail(err, VIT_E_IO, "cannot start the inference thread");
        goto out;
    }
    infer_started = 1;
    for (; n_dec < opt->decode_threads; n_dec++) {
        dargs[n_dec].w = w;
        dargs[n_dec].push = zmq_socket(w->ctx, ZMQ_PUSH);
        if (!dargs[n_dec].push ||
            zmq_connect(dargs[n_dec].push, "inproc://vit-done") != 0 ||
            pthread_create(&dec[n_dec], NULL, decode_main, &dargs[n_dec]) !=
                0) {
            if (dargs[n_dec].push)
                zmq_close(dargs[n_dec].push);
            st = vit__fail(err, VIT_E_IO, "cannot start a decode thread");
            goto out;
        }
    }
    if (w->ix) {
        json_t *sx = svc_ix_stats(w->ix);
        logf_(w, "index %s: %lld items, %s",
              opt->index_path,
              (long long)json_integer_value(json_object_get(sx, "items")),
              json_string_value(json_object_get(sx, "model")));
        json_decref(sx);
    }
    logf_(w, "serving '%s' (%s) %s %s, batch %d, delay %d ms, queue %d",
          w->name, w->info.architecture ? w->info.architecture : "?",
          opt->bind ? "on" : "via broker", opt->bind ? opt->bind : opt->connect,
          opt->max_batch, opt->max_delay_ms, opt->max_queue);

    /* The I/O loop. */
    double hb = opt->heartbeat_ms, last_heard = svc_now_ms();
    double reconnect_at = 0, backoff = hb;
    int draining_logged = 0, max_frames = opt->max_images + 16;
    for (;;) {
        if (*w->o.stop && !draining_logged) {
            logf_(w, "draining: %d requests to finish", w->inflight);
            draining_logged = 1;
        }
        if (*w->o.stop && w->inflight == 0)
            break;
        zmq_pollitem_t items[4] = {{pull, 0, ZMQ_POLLIN, 0},
                                   {http, 0, ZMQ_POLLIN, 0},
                                   {x.front, 0, ZMQ_POLLIN, 0},
                                   {x.mon, 0, ZMQ_POLLIN, 0}};
        int n_items = !x.front ? 2 : x.mon ? 4 : 3;
        long timeout = 100;  /* the stop flag is looked at this often */
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            st = vit__fail(err, VIT_E_IO, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        double now = svc_now_ms();
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            /* Drain all finished replies before reading new requests, so
             * answers go out ahead of new work. */
            for (;;) {
                done_msg *d;
                if (zmq_recv(pull, &d, sizeof d, ZMQ_DONTWAIT) != sizeof d)
                    break;
                handle_done(&x, d);
            }
        }
        if (rc > 0 && http && (items[1].revents & ZMQ_POLLIN))
            handle_metrics(w, http);
        if (rc > 0 && n_items > 3 && (items[3].revents & ZMQ_POLLIN) &&
            handle_monitor(&x))  /* before the DEALER may be closed */
            last_heard = now;
        if (rc > 0 && n_items > 2 && (items[2].revents & ZMQ_POLLIN)) {
            for (int burst = 0; burst < 256; burst++) {
                svc_msg m;
                if (svc_msg_recv(&m, x.front, ZMQ_DONTWAIT, max_frames) != 0)
                    break;
                if (x.brokered) {
                    int hr = handle_broker(&x, &m);
                    if (hr >= 0) {
                        last_heard = now;
                        backoff = hb;
                    }
                    if (hr > 0) {
                        /* The broker does not know us (it restarted):
                         * start a new session. */
                        broker_close(&x);
                        reconnect_at = now;
                        svc_msg_close(&m);
                        break;
                    }
                } else {
                    handle_client(&x, &m);
                }
                svc_msg_close(&m);
            }
        }
        if (x.brokered) {
            if (x.front && now - last_heard > 3 * hb) {
                logf_(w, "broker silent for %.0f ms; reconnecting",
                      now - last_heard);
                broker_close(&x);
                reconnect_at = now + backoff;
                backoff = backoff * 2 < 32000 ? backoff * 2 : 32000;
            }
            if (!x.front && now >= reconnect_at && !*w->o.stop) {
                broker_connect(&x);
                last_heard = now;
            }
            if (x.front && now - x.last_send >= hb)
                send_cmd(&x, SVC_W_HEARTBEAT);
        }
    }
    if (x.brokered && x.front)
        send_cmd(&x, SVC_W_DISCONNECT);
    /* The last replies (and the broker's DISCONNECT) may still be queued
     * in the socket: closed with no linger they would be dropped, and a
     * client whose request was drained would never hear. Up to 2 s to
     * flush them; a client that went away does not hold the stop longer. */
    if (x.front) {
        int flush_ms = 2000;
        zmq_setsockopt(x.front, ZMQ_LINGER, &flush_ms, sizeof flush_ms);
    }
    logf_(w, "stopped");

out:
    if (mu_init) {
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_broadcast(&w->cv_decode);
        pthread_cond_broadcast(&w->cv_infer);
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < n_dec; i++) {
        pthread_join(dec[i], NULL);
        zmq_close(dargs[i].push);
    }
    if (infer_started)
        pthread_join(infer_th, NULL);
    if (ic.push)
        zmq_close(ic.push);
    /* The index writer finishes what was queued before the replies left
     * unsent are freed below. */
    svc_ix_close(w->ix);
    if (pull) {
        /* Replies that were never sent (a failed start) are freed. */
        done_msg *d;
        while (zmq_recv(pull, &d, sizeof d, ZMQ_DONTWAIT) == sizeof d) {
            free(d->body);
            free(d->data);
            req_free(d->r);
            free(d);
        }
        zmq_close(pull);
    }
    /* Requests still queued (only after a failed start or a hard stop). */
    for (req *r = w->dq_head, *nx; r; r = nx) {
        nx = r->next;
        req_free(r);
    }
    while (w->iq_head) {
        req *r = w->iq_head->r;
        purge_req_locked(w, r);
        req_free(r);
    }
    broker_close(&x);
    /* The port's thread may be waiting on the pair: stopped first. */
    svc_metrics_http_stop(mhttp);
    if (http)
        zmq_close(http);
    svc_auth_stop(auth);
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    if (mu_init) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv_decode);
        pthread_cond_destroy(&w->cv_infer);
    }
    free(ic.pixels);
    free(ic.top);
    free(ic.logits);
    free(ic.emb);
    free(ic.texts);
    free(ic.batch);
    free(dec);
    free(dargs);
    for (int i = 0; i < 8; i++) {
        free(ic.zs[i].key);
        vit_zeroshot_free(ic.zs[i].z);
    }
    vit_state_free(ic.state);
    vit_model_free(w->model);
    free(w);
    return st;
}
