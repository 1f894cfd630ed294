/*
 * The broker, `vit broker`: clients connect to its frontend, workers to its
 * backend, and it routes each request to a worker of the model the request
 * names (PROTOCOL.md section 7). It follows the Majordomo broker's shape
 * with two changes that vit needs: a worker announces a credit (how many
 * requests it takes at once, so that it can batch them), and the broker
 * keeps every request until its reply has been forwarded, so that the work
 * held by a worker that dies (silent for three heartbeats) or leaves is sent
 * to another worker; a reply from a worker the broker has given up on is
 * dropped, so no client gets two replies. One thread; a request's frames
 * are shared with zmq_msg_copy, not copied, when they are (re)sent.
 * Requests to the reserved service `mmi.broker` (Majordomo's MMI names)
 * are answered by the broker itself (broker_mmi.c): what it serves, with
 * how many workers and how much queued. CURVE may secure both sockets,
 * each with its own allow-list (ZAP domain): clients on the frontend,
 * workers on the backend.
 */
#include "service/svc_broker.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A line for the log (svc_log). */
#define blog(b, ...) svc_log((b)->o.log, (b)->o.log_ud, __VA_ARGS__)

/* ---- lists ---- */

static void list_remove(breq_list *l, breq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static void list_push_back(breq_list *l, breq *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_push_front(breq_list *l, breq *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->n++;
}

static void breq_free(broker *b, breq *r)
{
    b->held_bytes -= r->cost;
    svc_msg_close(&r->frames);
    free(r);
}

/* ---- sending ---- */

/* A reply to a client: [client, "", VITC01, FINAL, service, rid, body,
 * data ...]; the tail frames (from `from`, index >= first) are moved. */
void svc_broker_to_client(broker *b, const unsigned char *client,
                          size_t client_len, const char *service,
                          const void *rid, size_t rid_len, svc_msg *tail,
                          int first, const char *body)
{
    svc_msg m = {0};
    int bad = svc_msg_add(&m, client, client_len) | svc_msg_add(&m, "", 0) |
              svc_msg_add_str(&m, SVC_CLIENT_PROTO) |
              svc_msg_add_byte(&m, SVC_C_FINAL) |
              svc_msg_add_str(&m, service) | svc_msg_add(&m, rid, rid_len);
    if (body)
        bad |= svc_msg_add_str(&m, body);
    for (int i = first; tail && i < tail->n && !bad; i++)
        bad |= svc_msg_add_frame(&m, tail, i);
    if (bad)
        svc_msg_close(&m);
    else
        svc_msg_send(&m, b->front);
}

void svc_broker_refuse_field(broker *b, const unsigned char *client,
                             size_t client_len, const void *rid,
                             size_t rid_len, const char *code,
                             const char *field, const char *msg)
{
    char *body = svc_error_body(code, msg, -1, field);
    if (body)
        svc_broker_to_client(b, client, client_len, "", rid, rid_len, NULL, 0,
                             body);
    free(body);
    b->refused++;
}

void svc_broker_refuse(broker *b, const unsigned char *client,
                       size_t client_len, const void *rid, size_t rid_len,
                       const char *code, const char *msg)
{
    svc_broker_refuse_field(b, client, client_len, rid, rid_len, code, NULL,
                            msg);
}

static void to_worker_cmd(broker *b, bworker *w, unsigned char cmd)
{
    svc_msg m = {0};
    if (svc_msg_add(&m, w->id, w->id_len) | svc_msg_add(&m, "", 0) |
        svc_msg_add_str(&m, SVC_WORKER_PROTO) | svc_msg_add_byte(&m, cmd))
        svc_msg_close(&m);
    else
        svc_msg_send(&m, b->back);
    w->last_sent = svc_now_ms();
}

/* Sends request `r` to worker `w`, keeping its frames for a re-send. */
static int send_request(broker *b, bworker *w, breq *r)
{
    svc_msg m = {0};
    int bad = svc_msg_add(&m, w->id, w->id_len) | svc_msg_add(&m, "", 0) |
              svc_msg_add_str(&m, SVC_WORKER_PROTO) |
              svc_msg_add_byte(&m, SVC_W_REQUEST) |
              svc_msg_add(&m, r->client, r->client_len) |
              svc_msg_add(&m, "", 0);
    for (int i = 0; i < r->frames.n && !bad; i++) {
        zmq_msg_t c;
        zmq_msg_init(&c);
        bad |= zmq_msg_copy(&c, &r->frames.f[i]) != 0 ||
               svc_msg_add_move(&m, &c) != 0;
        zmq_msg_close(&c);
    }
    if (bad) {
        svc_msg_close(&m);
        return -1;
    }
    svc_msg_send(&m, b->back);
    w->last_sent = svc_now_ms();
    return 0;
}

/* ---- workers ---- */

static bworker *find_worker(broker *b, const unsigned char *id, size_t n)
{
    for (bworker *w = b->workers; w; w = w->next)
        if (w->id_len == n && memcmp(w->id, id, n) == 0)
            return w;
    return NULL;
}

/* Drops a worker; the requests it held go back to the front of the queue,
 * in their order, to be sent to another worker. */
static void drop_worker(broker *b, bworker *w, const char *why)
{
    int n = w->held.n;
    while (w->held.tail) {
        breq *r = w->held.tail;
        list_remove(&w->held, r);
        r->w = NULL;
        list_push_front(&b->queue, r);
        b->resent++;
    }
    for (bworker **p = &b->workers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    blog(b, "worker for '%s' %s; %d request%s queued again", w->service, why,
         n, n == 1 ? "" : "s");
    free(w);
}

static int service_known(broker *b, const char *service)
{
    for (bworker *w = b->workers; w; w = w->next)
        if (!*service || strcmp(w->service, service) == 0)
            return 1;
    return 0;
}

/* Sends queued requests to workers with credit, least loaded first. */
static void dispatch(broker *b)
{
    for (breq *r = b->queue.head, *nx; r; r = nx) {
        nx = r->next;
        bworker *best = NULL;
        for (bworker *w = b->workers; w; w = w->next) {
            if (w->draining || (w->held.n >= w->credit && !r->control))
                continue;
            if (*r->service && strcmp(w->service, r->service) != 0)
                continue;
            if (!best || w->held.n * best->credit < best->held.n * w->credit)
                best = w;
        }
        if (!best)
            continue;
        if (send_request(b, best, r) != 0)
            continue;
        list_remove(&b->queue, r);
        list_push_back(&best->held, r);
        r->w = best;
        r->sends++;
    }
}

static int is_shutting_down(const svc_msg *m, int i)
{
    if (i >= m->n)
        return 0;
    json_t *o = json_loadb((const char *)svc_data(m, i), svc_size(m, i), 0,
                           NULL);
    const char *code = json_string_value(
        json_object_get(json_object_get(o, "error"), "code"));
    int yes = code && strcmp(code, "shutting_down") == 0;
    json_decref(o);
    return yes;
}

/* [wid, "", VITW01, cmd, ...] on the backend. */
static void on_backend(broker *b, svc_msg *m)
{
    if (m->n < 4 || svc_size(m, 0) > SVC_MAX_ID || svc_size(m, 1) != 0 ||
        !svc_frame_is(m, 2, SVC_WORKER_PROTO) || svc_size(m, 3) != 1)
        return;  /* not a vit worker; nothing sensible to answer */
    const unsigned char *id = svc_data(m, 0);
    size_t id_len = svc_size(m, 0);
    unsigned char cmd = svc_data(m, 3)[0];
    bworker *w = find_worker(b, id, id_len);
    double now = svc_now_ms();

    if (cmd == SVC_W_READY) {
        if (w)
            drop_worker(b, w, "announced itself again");
        /* A READY the broker cannot honour is refused, the peer told to
         * disconnect and the reason logged: taking it with made-up values
         * (credit 1 for a credit of -1) would hide the peer's bug. */
        const char *why = NULL;
        json_int_t credit = 1, hb = (json_int_t)b->o.heartbeat_ms;
        if (m->n < 5 || svc_size(m, 4) == 0 || svc_size(m, 4) > SVC_MAX_ID)
            why = "its service name is missing or over 255 bytes";
        else if (memchr(svc_data(m, 4), 0, svc_size(m, 4)))
            why = "its service name holds a NUL byte";
        else if (svc_size(m, 4) >= strlen(SVC_MMI_PREFIX) &&
                 memcmp(svc_data(m, 4), SVC_MMI_PREFIX,
                        strlen(SVC_MMI_PREFIX)) == 0)
            why = "its service name is one of the broker's own (mmi.)";
        if (!why && m->n > 5) {
            json_t *o = json_loadb((const char *)svc_data(m, 5),
                                   svc_size(m, 5), 0, NULL);
            json_t *c = json_object_get(o, "credit");
            json_t *h = json_object_get(o, "heartbeat_ms");
            if (!json_is_object(o))
                why = "its settings are not a JSON object";
            else if (c && (!json_is_integer(c) || json_integer_value(c) < 1 ||
                           json_integer_value(c) > 100000))
                why = "its credit is not an integer from 1 to 100000";
            else if (h && (!json_is_integer(h) || json_integer_value(h) < 10 ||
                           json_integer_value(h) > 3600000))
                why = "its heartbeat_ms is not an integer from 10 to "
                      "3600000";
            if (!why && c)
                credit = json_integer_value(c);
            if (!why && h)
                hb = json_integer_value(h);
            json_decref(o);
        }
        if (why) {
            blog(b, "refused a worker's READY: %s", why);
            bworker tmp = {.id_len = id_len};
            memcpy(tmp.id, id, id_len);
            to_worker_cmd(b, &tmp, SVC_W_DISCONNECT);
            return;
        }
        w = calloc(1, sizeof *w);
        if (!w)
            return;
        memcpy(w->id, id, id_len);
        w->id_len = id_len;
        memcpy(w->service, svc_data(m, 4), svc_size(m, 4));
        w->service[svc_size(m, 4)] = '\0';
        w->credit = (int)credit;
        w->hb = (double)hb;
        w->expiry = now + 3 * (w->hb > b->o.heartbeat_ms ? w->hb
                                                          : b->o.heartbeat_ms);
        w->last_sent = now;
        w->next = b->workers;
        b->workers = w;
        blog(b, "worker for '%s' ready, credit %d", w->service, w->credit);
        return;
    }
    if (!w) {
        /* Unknown (the broker restarted, or gave up on it): tell it to
         * start a new session. */
        if (cmd != SVC_W_DISCONNECT) {
            bworker tmp = {.id_len = id_len};
            memcpy(tmp.id, id, id_len);
            to_worker_cmd(b, &tmp, SVC_W_DISCONNECT);
        }
        return;
    }
    w->expiry = now + 3 * (w->hb > b->o.heartbeat_ms ? w->hb
                                                      : b->o.heartbeat_ms);
    if (cmd == SVC_W_DISCONNECT) {
        drop_worker(b, w, "left");
        return;
    }
    if (cmd != SVC_W_FINAL || m->n < 8 || svc_size(m, 5) != 0)
        return;  /* HEARTBEAT, or a malformed FINAL */
    /* [wid, "", VITW01, FINAL, client, "", rid, body, data ...] */
    const unsigned char *client = svc_data(m, 4);
    size_t client_len = svc_size(m, 4);
    breq *r = w->held.head;
    for (; r; r = r->next)
        if (r->client_len == client_len &&
            memcmp(r->client, client, client_len) == 0 &&
            r->frames.n > 0 && svc_size(m, 6) == svc_size(&r->frames, 0) &&
            memcmp(svc_data(m, 6), svc_data(&r->frames, 0),
                   svc_size(m, 6)) == 0)
            break;
    if (!r)
        return;  /* not held (answered already): never a second reply */
    list_remove(&w->held, r);
    r->w = NULL;
    if (is_shutting_down(m, 7)) {
        /* The worker is draining: the request goes to another. */
        w->draining = 1;
        list_push_front(&b->queue, r);
        b->resent++;
        return;
    }
    svc_broker_to_client(b, r->client, r->client_len, w->service,
                         svc_data(m, 6), svc_size(m, 6), m, 7, NULL);
    b->forwarded++;
    breq_free(b, r);
}

/* [client, "", VITC01, REQUEST, service, rid, header, data ...]. */
static void on_frontend(broker *b, svc_msg *m)
{
    if (m->n < 1 || svc_size(m, 0) > SVC_MAX_ID)
        return;
    b->received++;
    const unsigned char *client = svc_data(m, 0);
    size_t client_len = svc_size(m, 0);
    const void *rid = "";
    size_t rid_len = 0;
    if (m->n > 5 && svc_size(m, 5) <= SVC_MAX_ID) {
        rid = svc_data(m, 5);
        rid_len = svc_size(m, 5);
    }
    if (m->n < 7 || svc_size(m, 1) != 0 ||
        !svc_frame_is(m, 2, SVC_CLIENT_PROTO) || svc_size(m, 3) != 1 ||
        svc_data(m, 3)[0] != SVC_C_REQUEST) {
        svc_broker_refuse(
            b, client, client_len, rid, rid_len, "bad_request",
            "expected an empty delimiter frame, 'VITC01', the command "
            "0x01, a service, a request id and a header");
        return;
    }
    if (rid_len == 0) {
        svc_broker_refuse(b, client, client_len, "", 0, "bad_request",
                          "the request id must be 1 to 255 bytes");
        return;
    }
    /* Names are compared whole, as the bytes they are: one holding a NUL
     * could only ever be cut short, and so routed to another model. */
    if (svc_size(m, 4) > SVC_MAX_ID ||
        memchr(svc_data(m, 4), 0, svc_size(m, 4))) {
        svc_broker_refuse(b, client, client_len, rid, rid_len, "bad_request",
                          svc_size(m, 4) > SVC_MAX_ID
                              ? "the service name must be at most 255 bytes"
                              : "the service name holds a NUL byte");
        return;
    }
    if (svc_size(m, 4) >= strlen(SVC_MMI_PREFIX) &&
        memcmp(svc_data(m, 4), SVC_MMI_PREFIX, strlen(SVC_MMI_PREFIX)) == 0) {
        svc_broker_mmi(b, m, client, client_len, rid, rid_len);
        return;
    }
    if (b->queue.n >= b->o.max_queue) {
        svc_broker_refuse(b, client, client_len, rid, rid_len, "overloaded",
                          "the broker's queue is full; try again later");
        return;
    }
    breq *r = calloc(1, sizeof *r);
    if (!r) {
        svc_broker_refuse(b, client, client_len, rid, rid_len, "internal",
                          "out of memory");
        return;
    }
    memcpy(r->client, client, client_len);
    r->client_len = client_len;
    memcpy(r->service, svc_data(m, 4), svc_size(m, 4));
    r->service[svc_size(m, 4)] = '\0';
    /* The deadline, when the header says one; the worker checks the rest
     * of the header. */
    double deadline = b->o.deadline_ms;
    json_t *h = json_loadb((const char *)svc_data(m, 6), svc_size(m, 6), 0,
                           NULL);
    json_t *d = json_object_get(h, "deadline_ms");
    if (json_is_integer(d) && json_integer_value(d) > 0)
        deadline = (double)json_integer_value(d);
    const char *op = json_string_value(json_object_get(h, "op"));
    r->control = op && (strcmp(op, "health") == 0 ||
                        strcmp(op, "info") == 0 || strcmp(op, "metrics") == 0);
    json_decref(h);
    r->t_recv = svc_now_ms();
    r->deadline = r->t_recv + deadline;
    size_t cost = 0;
    for (int i = 5; i < m->n; i++)
        cost += svc_size(m, i);
    if (b->held_bytes > 0 && b->held_bytes + cost > b->o.max_queue_bytes) {
        free(r);
        svc_broker_refuse(
            b, client, client_len, rid, rid_len, "overloaded",
            "the broker holds too many bytes of work; try again later");
        return;
    }
    for (int i = 5; i < m->n; i++)
        if (svc_msg_add_frame(&r->frames, m, i) != 0) {
            svc_msg_close(&r->frames);
            free(r);
            svc_broker_refuse(b, client, client_len, rid, rid_len, "internal",
                              "out of memory");
            return;
        }
    r->cost = cost;
    b->held_bytes += cost;
    list_push_back(&b->queue, r);
}

/* Answers queued requests whose deadline passed; drops silent workers and
 * heartbeats the others. */
static void timers(broker *b)
{
    double now = svc_now_ms();
    for (bworker *w = b->workers, *nx; w; w = nx) {
        nx = w->next;
        if (now > w->expiry)
            drop_worker(b, w, "is silent; dropped");
        else if (now - w->last_sent >= b->o.heartbeat_ms)
            to_worker_cmd(b, w, SVC_W_HEARTBEAT);
    }
    for (breq *r = b->queue.head, *nx; r; r = nx) {
        nx = r->next;
        /* A request for a model no worker serves waits long enough for
         * restarting workers to come back (three heartbeats, at least 2
         * s), not its whole deadline. */
        int known = service_known(b, r->service);
        double grace = 3.0 * b->o.heartbeat_ms;
        if (grace < 2000)
            grace = 2000;
        if (now <= r->deadline && (known || now - r->t_recv <= grace))
            continue;
        list_remove(&b->queue, r);
        char msg[400];
        snprintf(msg, sizeof msg,
                 known ? "the deadline passed while the request waited for "
                         "a worker"
                       : "no worker serves '%s'",
                 r->service);
        svc_broker_refuse(b, r->client, r->client_len, svc_data(&r->frames, 0),
                          svc_size(&r->frames, 0),
                          known ? "deadline_exceeded" : "unavailable", msg);
        b->expired++;
        breq_free(b, r);
    }
}

vit_broker_options vit_broker_options_default(void)
{
    return (vit_broker_options){
        .heartbeat_ms = 1000,
        .deadline_ms = 30000,
        .max_request_bytes = (size_t)64 << 20,
        .max_queue = 10000,
        .max_queue_bytes = (size_t)1 << 30,
    };
}

/* The options' limits and keys, before anything is started. */
static vit_status check_opts(const vit_broker_options *opt, vit_error *err)
{
    if (!opt->frontend || !opt->backend || opt->heartbeat_ms < 10 ||
        opt->deadline_ms < 1 || opt->max_queue < 1 ||
        opt->max_queue_bytes < 1 || opt->max_request_bytes < 1)
        return vit__fail(err, VIT_E_ARG,
                         "the broker needs a frontend and a backend, and "
                         "positive limits");
    const char *back_key = opt->backend_curve_secret_key
                               ? opt->backend_curve_secret_key
                               : opt->curve_secret_key;
    const char *why =
        opt->allow_keys_dir && !opt->curve_secret_key
            ? "allowed client keys need a CURVE secret key"
        : opt->backend_curve_secret_key && !opt->allow_worker_keys_dir
            ? "a CURVE key for the backend goes with allowed worker keys"
        : opt->allow_worker_keys_dir && !back_key
            ? "allowed worker keys need a CURVE secret key"
        : (opt->curve_secret_key && !svc_key_valid(opt->curve_secret_key)) ||
                (opt->backend_curve_secret_key &&
                 !svc_key_valid(opt->backend_curve_secret_key))
            ? "a CURVE secret key is not 40 Z85 characters"
            : NULL;
    if (why)
        return vit__fail(err, VIT_E_ARG, "%s", why);
    return VIT_OK;
}

/* The frontend and the backend, with CURVE and their allow-lists where
 * the options ask for them, bound. */
static vit_status open_sockets(broker *b, void *ctx, svc_auth **auth,
                               vit_error *err)
{
    const vit_broker_options *opt = &b->o;
    const char *back_key = opt->backend_curve_secret_key
                               ? opt->backend_curve_secret_key
                               : opt->curve_secret_key;
    vit_status st;
    int zero = 0;
    int64_t maxmsg = (int64_t)opt->max_request_bytes + SVC_HARD_SLACK;
    b->front = zmq_socket(ctx, ZMQ_ROUTER);
    b->back = zmq_socket(ctx, ZMQ_ROUTER);
    zmq_setsockopt(b->front, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b->back, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b->front, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    /* Once a ZAP handler runs, it answers for every CURVE socket of the
     * context: a frontend without an allow-list is given a domain that
     * admits any client. */
    svc_auth_domain dom[2];
    int n_dom = 0;
    if (opt->allow_keys_dir ||
        (opt->curve_secret_key && opt->allow_worker_keys_dir))
        dom[n_dom++] = (svc_auth_domain){SVC_ZAP_CLIENTS, opt->allow_keys_dir};
    if (opt->allow_worker_keys_dir)
        dom[n_dom++] =
            (svc_auth_domain){SVC_ZAP_WORKERS, opt->allow_worker_keys_dir};
    if (n_dom && (st = svc_auth_start(ctx, dom, n_dom, auth, err)) != VIT_OK)
        return st;
    if (opt->curve_secret_key &&
        (st = svc_curve_server(b->front, opt->curve_secret_key,
                               SVC_ZAP_CLIENTS, err)) != VIT_OK)
        return st;
    if (opt->allow_worker_keys_dir &&
        (st = svc_curve_server(b->back, back_key, SVC_ZAP_WORKERS, err)) !=
            VIT_OK)
        return st;
    if (zmq_bind(b->front, opt->frontend) != 0 ||
        zmq_bind(b->back, opt->backend) != 0)
        return vit__fail(err, VIT_E_IO, "cannot bind %s / %s: %s",
                         opt->frontend, opt->backend, zmq_strerror(errno));
    blog(b, "clients on %s%s, workers on %s%s", opt->frontend,
         !opt->curve_secret_key ? ""
         : opt->allow_keys_dir  ? " (CURVE, listed keys)"
                                : " (CURVE)",
         opt->backend, opt->allow_worker_keys_dir ? " (CURVE, listed keys)"
                                                  : "");
    return VIT_OK;
}

/* Until the stop flag is set: the messages of both sockets, the timers,
 * and the queue handed to workers with credit. */
static vit_status run(broker *b, vit_error *err)
{
    double next_timers = 0;
    while (!*b->o.stop) {
        zmq_pollitem_t it[2] = {{b->back, 0, ZMQ_POLLIN, 0},
                                {b->front, 0, ZMQ_POLLIN, 0}};
        long timeout = b->o.heartbeat_ms < 100 ? b->o.heartbeat_ms : 100;
        int rc = zmq_poll(it, 2, timeout);
        if (rc < 0 && errno != EINTR)
            return vit__fail(err, VIT_E_IO, "zmq_poll: %s",
                             zmq_strerror(errno));
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN))
            for (int k = 0; k < 1024; k++) {
                svc_msg m;
                if (svc_msg_recv(&m, b->back, ZMQ_DONTWAIT, 1 << 16) != 0)
                    break;
                on_backend(b, &m);
                svc_msg_close(&m);
            }
        if (rc > 0 && (it[1].revents & ZMQ_POLLIN))
            for (int k = 0; k < 1024; k++) {
                svc_msg m;
                if (svc_msg_recv(&m, b->front, ZMQ_DONTWAIT, 1 << 16) != 0)
                    break;
                on_frontend(b, &m);
                svc_msg_close(&m);
            }
        double now = svc_now_ms();
        if (now >= next_timers) {
            timers(b);
            next_timers = now + 10;
        }
        dispatch(b);
    }
    return VIT_OK;
}

/* Every worker and request the broker still holds. */
static void broker_free(broker *b)
{
    while (b->workers) {
        bworker *w = b->workers;
        b->workers = w->next;
        while (w->held.head) {
            breq *r = w->held.head;
            list_remove(&w->held, r);
            breq_free(b, r);
        }
        free(w);
    }
    while (b->queue.head) {
        breq *r = b->queue.head;
        list_remove(&b->queue, r);
        breq_free(b, r);
    }
}

vit_status vit_broker(const vit_broker_options *opt, vit_error *err)
{
    vit_status st = check_opts(opt, err);
    if (st != VIT_OK)
        return st;
    static volatile sig_atomic_t never;
    broker b = {.o = *opt, .t_start = svc_now_ms()};
    if (!b.o.stop)
        b.o.stop = &never;
    svc_auth *auth = NULL;
    void *ctx = zmq_ctx_new();
    if (!ctx)
        return vit__fail(err, VIT_E_IO, "zmq_ctx_new: %s",
                         zmq_strerror(errno));
    if ((st = open_sockets(&b, ctx, &auth, err)) == VIT_OK) {
        /* A poll that failed ends the loop as a stop does. */
        st = run(&b, err);
        blog(&b,
             "stopped: %llu replies forwarded, %llu requests re-sent, %llu "
             "refused",
             (unsigned long long)b.forwarded, (unsigned long long)b.resent,
             (unsigned long long)b.refused);
        /* The last replies forwarded to clients (and commands to workers)
         * may still be queued in the sockets: closed with no linger they
         * would be dropped, and a client whose reply had reached the
         * broker would never hear. Up to 2 s to flush them, as the worker
         * has; a peer that went away does not hold the stop longer. */
        int flush_ms = 2000;
        zmq_setsockopt(b.front, ZMQ_LINGER, &flush_ms, sizeof flush_ms);
        zmq_setsockopt(b.back, ZMQ_LINGER, &flush_ms, sizeof flush_ms);
    }
    broker_free(&b);
    zmq_close(b.front);
    zmq_close(b.back);
    svc_auth_stop(auth);
    zmq_ctx_term(ctx);
    return st;
}
