/*
 * Private declarations shared by the HTTP gateway's files:
 *
 *   http.c         the gateway: its options, the pool of clients, the
 *                  replies, libmicrohttpd's callbacks, start and stop
 *   http_admit.c   what is let in: the listening socket, the API key
 *   http_input.c   a request's body: JSON, or multipart/form-data parts,
 *                  into one JSON object and its images
 *   http_routes.c  the routes: each made into requests of the client
 *                  protocol, and their replies into JSON
 *   http_page.c    the search page at GET / and its images, /v1/image
 *
 * (metrics_http.c, the worker's metrics port, is libmicrohttpd's too.)
 * Nothing here is API; the prefix is svc_.
 */
#ifndef SVC_HTTP_H
#define SVC_HTTP_H

#include "service/client.h"
#include "service/service.h"
#include "service/svc_impl.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#define POOL_KEEP 64        /* idle clients kept */
#define PROBE_MS 2000       /* /ready's and /v1/models' wait at most */
#define MAX_PARTS 4096      /* parts of a multipart body */

typedef struct pooled {
    vit_client *c;
    char service[256];
    struct pooled *next;
} pooled;

struct vit_http {
    struct MHD_Daemon *d;
    vit_http_options o;
    char *connect, *api_key;
    char server_key[41], public_key[41], secret_key[41];
    pthread_mutex_t mu;
    pthread_cond_t idle;
    pooled *pool;
    int n_pool;
    int in_flight;
    int stopping;
    int port;
};

enum route {
    R_NONE, R_PAGE, R_IMAGE, R_HEALTH, R_READY, R_METRICS, R_MODELS,
    R_CLASSIFY, R_EMBED, R_MATCH, R_SEARCH,
};

typedef struct {
    char *key;
    int file;
    unsigned char *data;
    size_t n, cap;
} part;

typedef struct {
    enum route route;
    size_t got;       /* body bytes read */
    int over;         /* past max_body_bytes: refused, the rest dropped */
    int bad_form;     /* the multipart body could not be read */
    char *body;
    size_t n, cap;
    struct MHD_PostProcessor *pp;
    part *parts;
    int n_parts, cap_parts;
} reqctx;

/* A request's parameters and images: the JSON body, or a multipart body's
 * fields made into one (files are the images, in order). */
typedef struct {
    json_t *req;
    vit_blob *img;
    unsigned char **own;  /* bytes fetched for JSON references */
    int n_img;
    int form;
} input;

/* What a handler answers when it cannot go on: an error code (static)
 * and message, and the index of the item at fault. */
typedef struct {
    const char *code;
    char msg[1024];
    int index;
} failure;

/* ---- what the files offer each other ---- */

/* http.c: the pool of clients (a client is used by one thread at a time) */
vit_client *svc_http_client_new(vit_http *h, const char *service, int probe);
pooled *svc_http_client_take(vit_http *h, const char *service);
void svc_http_client_give(vit_http *h, pooled *p, int broken);
/* http.c: replies, each taking what it sends. A response of `text`
 * (freed with the response, or at once on failure) with its Content-Type
 * and, for 405, Allow. */
struct MHD_Response *svc_response_of(char *text, const char *type,
                                     const char *allow);
enum MHD_Result svc_send_text(vit_http *h, struct MHD_Connection *con,
                              unsigned status, const char *type, char *text,
                              const char *allow);
/* `o` as JSON; 9 significant digits give each float32 back exactly. */
enum MHD_Result svc_send_json(vit_http *h, struct MHD_Connection *con,
                              unsigned status, json_t *o);
/* An error in OpenAI's shape, its HTTP status by the service's code; a
 * 405 says in `allow` what its route takes. */
enum MHD_Result svc_send_err(vit_http *h, struct MHD_Connection *con,
                             const char *code, int index, const char *allow,
                             const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define svc_send_error(h, con, code, index, ...) \
    svc_send_err(h, con, code, index, NULL, __VA_ARGS__)

/* http_admit.c */
/* A listening socket on HOST:PORT ([V6]:PORT, *:PORT for any). */
int svc_listen_on(const char *hostport, int *port, vit_error *err);
/* The bearer token against the key, in time that depends on the key's
 * length only. */
int svc_authorized(vit_http *h, struct MHD_Connection *con);
/* A request's first call: its route, or a refusal (no such route, a
 * method the route does not take, no API key, a body announced too large)
 * sent; for a multipart body, the post processor that will read it. */
enum MHD_Result svc_admit(vit_http *h, struct MHD_Connection *con, reqctx *q,
                          const char *url, const char *method);

/* http_input.c */
int svc_grow(unsigned char **p, size_t *cap, size_t need);
/* libmicrohttpd's post processor's callback: one piece of a part. */
enum MHD_Result svc_on_part(void *cls, enum MHD_ValueKind kind,
                            const char *key, const char *filename,
                            const char *content_type,
                            const char *transfer_encoding, const char *data,
                            uint64_t off, size_t size);
void svc_reqctx_free(reqctx *q);
int svc_failf(failure *f, const char *code, int index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The request's body as an input: 0, or -1 with the failure. */
int svc_read_input(reqctx *q, input *in, failure *f);
void svc_input_free(input *in);
/* The images of `field` (data: URIs, base64 or URLs; or the multipart
 * body's files) into in->img. */
int svc_take_images(vit_http *h, input *in, const char *field, failure *f);

/* http_routes.c */
/* One request to the endpoint: 0 with the reply parsed into *body (and
 * the reply, for its data frames); -1 with the failure. */
int svc_http_call(vit_http *h, const char *service, int probe,
                  json_t *header, const vit_blob *img, int n, vit_reply *rep,
                  json_t **body, failure *f);
/* Answers a request whose body has been read. */
enum MHD_Result svc_dispatch(vit_http *h, struct MHD_Connection *con,
                             reqctx *q);

/* http_page.c (svc_http_page itself is declared in svc_impl.h) */
/* GET /v1/image?id=PATH: a file of the index's. */
enum MHD_Result svc_do_image(vit_http *h, struct MHD_Connection *con);

#endif
