/*
 * Private declarations shared by the files of service/: the protocol's
 * constants, a multipart message held as an array of zmq_msg_t (so frames
 * move between sockets and threads without copies), the JSON bodies of
 * error replies, the monotonic clock, and the ZAP handler. Nothing here is
 * API; the prefix is svc_.
 */
#ifndef SVC_IMPL_H
#define SVC_IMPL_H

#include "service/service.h"
#include "vit/vit.h"

#include <stddef.h>
#include <zmq.h>

#define SVC_CLIENT_PROTO "VITC01"
#define SVC_WORKER_PROTO "VITW01"
#define SVC_VERSION VIT_VERSION_STRING

/* Client commands (frame 2 of a client message). */
enum { SVC_C_REQUEST = 1, SVC_C_PARTIAL = 2, SVC_C_FINAL = 3 };
/* Worker commands (frame 2 of a worker message), as MDP/0.2 numbers them. */
enum {
    SVC_W_READY = 1,
    SVC_W_REQUEST = 2,
    SVC_W_PARTIAL = 3,
    SVC_W_FINAL = 4,
    SVC_W_HEARTBEAT = 5,
    SVC_W_DISCONNECT = 6,
};

/* Service names a broker answers itself (Majordomo's MMI, RFC 8). */
#define SVC_MMI_PREFIX "mmi."
#define SVC_MMI_BROKER "mmi.broker"

#define SVC_MAX_ID 255          /* request ids and addresses, bytes */
#define SVC_MAX_HEADER 65536    /* the JSON header frame, bytes */
#define SVC_HARD_SLACK 65536    /* added to the frame cap, ZMQ_MAXMSGSIZE */

/* A multipart message. Frames past `max` on receipt are read and dropped
 * (so one message cannot make us hold millions of frames) and counted in
 * `dropped`. */
typedef struct {
    zmq_msg_t *f;
    int n, cap;
    int dropped;
} svc_msg;

/* Receives all parts of one message. Returns 0, or -1 with errno (EAGAIN
 * with ZMQ_DONTWAIT and nothing there, EINTR, ETERM). */
int svc_msg_recv(svc_msg *m, void *sock, int flags, int max);
/* Sends all parts and empties `m` (also on failure). Returns 0 or -1. */
int svc_msg_send(svc_msg *m, void *sock);
void svc_msg_close(svc_msg *m);
/* Appends a copy of `n` bytes; returns 0 or -1 (out of memory). */
int svc_msg_add(svc_msg *m, const void *data, size_t n);
int svc_msg_add_str(svc_msg *m, const char *s);
int svc_msg_add_byte(svc_msg *m, unsigned char b);
/* Appends frame `src`, taking its content (src is left empty). */
int svc_msg_add_move(svc_msg *m, zmq_msg_t *src);
/* Moves frame i of `from` to the end of `to`. */
int svc_msg_add_frame(svc_msg *to, svc_msg *from, int i);

static inline size_t svc_size(const svc_msg *m, int i)
{
    return zmq_msg_size(&m->f[i]);
}
static inline const unsigned char *svc_data(const svc_msg *m, int i)
{
    return (const unsigned char *)zmq_msg_data((zmq_msg_t *)&m->f[i]);
}
/* Frame i equals the string s. */
int svc_frame_is(const svc_msg *m, int i, const char *s);

/* A line (printf-style, at most 600 bytes) to a log callback, when there
 * is one: the worker's and the broker's log. */
void svc_log(vit_log_fn log, void *ud, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Milliseconds on the monotonic clock. */
double svc_now_ms(void);

/* The body of an error reply, {"ok": false, "error": {...}}; `index` < 0
 * and `field` NULL are left out. Returns a malloc'd string or NULL. */
char *svc_error_body(const char *code, const char *message, int index,
                     const char *field);

/* The body of a health reply, {"ok": true, "op": "health", "status":
 * ..., "queue_depth": ...}; malloc'd, or NULL. */
char *svc_health_body(const char *status, int queue_depth);

/* Keys (item ids, paths) are byte strings; JSON strings are UTF-8. A key
 * travels as a JSON string when it is valid UTF-8, else as the object
 * {"base64": "<its bytes in standard base64>"} (PROTOCOL.md 3.5), in
 * requests and replies alike. svc_key_json makes the value (a new
 * reference, NULL when out of memory); svc_key_parse reads either form
 * into a malloc'd NUL-terminated copy, NULL when the value is neither,
 * is empty or over max bytes, or holds a NUL byte. */
struct json_t;
struct json_t *svc_key_json(const char *key);
char *svc_key_parse(struct json_t *v, size_t max);

/* Checks a Z85 key (40 characters). */
int svc_key_valid(const char *z85);

/* The ZAP handler (service/auth.c): a thread answering libzmq's
 * authentication requests in `ctx`. Once it runs, every CURVE handshake in
 * the context is put to it, and it decides by the server socket's ZAP
 * domain: a domain with a `dir` admits the client public keys listed in
 * the files of `dir` (one that holds none is an error), a domain with a
 * NULL dir admits any key, a domain not given admits none. */
#define SVC_ZAP_CLIENTS "vit"          /* sockets facing clients */
#define SVC_ZAP_WORKERS "vit-workers"  /* a broker's backend */
#define SVC_AUTH_MAX_DOMAINS 2
typedef struct {
    const char *domain;
    const char *dir;
} svc_auth_domain;
typedef struct svc_auth svc_auth;
vit_status svc_auth_start(void *ctx, const svc_auth_domain *domains, int n,
                          svc_auth **out, vit_error *err);
void svc_auth_stop(svc_auth *a);
/* Makes `sock` a CURVE server with the Z85 secret key; its handshakes go
 * to the handler's `domain`. */
vit_status svc_curve_server(void *sock, const char *secret_z85,
                            const char *domain, vit_error *err);
/* Makes `sock` a CURVE client of the server with public key `server`,
 * with the key pair `pub`, `secret` (all Z85). */
vit_status svc_curve_client(void *sock, const char *server, const char *pub,
                            const char *secret, vit_error *err);

/* The worker's metrics port on libmicrohttpd (service/metrics_http.c):
 * `text` returns the Prometheus text, malloc'd, or NULL when it cannot be had;
 * it is called on the server's own thread. `endpoint` is tcp://HOST:PORT
 * (port * for any); *port receives the one it listens on. */
typedef char *(*svc_metrics_fn)(void *ud);
typedef struct svc_metrics_http svc_metrics_http;
vit_status svc_metrics_http_start(const char *endpoint, svc_metrics_fn text,
                                  void *ud, svc_metrics_http **out, int *port,
                                  vit_error *err);
void svc_metrics_http_stop(svc_metrics_http *m);

/* The search page of the HTTP gateway's GET / (service/http_page.c). */
extern const char svc_http_page[];

#endif
