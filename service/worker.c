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
 *
 * This file sets the worker up and runs the I/O loop; the parts it is made
 * of are listed in service/svc_worker.h.
 */
#include "service/svc_worker.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An op answered at once, on this thread (svc_ops' answer). */
static int answer_now(io *x, req *r, const unsigned char *route,
                      size_t route_len, const unsigned char *rid,
                      size_t rid_len, reject *rj)
{
    char msg[256] = "out of memory";
    char *body = svc_ops[r->op].answer(x->w, r, msg);
    if (!body)
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "%s", msg);
    svc_count(x->w, r->op, C_OK);
    svc_send_reply(x, route, route_len, rid, rid_len, body, NULL, 0);
    free(body);
    return 0;
}

/* Whether the worker takes work `r` now: not while it stops, nor past
 * max_queue requests or max_queue_bytes held. Sets r->cost. */
static int admit(worker *w, req *r, reject *rj)
{
    if (*w->o.stop)
        return svc_rejectf(rj, C_SHUTTING_DOWN, -1, NULL,
                           "the worker is shutting down and takes no new "
                           "work");
    if (w->inflight >= w->o.max_queue)
        return svc_rejectf(rj, C_OVERLOADED, -1, NULL,
                           "the queue is full (%d requests); try again later",
                           w->o.max_queue);
    /* The memory a request holds until it is answered: its image bytes,
     * then its pixel tensors. max_queue requests of max_request_bytes each
     * could be far more than the machine has, so bytes are bounded too. */
    size_t cost = 0;
    for (int i = 0; i < r->data.n; i++)
        cost += svc_size(&r->data, i);
    cost += (size_t)r->n_images * w->chw * sizeof(float);
    if (w->held_bytes > 0 && w->held_bytes + cost > w->o.max_queue_bytes)
        return svc_rejectf(rj, C_OVERLOADED, -1, NULL,
                           "the queue holds %zu MiB of work; try again later",
                           w->held_bytes >> 20);
    r->cost = cost;
    return 0;
}

/* Takes admitted work `r` in: to the pipeline (scheduler.c), or when
 * there is nothing to compute straight to the index writer. From here the
 * request is theirs until its reply comes back (handle_done). */
static int take_in(io *x, req *r, const unsigned char *route,
                   size_t route_len, const unsigned char *rid,
                   size_t rid_len, reject *rj)
{
    worker *w = x->w;
    if (svc_req_prepare(w, r) != 0)
        return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
    memcpy(r->route, route, route_len);
    r->route_len = route_len;
    memcpy(r->rid, rid, rid_len);
    r->rid_len = rid_len;
    w->inflight++;
    w->held_bytes += r->cost;
    if (r->op == OP_INDEX_REMOVE || (r->op == OP_INDEX_ADD && r->given)) {
        if (svc_req_ix_submit(w, r, r->given) != 0) {
            w->inflight--;
            w->held_bytes -= r->cost;
            return svc_rejectf(rj, C_INTERNAL, -1, NULL, "out of memory");
        }
        r->given = NULL;
        return 0;
    }
    svc_sched_submit(w, r);
    return 0;
}

/* Handles the part of a request from the request id on: frames
 * [ri] request id, [ri+1] header, [ri+2 ...] data. */
void svc_handle_request(io *x, svc_msg *m, int ri,
                        const unsigned char *route, size_t route_len)
{
    worker *w = x->w;
    reject rj = {.index = -1};
    const unsigned char *rid = (const unsigned char *)"";
    size_t rid_len = 0;
    req *r = NULL;
    if (m->n < ri + 2) {
        svc_rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                    "a request needs a request id frame and a header frame");
        goto reject;
    }
    rid = svc_data(m, ri);
    rid_len = svc_size(m, ri);
    if (rid_len == 0 || rid_len > SVC_MAX_ID) {
        rid_len = rid_len > SVC_MAX_ID ? 0 : rid_len;
        svc_rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                    "the request id must be 1 to %d bytes", SVC_MAX_ID);
        goto reject;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        svc_rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
        goto reject;
    }
    r->op = OP_INVALID;
    r->t_recv = svc_now_ms();
    if (svc_parse_body(w, m, ri + 1, r, &rj) != 0)
        goto reject;
    if (svc_ops[r->op].answer) {
        if (answer_now(x, r, route, route_len, rid, rid_len, &rj) != 0)
            goto reject;
        svc_req_free(r);
        return;
    }
    if (admit(w, r, &rj) != 0 ||
        take_in(x, r, route, route_len, rid, rid_len, &rj) != 0)
        goto reject;
    return;
reject:
    svc_reply_reject(x, route, route_len, rid, rid_len, r ? r->op : OP_INVALID,
                     &rj);
    svc_req_free(r);
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
        svc_rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                    "expected an empty delimiter frame, '%s', a command, a "
                    "service, a request id and a header", SVC_CLIENT_PROTO);
    } else if (!svc_frame_is(m, 2, SVC_CLIENT_PROTO)) {
        svc_rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                    "frame 1 must be the protocol '%s'", SVC_CLIENT_PROTO);
    } else if (svc_size(m, 3) != 1 || svc_data(m, 3)[0] != SVC_C_REQUEST) {
        svc_rejectf(&rj, C_BAD_REQUEST, -1, NULL,
                    "frame 2 must be the command byte 0x01 (REQUEST)");
    } else if (svc_size(m, 4) != 0 && !svc_frame_is(m, 4, w->name)) {
        svc_rejectf(&rj, C_UNKNOWN_SERVICE, -1, NULL,
                    "this worker serves '%s' only", w->name);
    } else {
        svc_handle_request(x, m, 5, route, route_len);
        return;
    }
    /* Echo the request id when the message got that far. */
    const unsigned char *rid = (const unsigned char *)"";
    size_t rid_len = 0;
    if (m->n > 5 && svc_size(m, 5) <= SVC_MAX_ID) {
        rid = svc_data(m, 5);
        rid_len = svc_size(m, 5);
    }
    svc_reply_reject(x, route, route_len, rid, rid_len, OP_INVALID, &rj);
}

/* A reply finished by a pipeline thread. */
static void handle_done(io *x, done_msg *d)
{
    worker *w = x->w;
    req *r = d->r;
    if (d->body)
        svc_send_reply(x, r->route, r->route_len, r->rid, r->rid_len, d->body,
                       d->data, d->data_len);
    svc_count(w, r->op, d->body ? d->code : C_INTERNAL);
    double ms = svc_now_ms() - r->t_recv;
    svc_record_latency(w, ms);
    w->inflight--;
    w->held_bytes -= r->cost;
    free(d->body);
    free(d->data);
    svc_req_free(r);
    free(d);
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

/* Everything vit_serve starts, stopped in reverse by serve_stop. */
typedef struct {
    worker *w;
    svc_sched sched;
    io x;
    void *pull;  /* the replies the pipeline threads hand back */
    void *http;  /* the loop's end of the metrics port's inproc pair */
    svc_metrics_http *mhttp;
    metrics_link mlink;
    svc_auth *auth;
    int mu_init;
} serve;

/* The worker's state from the options: its service name (checked: it
 * travels in frames, JSON and Prometheus labels) and the library's
 * options. */
static vit_status worker_new(const vit_serve_options *opt, worker **out,
                             vit_error *err)
{
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
                         "' are the broker's own; give another with --name");
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
    *out = w;
    return VIT_OK;
}

/* The socket facing clients: a ROUTER bound (direct), or the session with
 * a broker (connect). */
static vit_status open_front(serve *s, vit_error *err)
{
    const vit_serve_options *opt = &s->w->o;
    vit_status st;
    if (!opt->bind) {
        if (svc_broker_connect(&s->x) != 0)
            return vit__fail(err, VIT_E_IO, "cannot connect to %s: %s",
                             opt->connect, zmq_strerror(errno));
        return VIT_OK;
    }
    void *front = s->x.front = zmq_socket(s->w->ctx, ZMQ_ROUTER);
    /* libzmq bounds each frame, not a whole message: the largest frame
     * that can be valid is an image, and one up to twice that is still
     * read so that it gets a clear too_large reply. */
    int64_t maxmsg = 2 * (int64_t)opt->max_image_bytes + SVC_HARD_SLACK;
    int zero = 0;
    zmq_setsockopt(front, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(front, ZMQ_LINGER, &zero, sizeof zero);
    if (opt->curve_secret_key &&
        (st = svc_curve_server(front, opt->curve_secret_key, SVC_ZAP_CLIENTS,
                               err)) != VIT_OK)
        return st;
    if (zmq_bind(front, opt->bind) != 0)
        return vit__fail(err, VIT_E_IO, "cannot bind %s: %s", opt->bind,
                         zmq_strerror(errno));
    return VIT_OK;
}

/* The metrics port (--metrics-bind), which asks the loop for the text
 * over an inproc pair. */
static vit_status start_metrics(serve *s, vit_error *err)
{
    worker *w = s->w;
    const char *bind = w->o.metrics_bind;
    s->mlink.ctx = w->ctx;
    snprintf(s->mlink.ep, sizeof s->mlink.ep, "inproc://vit-metrics-%p",
             (void *)w);
    s->http = zmq_socket(w->ctx, ZMQ_REP);
    int zero = 0, port = 0;
    if (s->http)
        zmq_setsockopt(s->http, ZMQ_LINGER, &zero, sizeof zero);
    if (!s->http || zmq_bind(s->http, s->mlink.ep) != 0)
        return vit__fail(err, VIT_E_IO, "cannot open the metrics pair: %s",
                         zmq_strerror(errno));
    vit_status st = svc_metrics_http_start(bind, svc_metrics_fetch, &s->mlink,
                                           &s->mhttp, &port, err);
    if (st != VIT_OK)
        return st;
    const char *hp = bind + 6, *colon = strrchr(hp, ':');
    int hl = colon ? (int)(colon - hp) : (int)strlen(hp);
    svc_logf(w, "metrics on http://%.*s:%d/metrics", hl, hp, port);
    return VIT_OK;
}

/* The model, the ZeroMQ context and sockets, the index, the ZAP handler,
 * the metrics port and the pipeline's threads, in that order. */
static vit_status serve_start(serve *s, vit_error *err)
{
    worker *w = s->w;
    const vit_serve_options *opt = &w->o;
    vit_status st = vit_model_load(opt->model_dir, &w->vopt, &w->model, err);
    if (st != VIT_OK)
        return st;
    vit_model_get_info(w->model, &w->info);
    w->chw = (size_t)w->info.channels * w->info.image_h * w->info.image_w;
    if ((st = svc_sched_init(w, &s->sched, err)) != VIT_OK)
        return st;
    if (!(w->ctx = zmq_ctx_new()))
        return vit__fail(err, VIT_E_IO, "zmq_ctx_new: %s",
                         zmq_strerror(errno));
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv_decode, &ca);
    pthread_cond_init(&w->cv_infer, &ca);
    pthread_condattr_destroy(&ca);
    s->mu_init = 1;
    s->pull = zmq_socket(w->ctx, ZMQ_PULL);
    if (!s->pull || zmq_bind(s->pull, "inproc://vit-done") != 0)
        return vit__fail(err, VIT_E_IO, "inproc socket: %s",
                         zmq_strerror(errno));
    if (opt->index_path &&
        (st = svc_ix_open(opt->index_path,
                          (idx_precision)opt->index_precision,
                          opt->model_dir, &w->info, svc_precision_name(w),
                          svc_preprocess_name(w), w->ctx, "inproc://vit-done",
                          svc_ix_reply, &w->ix, err)) != VIT_OK)
        return st;
    if (opt->allow_keys_dir &&
        (st = svc_auth_start(w->ctx,
                             &(svc_auth_domain){SVC_ZAP_CLIENTS,
                                                opt->allow_keys_dir},
                             1, &s->auth, err)) != VIT_OK)
        return st;
    if ((st = open_front(s, err)) != VIT_OK ||
        (opt->metrics_bind && (st = start_metrics(s, err)) != VIT_OK) ||
        (st = svc_sched_start(w, &s->sched, "inproc://vit-done", err)) !=
            VIT_OK)
        return st;
    if (w->ix) {
        json_t *sx = svc_ix_stats(w->ix);
        svc_logf(w, "index %s: %lld items, %s", opt->index_path,
                 (long long)json_integer_value(json_object_get(sx, "items")),
                 json_string_value(json_object_get(sx, "model")));
        json_decref(sx);
    }
    svc_logf(w, "serving '%s' (%s) %s %s, batch %d, delay %d ms, queue %d",
             w->name, w->info.architecture ? w->info.architecture : "?",
             opt->bind ? "on" : "via broker",
             opt->bind ? opt->bind : opt->connect, opt->max_batch,
             opt->max_delay_ms, opt->max_queue);
    return VIT_OK;
}

/* Every reply the pipeline has finished, before new requests are read,
 * so that answers go out ahead of new work. */
static void drain_done(serve *s)
{
    for (;;) {
        done_msg *d;
        if (zmq_recv(s->pull, &d, sizeof d, ZMQ_DONTWAIT) != sizeof d)
            break;
        handle_done(&s->x, d);
    }
}

/* A burst of the messages on the front socket. */
static void read_front(serve *s, double now)
{
    io *x = &s->x;
    int max_frames = s->w->o.max_images + 16;
    for (int burst = 0; burst < 256; burst++) {
        svc_msg m;
        if (svc_msg_recv(&m, x->front, ZMQ_DONTWAIT, max_frames) != 0)
            break;
        if (x->brokered) {
            int closed = svc_broker_message(x, &m, now);
            svc_msg_close(&m);
            if (closed)
                break;
        } else {
            handle_client(x, &m);
            svc_msg_close(&m);
        }
    }
}

/* The I/O loop: until the stop flag is set and the work accepted is
 * answered. */
static vit_status serve_loop(serve *s, vit_error *err)
{
    worker *w = s->w;
    io *x = &s->x;
    vit_status st = VIT_OK;
    int draining_logged = 0;
    x->last_heard = svc_now_ms();
    x->backoff = w->o.heartbeat_ms;
    for (;;) {
        if (*w->o.stop && !draining_logged) {
            svc_logf(w, "draining: %d requests to finish", w->inflight);
            draining_logged = 1;
        }
        if (*w->o.stop && w->inflight == 0)
            break;
        zmq_pollitem_t items[4] = {{s->pull, 0, ZMQ_POLLIN, 0},
                                   {s->http, 0, ZMQ_POLLIN, 0},
                                   {x->front, 0, ZMQ_POLLIN, 0},
                                   {x->mon, 0, ZMQ_POLLIN, 0}};
        int n_items = !x->front ? 2 : x->mon ? 4 : 3;
        long timeout = 100;  /* the stop flag is looked at this often */
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            st = vit__fail(err, VIT_E_IO, "zmq_poll: %s",
                           zmq_strerror(errno));
            break;
        }
        double now = svc_now_ms();
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            drain_done(s);
        if (rc > 0 && s->http && (items[1].revents & ZMQ_POLLIN))
            svc_handle_metrics(w, s->http);
        if (rc > 0 && n_items > 3 && (items[3].revents & ZMQ_POLLIN) &&
            svc_handle_monitor(x))  /* before the DEALER may be closed */
            x->last_heard = now;
        if (rc > 0 && n_items > 2 && (items[2].revents & ZMQ_POLLIN))
            read_front(s, now);
        if (x->brokered)
            svc_broker_tick(x, now);
    }
    if (x->brokered && x->front)
        svc_send_cmd(x, SVC_W_DISCONNECT);
    /* The last replies (and the broker's DISCONNECT) may still be queued
     * in the socket: closed with no linger they would be dropped, and a
     * client whose request was drained would never hear. Up to 2 s to
     * flush them; a client that went away does not hold the stop longer. */
    if (x->front) {
        int flush_ms = 2000;
        zmq_setsockopt(x->front, ZMQ_LINGER, &flush_ms, sizeof flush_ms);
    }
    svc_logf(w, "stopped");
    return st;
}

/* Stops and frees what serve_start started, as far as it got. */
static void serve_stop(serve *s)
{
    worker *w = s->w;
    svc_sched_stop(w, &s->sched);
    /* The index writer finishes what was queued before the replies left
     * unsent are freed below. */
    svc_ix_close(w->ix);
    if (s->pull) {
        /* Replies that were never sent (a failed start) are freed. */
        done_msg *d;
        while (zmq_recv(s->pull, &d, sizeof d, ZMQ_DONTWAIT) == sizeof d) {
            free(d->body);
            free(d->data);
            svc_req_free(d->r);
            free(d);
        }
        zmq_close(s->pull);
    }
    svc_broker_close(&s->x);
    /* The port's thread may be waiting on the pair: stopped first. */
    svc_metrics_http_stop(s->mhttp);
    if (s->http)
        zmq_close(s->http);
    svc_auth_stop(s->auth);
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    if (s->mu_init) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv_decode);
        pthread_cond_destroy(&w->cv_infer);
    }
    svc_sched_free(&s->sched);
    vit_model_free(w->model);
    free(w);
}

vit_status vit_serve(const vit_serve_options *opt, vit_error *err)
{
    vit_status st = check_opts(opt, err);
    if (st != VIT_OK)
        return st;
    serve s = {0};
    if ((st = worker_new(opt, &s.w, err)) != VIT_OK)
        return st;
    s.x = (io){.w = s.w, .brokered = opt->connect != NULL};
    if ((st = serve_start(&s, err)) == VIT_OK)
        st = serve_loop(&s, err);
    serve_stop(&s);
    return st;
}
