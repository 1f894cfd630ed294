/*
 * The client library (service/client.h): a DEALER socket per try, requests
 * framed as PROTOCOL.md section 2 says, replies matched to requests by
 * their id, and the Lazy Pirate retry loop. Each client owns its ZeroMQ
 * context so that freeing it leaves nothing behind.
 */
#include "service/client.h"
#include "service/svc_impl.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vit_client {
    void *ctx;
    void *sock;
    char *endpoint;
    vit_client_options o;
    char service[256];
    char server_key[41], public_key[41], secret_key[41];
    unsigned long long next_id;
};

vit_client_options vit_client_options_default(void)
{
    return (vit_client_options){.timeout_ms = 5000, .retries = 2};
}

static void close_sock(vit_client *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
}

static vit_status open_sock(vit_client *c, vit_error *err)
{
    close_sock(c);
    void *s = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!s)
        return vit__fail(err, VIT_E_IO, "zmq_socket: %s", zmq_strerror(errno));
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (c->server_key[0]) {
        vit_status st = svc_curve_client(s, c->server_key, c->public_key,
                                         c->secret_key, err);
        if (st != VIT_OK) {
            zmq_close(s);
            return st;
        }
    }
    if (zmq_connect(s, c->endpoint) != 0) {
        int e = errno;
        zmq_close(s);
        return vit__fail(err, VIT_E_ARG, "cannot connect to %s: %s",
                         c->endpoint, zmq_strerror(e));
    }
    c->sock = s;
    return VIT_OK;
}

vit_status vit_client_new(const char *endpoint, const vit_client_options *opt,
                          vit_client **out, vit_error *err)
{
    vit_client_options o = opt ? *opt : vit_client_options_default();
    if (!endpoint || o.timeout_ms < 1 || o.retries < 0)
        return vit__fail(err, VIT_E_ARG,
                         "no endpoint, or a timeout below 1 ms");
    if (o.service && strlen(o.service) > SVC_MAX_ID)
        return vit__fail(err, VIT_E_ARG, "the service name is over %d bytes",
                         SVC_MAX_ID);
    vit_client *c = calloc(1, sizeof *c);
    if (!c || !(c->endpoint = strdup(endpoint))) {
        free(c);
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    }
    c->o = o;
    snprintf(c->service, sizeof c->service, "%s", o.service ? o.service : "");
    vit_status st = VIT_OK;
    if (o.curve_server_key) {
        if (!svc_key_valid(o.curve_server_key) ||
            (o.curve_public_key && !svc_key_valid(o.curve_public_key)) ||
            (o.curve_secret_key && !svc_key_valid(o.curve_secret_key)) ||
            !o.curve_public_key != !o.curve_secret_key) {
            st = vit__fail(err, VIT_E_ARG,
                           "a CURVE key is not 40 Z85 characters, "
                           "or only half a key pair was given");
            goto fail;
        }
        snprintf(c->server_key, 41, "%s", o.curve_server_key);
        if (o.curve_public_key) {
            snprintf(c->public_key, 41, "%s", o.curve_public_key);
            snprintf(c->secret_key, 41, "%s", o.curve_secret_key);
        } else if (zmq_curve_keypair(c->public_key, c->secret_key) != 0) {
            st = vit__fail(err, VIT_E_UNSUPPORTED,
                           "libzmq has no CURVE support");
            goto fail;
        }
    }
    c->next_id = 1;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        st = vit__fail(err, VIT_E_IO, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((st = open_sock(c, err)) != VIT_OK)
        goto fail;
    *out = c;
    return VIT_OK;
fail:
    vit_client_free(c);
    return st;
}

void vit_client_free(vit_client *c)
{
    if (!c)
        return;
    close_sock(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c);
}

void vit_reply_free(vit_reply *r)
{
    if (!r)
        return;
    svc_msg *m = r->priv_;
    if (m) {
        svc_msg_close(m);
        free(m);
    }
    free(r->body);
    free(r->service);
    free(r->data);
    memset(r, 0, sizeof *r);
}

static int send_request(vit_client *c, const char *rid, const char *header,
                        const vit_blob *frames, int n)
{
    svc_msg m = {0};
    int bad = svc_msg_add(&m, "", 0) | svc_msg_add_str(&m, SVC_CLIENT_PROTO) |
              svc_msg_add_byte(&m, SVC_C_REQUEST) |
              svc_msg_add_str(&m, c->service) | svc_msg_add_str(&m, rid) |
              svc_msg_add_str(&m, header);
    for (int i = 0; i < n && !bad; i++)
        bad |= svc_msg_add(&m, frames[i].data, frames[i].size);
    if (bad) {
        svc_msg_close(&m);
        return -1;
    }
    return svc_msg_send(&m, c->sock);
}

/* Turns a received message into a reply when it is the reply to `rid`:
 * returns 1 taken, 0 not ours (dropped), -1 out of memory. */
static int take_reply(svc_msg *m, const char *rid, vit_reply *out)
{
    if (m->n < 6 || svc_size(m, 0) != 0 ||
        !svc_frame_is(m, 1, SVC_CLIENT_PROTO) || svc_size(m, 2) != 1 ||
        svc_data(m, 2)[0] != SVC_C_FINAL || !svc_frame_is(m, 4, rid))
        return 0;
    vit_reply r = {0};
    r.body = malloc(svc_size(m, 5) + 1);
    r.service = malloc(svc_size(m, 3) + 1);
    r.n_data = m->n - 6;
    r.data = calloc((size_t)(r.n_data ? r.n_data : 1), sizeof *r.data);
    r.priv_ = malloc(sizeof(svc_msg));
    if (!r.body || !r.service || !r.data || !r.priv_) {
        free(r.priv_);
        r.priv_ = NULL;
        vit_reply_free(&r);
        return -1;
    }
    memcpy(r.body, svc_data(m, 5), svc_size(m, 5));
    r.body[svc_size(m, 5)] = '\0';
    memcpy(r.service, svc_data(m, 3), svc_size(m, 3));
    r.service[svc_size(m, 3)] = '\0';
    for (int i = 0; i < r.n_data; i++)
        r.data[i] = (vit_blob){svc_data(m, 6 + i), svc_size(m, 6 + i)};
    /* The data frames stay in the message, which the reply now owns. */
    *(svc_msg *)r.priv_ = *m;
    *m = (svc_msg){0};
    *out = r;
    return 1;
}

vit_status vit_client_call(vit_client *c, const char *header,
                           const vit_blob *frames, int n, vit_reply *out,
                           vit_error *err)
{
    if (!c || !header || n < 0 || (n > 0 && !frames))
        return vit__fail(err, VIT_E_ARG, "no client, header or frames");
    char rid[48];
    snprintf(rid, sizeof rid, "%ld-%llu", (long)getpid(), c->next_id++);
    vit_status st;
    for (int attempt = 0; attempt <= c->o.retries; attempt++) {
        if (!c->sock && (st = open_sock(c, err)) != VIT_OK)
            return st;
        if (send_request(c, rid, header, frames, n) != 0)
            return vit__fail(err, VIT_E_NOMEM, "cannot send: %s",
                             zmq_strerror(errno));
        double until = svc_now_ms() + c->o.timeout_ms;
        for (;;) {
            double left = until - svc_now_ms();
            if (left <= 0)
                break;
            zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
            int rc = zmq_poll(&it, 1, (long)left + 1);
            if (rc < 0 && errno == EINTR)
                return vit__fail(err, VIT_E_IO, "interrupted");
            if (rc <= 0)
                continue;
            svc_msg m;
            if (svc_msg_recv(&m, c->sock, ZMQ_DONTWAIT, 1 << 16) != 0)
                continue;
            int took = take_reply(&m, rid, out);
            svc_msg_close(&m);
            if (took < 0)
                return vit__fail(err, VIT_E_NOMEM, "out of memory");
            if (took)
                return VIT_OK;
        }
        /* Lazy Pirate: the old socket may hold a lost request; a new one
         * starts clean, and its new identity never sees the old reply. */
        close_sock(c);
    }
    return vit__fail(err, VIT_E_IO, "no reply from %s after %d tr%s of %d ms",
                     c->endpoint, c->o.retries + 1, c->o.retries ? "ies" : "y",
                     c->o.timeout_ms);
}

int vit_reply_error(const vit_reply *r, char code[32], char *msg,
                    size_t msg_size, int *index)
{
    json_t *o = json_loads(r->body ? r->body : "", 0, NULL);
    json_t *ok = json_object_get(o, "ok");
    int is_err = 1;
    const char *c = "internal", *m = "the reply is not valid JSON";
    int idx = -1;
    if (json_is_true(ok)) {
        is_err = 0;
    } else if (o) {
        json_t *e = json_object_get(o, "error");
        const char *s;
        m = "the reply has no error object";
        if ((s = json_string_value(json_object_get(e, "code"))))
            c = s;
        if ((s = json_string_value(json_object_get(e, "message"))))
            m = s;
        if (json_is_integer(json_object_get(e, "index")))
            idx = (int)json_integer_value(json_object_get(e, "index"));
    }
    if (is_err) {
        if (code)
            snprintf(code, 32, "%s", c);
        if (msg && msg_size)
            snprintf(msg, msg_size, "%s", m);
    }
    if (index)
        *index = is_err ? idx : -1;
    json_decref(o);
    return is_err;
}

struct json_t *vit_key_to_json(const char *key) { return svc_key_json(key); }

char *vit_key_from_json(struct json_t *v, size_t max)
{
    return svc_key_parse(v, max);
}
