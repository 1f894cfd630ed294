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
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void svc_logf(worker *w, const char *fmt, ...)
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
    if (r->op == OP_HEALTH || r->op == OP_INFO || r->op == OP_METRICS ||
        r->op == OP_INDEX_STATS || r->op == OP_INDEX_GET) {
        char *body;
        char msg[256] = "out of memory";
        json_t *items = NULL;
        if (r->op == OP_INDEX_GET)
            body = (items = svc_ix_get(w->ix, r->ids, r->n_ids, msg))
                       ? svc_dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                                            "index_get", "items", items))
                       : NULL;
        else if (r->op == OP_INDEX_STATS)
            body = svc_dump(json_pack("{s:b, s:s, s:o}", "ok", 1, "op",
                                      "index_stats", "index",
                                      svc_ix_stats(w->ix)));
        else if (r->op == OP_HEALTH)
            body = svc_health_body(*w->o.stop ? "draining" : "serving",
                                   svc_queue_depth(w));
        else if (r->op == OP_INFO)
            body = svc_info_body(w);
        else if (r->prometheus) {
            char *text = svc_metrics_prometheus(w);
            body = text ? svc_dump(json_pack("{s:b, s:s, s:s, s:s}", "ok", 1,
                                             "op", "metrics", "format",
                                             "prometheus", "text", text))
                        : NULL;
            free(text);
        } else
            body = svc_metrics_body(w);
        if (!body) {
            svc_rejectf(&rj, C_INTERNAL, -1, NULL, "%s", msg);
            goto reject;
        }
        svc_count(w, r->op, C_OK);
        svc_send_reply(x, route, route_len, rid, rid_len, body, NULL, 0);
        free(body);
        svc_req_free(r);
        return;
    }
    if (*w->o.stop) {
        svc_rejectf(&rj, C_SHUTTING_DOWN, -1, NULL,
                    "the worker is shutting down and takes no new work");
        goto reject;
    }
    if (w->inflight >= w->o.max_queue) {
        svc_rejectf(&rj, C_OVERLOADED, -1, NULL,
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
        svc_rejectf(&rj, C_OVERLOADED, -1, NULL,
                    "the queue holds %zu MiB of work; try again later",
                    w->held_bytes >> 20);
        goto reject;
    }
    r->cost = cost;
    if (svc_req_prepare(w, r) != 0) {
        svc_rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
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
        if (svc_req_ix_submit(w, r, r->given) != 0) {
            w->inflight--;
            w->held_bytes -= r->cost;
            svc_rejectf(&rj, C_INTERNAL, -1, NULL, "out of memory");
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
        svc_queue_items_locked(w, r);  /* texts need no decoding */
    }
    pthread_mutex_unlock(&w->mu);
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
                          opt->model_dir, &w->info, svc_precision_name(w),
                          svc_preprocess_name(w), w->ctx,
                          "inproc://vit-done", svc_ix_reply, &w->ix, err)) !=
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
        if (svc_broker_connect(&x) != 0) {
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
        if ((st = svc_metrics_http_start(opt->metrics_bind, svc_metrics_fetch,
                                         &mlink, &mhttp, &port, err)))
            goto out;
        const char *hp = opt->metrics_bind + 6, *colon = strrchr(hp, ':');
        int hl = colon ? (int)(colon - hp) : (int)strlen(hp);
        svc_logf(w, "metrics on http://%.*s:%d/metrics", hl, hp, port);
    }

    /* The pipeline threads. Each gets its own PUSH socket: ZeroMQ sockets
     * are not shared between threads. */
    ic.push = zmq_socket(w->ctx, ZMQ_PUSH);
    if (!ic.push || zmq_connect(ic.push, "inproc://vit-done") != 0 ||
        pthread_create(&infer_th, NULL, svc_infer_main, &ic) != 0) {
        st = vit__fail(err, VIT_E_IO, "cannot start the inference thread");
        goto out;
    }
    infer_started = 1;
    for (; n_dec < opt->decode_threads; n_dec++) {
        dargs[n_dec].w = w;
        dargs[n_dec].push = zmq_socket(w->ctx, ZMQ_PUSH);
        if (!dargs[n_dec].push ||
            zmq_connect(dargs[n_dec].push, "inproc://vit-done") != 0 ||
            pthread_create(&dec[n_dec], NULL, svc_decode_main,
                           &dargs[n_dec]) != 0) {
            if (dargs[n_dec].push)
                zmq_close(dargs[n_dec].push);
            st = vit__fail(err, VIT_E_IO, "cannot start a decode thread");
            goto out;
        }
    }
    if (w->ix) {
        json_t *sx = svc_ix_stats(w->ix);
        svc_logf(w, "index %s: %lld items, %s",
                 opt->index_path,
                 (long long)json_integer_value(json_object_get(sx, "items")),
                 json_string_value(json_object_get(sx, "model")));
        json_decref(sx);
    }
    svc_logf(w, "serving '%s' (%s) %s %s, batch %d, delay %d ms, queue %d",
             w->name, w->info.architecture ? w->info.architecture : "?",
             opt->bind ? "on" : "via broker",
             opt->bind ? opt->bind : opt->connect, opt->max_batch,
             opt->max_delay_ms, opt->max_queue);

    /* The I/O loop. */
    double hb = opt->heartbeat_ms, last_heard = svc_now_ms();
    double reconnect_at = 0, backoff = hb;
    int draining_logged = 0, max_frames = opt->max_images + 16;
    for (;;) {
        if (*w->o.stop && !draining_logged) {
            svc_logf(w, "draining: %d requests to finish", w->inflight);
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
            svc_handle_metrics(w, http);
        if (rc > 0 && n_items > 3 && (items[3].revents & ZMQ_POLLIN) &&
            svc_handle_monitor(&x))  /* before the DEALER may be closed */
            last_heard = now;
        if (rc > 0 && n_items > 2 && (items[2].revents & ZMQ_POLLIN)) {
            for (int burst = 0; burst < 256; burst++) {
                svc_msg m;
                if (svc_msg_recv(&m, x.front, ZMQ_DONTWAIT, max_frames) != 0)
                    break;
                if (x.brokered) {
                    int hr = svc_handle_broker(&x, &m);
                    if (hr >= 0) {
                        last_heard = now;
                        backoff = hb;
                    }
                    if (hr > 0) {
                        /* The broker does not know us (it restarted):
                         * start a new session. */
                        svc_broker_close(&x);
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
                svc_logf(w, "broker silent for %.0f ms; reconnecting",
                         now - last_heard);
                svc_broker_close(&x);
                reconnect_at = now + backoff;
                backoff = backoff * 2 < 32000 ? backoff * 2 : 32000;
            }
            if (!x.front && now >= reconnect_at && !*w->o.stop) {
                svc_broker_connect(&x);
                last_heard = now;
            }
            if (x.front && now - x.last_send >= hb)
                svc_send_cmd(&x, SVC_W_HEARTBEAT);
        }
    }
    if (x.brokered && x.front)
        svc_send_cmd(&x, SVC_W_DISCONNECT);
    /* The last replies (and the broker's DISCONNECT) may still be queued
     * in the socket: closed with no linger they would be dropped, and a
     * client whose request was drained would never hear. Up to 2 s to
     * flush them; a client that went away does not hold the stop longer. */
    if (x.front) {
        int flush_ms = 2000;
        zmq_setsockopt(x.front, ZMQ_LINGER, &flush_ms, sizeof flush_ms);
    }
    svc_logf(w, "stopped");

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
            svc_req_free(d->r);
            free(d);
        }
        zmq_close(pull);
    }
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
    svc_broker_close(&x);
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
