/*
 * CURVE security: making a socket a CURVE server, and the ZAP handler
 * (ZeroMQ RFC 27) that decides who may connect. libzmq's CURVE server on
 * its own admits any peer that knows the server's public key; with this
 * handler bound in the same context, every CURVE handshake of the context
 * is put to it, and it answers by the socket's ZAP domain: a domain with an
 * allow-list admits only the public keys listed in the files of its
 * directory, a domain without one admits any key, an unknown domain none.
 * A broker has two domains, its clients' (SVC_ZAP_CLIENTS) and its
 * workers' (SVC_ZAP_WORKERS), so a key allowed on one socket is not
 * allowed on the other. A key file is either CZMQ's zcert text (a line
 * `public-key = "<40 Z85 chars>"`) or just the 40 characters.
 */
#include "service/svc_impl.h"
#include "vit/fail.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[32];
    int any;             /* no allow-list: any key */
    uint8_t (*keys)[32];
    int n_keys;
} auth_domain;

struct svc_auth {
    void *rep;
    pthread_t th;
    volatile int stop;
    auth_domain d[SVC_AUTH_MAX_DOMAINS];
    int n;
};

/* Finds the public key in a key file's text; returns 0 and the Z85 key. */
static int key_from_text(const char *text, char z85[41])
{
    const char *p = strstr(text, "public-key");
    if (p) {
        p = strchr(p, '"');
        if (!p)
            return -1;
        p++;
    } else {
        p = text;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
    }
    memcpy(z85, p, 40);
    z85[40] = '\0';
    if (strlen(z85) != 40 || !svc_key_valid(z85))
        return -1;
    const char *q = p + 40;
    /* A bare key must be all the file holds (but whitespace). */
    if (!strstr(text, "public-key"))
        for (; *q; q++)
            if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t')
                return -1;
    return 0;
}

static vit_status load_keys(auth_domain *a, const char *dir, vit_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return vit__fail(err, VIT_E_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096], text[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        char z85[41];
        if (key_from_text(text, z85) != 0)
            continue;  /* not a key file (a README, a secret key) */
        void *k = realloc(a->keys, (size_t)(a->n_keys + 1) * 32);
        if (!k) {
            closedir(d);
            return vit__fail(err, VIT_E_NOMEM, "out of memory");
        }
        a->keys = k;
        zmq_z85_decode(a->keys[a->n_keys++], z85);
    }
    closedir(d);
    /* Keys are read once, at start: an empty list would admit nobody,
     * ever, which is never what was meant. */
    if (a->n_keys == 0)
        return vit__fail(err, VIT_E_ARG,
                         "%s: no public key found (CZMQ certificate files, "
                         "or files of the 40 Z85 characters of a key)",
                         dir);
    return VIT_OK;
}

/* ZAP request frames: version, request id, domain, address, identity,
 * mechanism, credentials (the client's 32-byte public key). */
static int allowed(const svc_auth *a, const svc_msg *m)
{
    if (m->n < 7 || !svc_frame_is(m, 0, "1.0") ||
        !svc_frame_is(m, 5, "CURVE") || svc_size(m, 6) != 32)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const auth_domain *d = &a->d[i];
        if (!svc_frame_is(m, 2, d->name))
            continue;
        if (d->any)
            return 1;
        for (int k = 0; k < d->n_keys; k++)
            if (memcmp(d->keys[k], svc_data(m, 6), 32) == 0)
                return 1;
        return 0;
    }
    return 0;
}

static void *auth_main(void *arg)
{
    svc_auth *a = arg;
    while (!a->stop) {
        zmq_pollitem_t it = {a->rep, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        svc_msg m;
        if (svc_msg_recv(&m, a->rep, ZMQ_DONTWAIT, 16) != 0)
            continue;
        int ok = allowed(a, &m);
        svc_msg r = {0};
        int bad = svc_msg_add_str(&r, "1.0");
        bad |= m.n > 1 ? svc_msg_add(&r, svc_data(&m, 1), svc_size(&m, 1))
                       : svc_msg_add(&r, "", 0);
        bad |= svc_msg_add_str(&r, ok ? "200" : "400");
        bad |= svc_msg_add_str(&r, ok ? "OK" : "key not allowed");
        bad |= svc_msg_add(&r, "", 0) | svc_msg_add(&r, "", 0);
        if (bad)
            svc_msg_close(&r);
        else
            svc_msg_send(&r, a->rep);
        svc_msg_close(&m);
    }
    return NULL;
}

static void auth_free(svc_auth *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->d[i].keys);
    free(a);
}

vit_status svc_auth_start(void *ctx, const svc_auth_domain *domains, int n,
                          svc_auth **out, vit_error *err)
{
    if (n < 1 || n > SVC_AUTH_MAX_DOMAINS)
        return vit__fail(err, VIT_E_ARG, "bad ZAP domains");
    svc_auth *a = calloc(1, sizeof *a);
    if (!a)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    for (; a->n < n; a->n++) {
        auth_domain *d = &a->d[a->n];
        snprintf(d->name, sizeof d->name, "%s", domains[a->n].domain);
        d->any = !domains[a->n].dir;
        vit_status st = d->any ? VIT_OK : load_keys(d, domains[a->n].dir, err);
        if (st != VIT_OK) {
            a->n++;
            auth_free(a);
            return st;
        }
    }
    int zero = 0;
    a->rep = zmq_socket(ctx, ZMQ_REP);
    if (!a->rep) {
        auth_free(a);
        return vit__fail(err, VIT_E_IO, "zap socket: %s", zmq_strerror(errno));
    }
    zmq_setsockopt(a->rep, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(a->rep, "inproc://zeromq.zap.01") != 0 ||
        pthread_create(&a->th, NULL, auth_main, a) != 0) {
        zmq_close(a->rep);
        auth_free(a);
        return vit__fail(err, VIT_E_IO, "cannot start the ZAP handler");
    }
    *out = a;
    return VIT_OK;
}

void svc_auth_stop(svc_auth *a)
{
    if (!a)
        return;
    a->stop = 1;
    pthread_join(a->th, NULL);
    zmq_close(a->rep);
    auth_free(a);
}

vit_status svc_curve_server(void *sock, const char *secret_z85,
                            const char *domain, vit_error *err)
{
    int one = 1;
    char key[41];
    snprintf(key, sizeof key, "%s", secret_z85);
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, key, 41) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0)
        return vit__fail(err, VIT_E_ARG, "cannot set up CURVE: %s",
                         zmq_strerror(errno));
    return VIT_OK;
}

vit_status svc_curve_client(void *sock, const char *server, const char *pub,
                            const char *secret, vit_error *err)
{
    char k[3][41];
    snprintf(k[0], 41, "%s", server);
    snprintf(k[1], 41, "%s", pub);
    snprintf(k[2], 41, "%s", secret);
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k[0], 41) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k[1], 41) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k[2], 41) != 0)
        return vit__fail(err, VIT_E_ARG, "CURVE keys refused: %s",
                         zmq_strerror(errno));
    return VIT_OK;
}
