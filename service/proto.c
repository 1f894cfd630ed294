/*
 * The framing shared by the worker, the broker and the client: receiving
 * and sending multipart messages as arrays of zmq_msg_t, building the JSON
 * body of an error reply, and the monotonic clock every deadline is kept
 * on. Frames are moved, not copied, wherever a message passes through.
 */
#include "service/svc_impl.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double svc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int grow(svc_msg *m)
{
    if (m->n < m->cap)
        return 0;
    int cap = m->cap ? 2 * m->cap : 8;
    zmq_msg_t *f = realloc(m->f, (size_t)cap * sizeof *f);
    if (!f)
        return -1;
    m->f = f;
    m->cap = cap;
    return 0;
}

void svc_msg_close(svc_msg *m)
{
    for (int i = 0; i < m->n; i++)
        zmq_msg_close(&m->f[i]);
    free(m->f);
    *m = (svc_msg){0};
}

int svc_msg_recv(svc_msg *m, void *sock, int flags, int max)
{
    *m = (svc_msg){0};
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int first = m->n == 0 && m->dropped == 0;
        int rc;
        /* Once the first part is in, the rest of the message is there too;
         * a signal must not cut it in two, or its tail would be read as a
         * message of its own. */
        while ((rc = zmq_msg_recv(&part, sock, first ? flags : 0)) < 0 &&
               !first && errno == EINTR)
            ;
        if (rc < 0) {
            int e = errno;
            zmq_msg_close(&part);
            /* A message arrives whole or not at all, so a failure after the
             * first part means the context is going away. */
            svc_msg_close(m);
            errno = e;
            return -1;
        }
        int more = zmq_msg_more(&part);
        if (m->n >= max || grow(m) != 0) {
            zmq_msg_close(&part);
            m->dropped++;
        } else {
            m->f[m->n++] = part;
        }
        if (!more)
            return 0;
    }
}

int svc_msg_send(svc_msg *m, void *sock)
{
    int rc = 0;
    for (int i = 0; i < m->n; i++) {
        if (rc == 0 &&
            zmq_msg_send(&m->f[i], sock, i + 1 < m->n ? ZMQ_SNDMORE : 0) < 0)
            rc = -1;  /* the rest are closed below */
        else if (rc == 0)
            continue;  /* a sent message is owned by ZeroMQ */
        zmq_msg_close(&m->f[i]);
    }
    free(m->f);
    *m = (svc_msg){0};
    return rc;
}

int svc_msg_add(svc_msg *m, const void *data, size_t n)
{
    if (grow(m) != 0)
        return -1;
    if (zmq_msg_init_size(&m->f[m->n], n) != 0)
        return -1;
    if (n)
        memcpy(zmq_msg_data(&m->f[m->n]), data, n);
    m->n++;
    return 0;
}

int svc_msg_add_str(svc_msg *m, const char *s)
{
    return svc_msg_add(m, s, strlen(s));
}

int svc_msg_add_byte(svc_msg *m, unsigned char b)
{
    return svc_msg_add(m, &b, 1);
}

int svc_msg_add_move(svc_msg *m, zmq_msg_t *src)
{
    if (grow(m) != 0)
        return -1;
    zmq_msg_init(&m->f[m->n]);
    zmq_msg_move(&m->f[m->n], src);
    m->n++;
    return 0;
}

int svc_msg_add_frame(svc_msg *to, svc_msg *from, int i)
{
    return svc_msg_add_move(to, &from->f[i]);
}

int svc_frame_is(const svc_msg *m, int i, const char *s)
{
    size_t n = strlen(s);
    return i < m->n && svc_size(m, i) == n && memcmp(svc_data(m, i), s, n) == 0;
}

char *svc_error_body(const char *code, const char *message, int index,
                     const char *field)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (!e)  /* a message that is not valid UTF-8 */
        e = json_pack("{s:s, s:s}", "code", code, "message", code);
    if (!e)
        return NULL;
    if (index >= 0)
        json_object_set_new(e, "index", json_integer(index));
    if (field)
        json_object_set_new(e, "field", json_string(field));
    json_t *o = json_pack("{s:b, s:o}", "ok", 0, "error", e);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

int svc_key_valid(const char *z85)
{
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        ".-:+=^!/*?&<>()[]{}@%$#";
    if (!z85 || strlen(z85) != 40)
        return 0;
    for (int i = 0; i < 40; i++)
        if (!strchr(alphabet, z85[i]))
            return 0;
    return 1;
}

char *svc_health_body(const char *status, int queue_depth)
{
    json_t *o = json_pack("{s:b, s:s, s:s, s:i}", "ok", 1, "op", "health",
                          "status", status, "queue_depth", queue_depth);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

/* ---- keys: byte strings in JSON ---- */

/* Standard base64 (RFC 4648), written here: neither jansson nor the
 * libraries the service links have it, and it is a few lines. */
static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct json_t *svc_key_json(const char *key)
{
    json_t *s = json_string(key);
    if (s)
        return s;
    size_t n = strlen(key), o = 0;
    char *t = malloc((n + 2) / 3 * 4 + 1);
    if (!t)
        return NULL;
    const unsigned char *p = (const unsigned char *)key;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 |
                     (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        t[o++] = b64[v >> 18 & 63];
        t[o++] = b64[v >> 12 & 63];
        t[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        t[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    t[o] = '\0';
    json_t *obj = json_pack("{s:s}", "base64", t);
    free(t);
    return obj;
}

static int b64_value(int c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

char *svc_key_parse(struct json_t *v, size_t max)
{
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        const char *s = json_string_value(v);
        if (n == 0 || n > max || memchr(s, 0, n))
            return NULL;
        return strdup(s);
    }
    json_t *e = json_is_object(v) && json_object_size(v) == 1
                    ? json_object_get(v, "base64")
                    : NULL;
    const char *s = json_string_value(e);
    size_t n = s ? strlen(s) : 0;
    /* At most max bytes decoded (padding takes up to 2 off n / 4 * 3). */
    if (!s || n == 0 || n % 4 != 0 || n / 4 * 3 - 2 > max)
        return NULL;
    char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int a = b64_value(s[i]), b = b64_value(s[i + 1]);
        int pad2 = s[i + 2] == '=', pad3 = s[i + 3] == '=';
        int c = pad2 ? 0 : b64_value(s[i + 2]);
        int d = pad3 ? 0 : b64_value(s[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0 || (pad2 && !pad3) ||
            ((pad2 || pad3) && i + 4 != n)) {
            free(out);
            return NULL;
        }
        unsigned x = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 |
                     (unsigned)d;
        out[o++] = (char)(x >> 16);
        if (!pad2)
            out[o++] = (char)(x >> 8 & 255);
        if (!pad3)
            out[o++] = (char)(x & 255);
    }
    out[o] = '\0';
    if (o == 0 || o > max || memchr(out, 0, o)) {
        free(out);
        return NULL;
    }
    return out;
}

void svc_log(vit_log_fn log, void *ud, const char *fmt, ...)
{
    if (!log)
        return;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(ud, line);
}
