/*
 * A worker's link to a broker (vit serve --connect): the DEALER session
 * and its READY, heartbeats and DISCONNECT, what the broker sends, and the
 * handshake events that say why a broker that refuses this worker is
 * silent.
 */
#include "service/svc_worker.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the broker connection ---- */

/* Opens a session with the broker: a new DEALER (with CURVE when the
 * worker has the broker's key), a monitor of its handshakes, and READY.
 * Returns 0, or -1 with errno. */
int svc_broker_connect(io *x)
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

void svc_broker_close(io *x)
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
int svc_handle_monitor(io *x)
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
        svc_logf(w, "the broker at %s refused this worker's CURVE key (ZAP "
                    "status %u): it admits only the workers whose public keys "
                    "are in its --allow-worker-keys", ep, (unsigned)val);
    else if (!w->o.curve_server_key)
        svc_logf(w, "the broker at %s %s: this worker needs the broker's "
                    "public key and a key pair of its own", ep,
                 mismatch ? "uses CURVE on its backend"
                          : "cut the handshake short; if it uses CURVE on its "
                            "backend");
    else if (mismatch)
        svc_logf(w, "the broker at %s does not use CURVE on its backend, and "
                    "this worker does", ep);
    else
        svc_logf(w, "the broker at %s cut the CURVE handshake short: its "
                    "backend has no CURVE, or its public key is not the one "
                    "this worker was given", ep);
    return 0;
}

void svc_send_cmd(io *x, unsigned char cmd)
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
int svc_handle_broker(io *x, svc_msg *m)
{
    if (m->n >= 2 && svc_size(m, 0) == 0 &&
        svc_frame_is(m, 1, SVC_CLIENT_PROTO)) {
        if (!x->wrong_told)
            svc_logf(
                x->w,
                "%s answers in the client protocol: it is a "
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
    svc_handle_request(x, m, 5, svc_data(m, 3), svc_size(m, 3));
    return 0;
}

int svc_broker_message(io *x, svc_msg *m, double now)
{
    int hr = svc_handle_broker(x, m);
    if (hr >= 0) {
        x->last_heard = now;
        x->backoff = x->w->o.heartbeat_ms;
    }
    if (hr > 0) {
        /* The broker does not know us (it restarted): start a new
         * session. */
        svc_broker_close(x);
        x->reconnect_at = now;
        return 1;
    }
    return 0;
}

void svc_broker_tick(io *x, double now)
{
    worker *w = x->w;
    double hb = w->o.heartbeat_ms;
    if (x->front && now - x->last_heard > 3 * hb) {
        svc_logf(w, "broker silent for %.0f ms; reconnecting",
                 now - x->last_heard);
        svc_broker_close(x);
        x->reconnect_at = now + x->backoff;
        x->backoff = x->backoff * 2 < 32000 ? x->backoff * 2 : 32000;
    }
    if (!x->front && now >= x->reconnect_at && !*w->o.stop) {
        svc_broker_connect(x);
        x->last_heard = now;
    }
    if (x->front && now - x->last_send >= hb)
        svc_send_cmd(x, SVC_W_HEARTBEAT);
}
