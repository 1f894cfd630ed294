/*
 * Private declarations shared by the worker's files (service/worker.c and
 * the parts it is made of): the operations and reply codes, a request and
 * its items, the worker's state, and what each part offers the others.
 *
 *   request.c      the request codec and the op table (svc_ops): a
 *                  request's frames and JSON header into a req, or a
 *                  refusal
 *   scheduler.c    the queues, the decode threads, the inference thread
 *                  and its batching policy
 *   reply.c        the replies: a computed request's, by its op; the
 *                  answers of the ops answered at once; sending them
 *   metrics.c      the counters, the metrics bodies (JSON, Prometheus),
 *                  the metrics port's link to the loop
 *   broker_link.c  a worker's session with a broker
 *   worker.c       setup and the I/O loop (vit_serve)
 *
 * Nothing here is API; the prefix is svc_.
 */
#ifndef SVC_WORKER_H
#define SVC_WORKER_H

#include "service/service.h"
#include "service/svc_impl.h"
#include "service/svc_index.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

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

extern const char *const svc_code_names[N_CODES];

#define LAT_RING 4096
#define N_LAT_LE 12  /* the bounds of svc_lat_le */
#define MAX_HIST 4097  /* batch sizes 1 ... 4096 */
/* The upper bounds, in seconds, of the latency histogram's buckets. */
extern const double svc_lat_le[N_LAT_LE];

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

typedef struct {
    worker *w;
    void *push;
} thread_arg;

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

/* The pipeline's threads (scheduler.c). */
typedef struct {
    infer_ctx ic;
    pthread_t infer_th;
    int infer_started;
    pthread_t *dec;
    thread_arg *dargs;
    int n_dec;
} svc_sched;

typedef struct {
    code_t code;
    char msg[300];
    int index;
    const char *field;
} reject;

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
    double last_heard;   /* from the broker */
    double reconnect_at; /* with no session: when to open the next */
    double backoff;      /* the wait after the next silence, ms */
} io;

/* The metrics port (--metrics-bind) is libmicrohttpd's (metrics_http.c);
 * its thread asks the worker's loop for the text over an inproc REQ/REP
 * pair, so the numbers are read only where they are written. */
typedef struct {
    void *ctx;
    char ep[64];
} metrics_link;

/* ---- the op table (request.c) ---- */

/* What an op takes. */
enum {
    OPF_IMAGES = 1,   /* image frames (index_add: unless it gives vectors) */
    OPF_TEXTS = 2,    /* "texts" */
    OPF_INDEX = 4,    /* the worker's index (--index) */
    OPF_IMG_EMB = 8,  /* its images' embeddings, for its reply */
};

/* An operation: its name, what it takes, its own fields of the header
 * (parse, after those every op has; `given`: index_add's vectors come in
 * the data frame), and how it is answered: at once on the I/O thread
 * (answer: the body, or NULL with `msg`), or once its items are computed
 * (reply: fills `o` and `d`'s data and returns 0, or answers the request
 * otherwise and returns -1). */
typedef struct {
    const char *name;
    unsigned flags;
    int (*parse)(worker *w, json_t *h, svc_msg *m, int hi, int given, req *r,
                 reject *rj);
    char *(*answer)(worker *w, req *r, char *msg);
    int (*reply)(infer_ctx *c, req *r, json_t *o, done_msg *d);
} svc_op;

extern const svc_op svc_ops[N_OPS];

/* ---- what the parts offer each other ---- */

/* A line for the worker's log (svc_log). */
#define svc_logf(w, ...) svc_log((w)->o.log, (w)->o.log_ud, __VA_ARGS__)

/* worker.c */
/* Handles the part of a request from the request id on: frames
 * [ri] request id, [ri+1] header, [ri+2 ...] data. */
void svc_handle_request(io *x, svc_msg *m, int ri, const unsigned char *route,
                        size_t route_len);

/* request.c */
int svc_rejectf(reject *rj, code_t code, int index, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* ViT models leave has_vision 0 (the flag came with CLIP); any model
 * that takes a pixel tensor and is not CLIP's text tower has one. */
int svc_has_vision(const vit_model_info *in);
/* Parses header frame `hi` of `m` and the data frames after it into `r`.
 * The op is known (r->op) as soon as it could be read, for the metrics. */
int svc_parse_body(worker *w, svc_msg *m, int hi, req *r, reject *rj);
/* Allocates the result buffers and items of an accepted request. */
int svc_req_prepare(worker *w, req *r);
void svc_req_free(req *r);

/* scheduler.c */
/* Queues an accepted request for decoding, or its items (texts) for the
 * inference thread. */
void svc_sched_submit(worker *w, req *r);
/* Queues the items of a decoded request for the inference thread. */
void svc_queue_items_locked(worker *w, req *r);
/* Removes every queued item of `r`, so it can be answered early. */
void svc_purge_req_locked(worker *w, req *r);
/* The inference thread's state and buffers (after the model is loaded);
 * its threads, handing their replies back to `done_ep`; stopping them
 * (and freeing what was still queued); the buffers freed. Each may be
 * called after a failure of the one before. */
vit_status svc_sched_init(worker *w, svc_sched *s, vit_error *err);
vit_status svc_sched_start(worker *w, svc_sched *s, const char *done_ep,
                           vit_error *err);
void svc_sched_stop(worker *w, svc_sched *s);
void svc_sched_free(svc_sched *s);

/* reply.c */
/* Sends `d` (owned) over a thread's PUSH socket. */
void svc_hand_back(void *push, done_msg *d);
void svc_finish_error(void *push, req *r, code_t code, const char *msg,
                      int index);
/* Builds the reply of a request whose items are all computed. */
void svc_finish_ok(infer_ctx *c, req *r);
/* The ops' replies and answers (svc_op). */
int svc_reply_classify(infer_ctx *c, req *r, json_t *o, done_msg *d);
int svc_reply_embed(infer_ctx *c, req *r, json_t *o, done_msg *d);
int svc_reply_match(infer_ctx *c, req *r, json_t *o, done_msg *d);
int svc_reply_search(infer_ctx *c, req *r, json_t *o, done_msg *d);
int svc_reply_index_add(infer_ctx *c, req *r, json_t *o, done_msg *d);
char *svc_answer_info(worker *w, req *r, char *msg);
char *svc_answer_health(worker *w, req *r, char *msg);
char *svc_answer_metrics(worker *w, req *r, char *msg);
char *svc_answer_index_stats(worker *w, req *r, char *msg);
char *svc_answer_index_get(worker *w, req *r, char *msg);
/* A JSON value as compact text, malloc'd (NULL when o is NULL or out of
 * memory); takes the reference. */
char *svc_dump(json_t *o);
/* Floats to little-endian, in place (a swap is its own inverse). */
void svc_to_le(float *v, size_t n);
/* The index writer's answer to a job of request `r` (svc_ix_done_fn). */
void svc_ix_reply(void *push, void *rv, char *body, const char *code,
                  const char *msg);
/* Hands an index_add or index_remove to the index writer, which answers
 * it once committed; the job takes the request's keys and `vecs`.
 * Returns -1, having changed nothing, when out of memory. */
int svc_req_ix_submit(worker *w, req *r, float *vecs);
/* Sends a reply with body `body` (not freed) and optional data. */
void svc_send_reply(io *x, const unsigned char *route, size_t route_len,
                    const unsigned char *rid, size_t rid_len,
                    const char *body, const void *data, size_t data_len);
void svc_reply_reject(io *x, const unsigned char *route, size_t route_len,
                      const unsigned char *rid, size_t rid_len, op_t op,
                      const reject *rj);
/* How the model makes vectors: what info says, and what an index served
 * records and checks. */
const char *svc_precision_name(const worker *w);
const char *svc_preprocess_name(const worker *w);
char *svc_info_body(worker *w);

/* metrics.c */
void svc_count(worker *w, op_t op, code_t code);
/* A work request's time from receipt to reply, in the latency metrics. */
void svc_record_latency(worker *w, double ms);
int svc_queue_depth(worker *w);
char *svc_metrics_body(worker *w);
/* The same counters in Prometheus' text exposition format (0.0.4), for
 * the `metrics` operation with "format": "prometheus" and GET /metrics on
 * --metrics-bind's port. */
char *svc_metrics_prometheus(worker *w);
char *svc_metrics_fetch(void *ud);  /* a metrics_link; svc_metrics_fn */
/* One scrape's question on the loop's REP socket: answered with the text,
 * or an empty frame (which the port turns into 503). */
void svc_handle_metrics(worker *w, void *rep);

/* broker_link.c */
/* Opens a session with the broker: a new DEALER (with CURVE when the
 * worker has the broker's key), a monitor of its handshakes, and READY.
 * Returns 0, or -1 with errno. */
int svc_broker_connect(io *x);
void svc_broker_close(io *x);
/* One event of the broker connection's monitor; returns 1 when a
 * handshake succeeded. */
int svc_handle_monitor(io *x);
void svc_send_cmd(io *x, unsigned char cmd);
/* A message from the broker, as the loop reads it: 1 when the session was
 * closed (the broker told us to go), so that no more is read from it. */
int svc_broker_message(io *x, svc_msg *m, double now);
/* The session's timers: a silent broker's session is closed, and another
 * opened after a backoff; a heartbeat when nothing was sent for one. */
void svc_broker_tick(io *x, double now);
/* A message from the broker: 1 when it told us to disconnect, -1 when it
 * is not the worker protocol, else 0. */
int svc_handle_broker(io *x, svc_msg *m);

#endif
