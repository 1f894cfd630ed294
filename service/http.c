/*
 * The HTTP gateway (service.h's vit_http_*): libmicrohttpd serves HTTP on
 * its own threads, a thread per connection, and each request is answered
 * by requests of the client protocol (service/client.h) to a worker or a
 * broker, on a client taken from a pool (a client is used by one thread
 * at a time). Bodies are JSON, or multipart/form-data whose files are the
 * images (libmicrohttpd's post processor reads them); replies are JSON,
 * errors in OpenAI's shape, {"error": {"code", "message"}}, with the
 * service's error codes mapped to HTTP statuses. The routes and their
 * fields are README.md's "HTTP" section.
 */
#include "service/client.h"
#include "service/service.h"
#include "service/svc_impl.h"
#include "vit/vit_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_KEEP 64        /* idle clients kept */
#define PROBE_MS 2000       /* /ready's and /v1/models' wait at most */
#define MAX_PARTS 4096      /* parts of a multipart body */

vit_http_options vit_http_options_default(void)
{
    return (vit_http_options){
        .max_body_bytes = (size_t)96 << 20,
        .timeout_ms = 30000,
        .retries = 0,
        .max_connections = 256,
        .connection_timeout_s = 60,
    };
}

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

/* ---- clients ---- */

static vit_client *client_new(vit_http *h, const char *service, int probe)
{
    vit_client_options co = vit_client_options_default();
    co.timeout_ms = probe && h->o.timeout_ms > PROBE_MS ? PROBE_MS
                                                         : h->o.timeout_ms;
    co.retries = probe ? 0 : h->o.retries;
    co.service = service;
    if (h->server_key[0]) {
        co.curve_server_key = h->server_key;
        co.curve_public_key = h->public_key[0] ? h->public_key : NULL;
        co.curve_secret_key = h->secret_key[0] ? h->secret_key : NULL;
    }
    vit_client *c = NULL;
    return vit_client_new(h->connect, &co, &c, NULL) == VIT_OK ? c : NULL;
}

static pooled *client_take(vit_http *h, const char *service)
{
    pthread_mutex_lock(&h->mu);
    for (pooled **pp = &h->pool; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->service, service) == 0) {
            pooled *p = *pp;
            *pp = p->next;
            h->n_pool--;
            pthread_mutex_unlock(&h->mu);
            return p;
        }
    pthread_mutex_unlock(&h->mu);
    pooled *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->service, sizeof p->service, "%s", service);
    if (!(p->c = client_new(h, service, 0))) {
        free(p);
        return NULL;
    }
    return p;
}

/* Back to the pool, or freed: a client that timed out, or one too many. */
static void client_give(vit_http *h, pooled *p, int broken)
{
    pthread_mutex_lock(&h->mu);
    if (!broken && h->n_pool < POOL_KEEP) {
        p->next = h->pool;
        h->pool = p;
        h->n_pool++;
        p = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    if (p) {
        vit_client_free(p->c);
        free(p);
    }
}

/* ---- replies ---- */

/* The HTTP status of a service error code (PROTOCOL.md section 4). */
static unsigned code_status(const char *code)
{
    static const struct {
        const char *code;
        unsigned status;
    } map[] = {
        {"bad_request", 400},       {"unknown_op", 400},
        {"missing_field", 400},     {"bad_image", 400},
        {"too_large", 413},         {"no_text_tower", 422},
        {"no_vision_tower", 422},   {"no_head", 422},
        {"no_index", 422},          {"unknown_service", 404},
        {"overloaded", 429},        {"shutting_down", 503},
        {"unavailable", 503},       {"deadline_exceeded", 504},
        {"timeout", 504},           {"unauthorized", 401},
        {"not_found", 404},         {"method_not_allowed", 405},
        {"not_ready", 503},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(code, map[i].code) == 0)
            return map[i].status;
    return 500;
}

/* Sends `text` (taken); a 429 or 503 says when to try again, a 405 the
 * methods its route takes (`allow`). */
/* A response of `text` (taken; freed with the response, or at once on
 * failure) with its Content-Type and, for 405, Allow. */
static struct MHD_Response *response_of(char *text, const char *type,
                                        const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    return r;
}

static enum MHD_Result send_text(vit_http *h, struct MHD_Connection *con,
                                 unsigned status, const char *type,
                                 char *text /* taken */, const char *allow)
{
    if (!text) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "application/json";
        text = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out "
                      "of memory\"}}");
        if (!text)
            return MHD_NO;
    }
    struct MHD_Response *r = response_of(text, type, allow);
    if (!r)
        return MHD_NO;
    if (strncmp(type, "text/html", 9) == 0)
        /* The page's own inline style and script; data only from here. */
        MHD_add_response_header(
            r, "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; script-src "
            "'unsafe-inline'; connect-src 'self'; img-src 'self' blob:");
    if (status == MHD_HTTP_TOO_MANY_REQUESTS ||
        status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer");
    pthread_mutex_lock(&h->mu);
    int stopping = h->stopping;
    pthread_mutex_unlock(&h->mu);
    if (stopping)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Sends `o` (taken) as JSON; 9 significant digits give each float32 back
 * exactly. */
static enum MHD_Result send_json(vit_http *h, struct MHD_Connection *con,
                                 unsigned status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(9))
                : NULL;
    json_decref(o);
    return send_text(h, con, status, "application/json", s, NULL);
}

static enum MHD_Result send_err(vit_http *h, struct MHD_Connection *con,
                                const char *code, int index,
                                const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_err(vit_http *h, struct MHD_Connection *con,
                                const char *code, int index,
                                const char *allow, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (e && index >= 0)
        json_object_set_new(e, "index", json_integer(index));
    json_t *o = e ? json_pack("{s:o}", "error", e) : NULL;
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return send_text(h, con, code_status(code), "application/json", s,
                     allow);
}

#define send_error(h, con, code, index, ...) \
    send_err(h, con, code, index, NULL, __VA_ARGS__)

/* ---- a request ---- */

enum route {
    R_NONE, R_PAGE, R_IMAGE, R_HEALTH, R_READY, R_METRICS, R_MODELS, R_CLASSIFY, R_EMBED,
    R_MATCH, R_SEARCH,
};

static const struct {
    const char *path;
    enum route r;
    int post;
} routes[] = {
    {"/", R_PAGE, 0},               {"/v1/image", R_IMAGE, 0},
    {"/health", R_HEALTH, 0},       {"/ready", R_READY, 0},
    {"/metrics", R_METRICS, 0},     {"/v1/models", R_MODELS, 0},
    {"/v1/classify", R_CLASSIFY, 1}, {"/v1/embeddings", R_EMBED, 1},
    {"/v1/match", R_MATCH, 1},      {"/v1/search", R_SEARCH, 1},
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

static int grow(unsigned char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    unsigned char *q = realloc(*p, c);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *filename,
                               const char *content_type,
                               const char *transfer_encoding,
                               const char *data, uint64_t off, size_t size)
{
    (void)kind, (void)content_type, (void)transfer_encoding;
    reqctx *q = cls;
    if (off == 0) {
        if (q->n_parts == MAX_PARTS)
            return q->bad_form = 1, MHD_NO;
        if (q->n_parts == q->cap_parts) {
            int c = q->cap_parts ? q->cap_parts * 2 : 8;
            part *np = realloc(q->parts, (size_t)c * sizeof *np);
            if (!np)
                return q->bad_form = 1, MHD_NO;
            q->parts = np;
            q->cap_parts = c;
        }
        part *p = &q->parts[q->n_parts++];
        memset(p, 0, sizeof *p);
        p->file = filename != NULL;
        if (!(p->key = strdup(key ? key : "")))
            return q->bad_form = 1, MHD_NO;
    }
    if (!q->n_parts)
        return q->bad_form = 1, MHD_NO;
    part *p = &q->parts[q->n_parts - 1];
    /* One byte more: a field's value is used as a string. */
    if (grow(&p->data, &p->cap, p->n + size + 1) != 0)
        return q->bad_form = 1, MHD_NO;
    memcpy(p->data + p->n, data, size);
    p->n += size;
    p->data[p->n] = '\0';
    return MHD_YES;
}

static void reqctx_free(reqctx *q)
{
    if (!q)
        return;
    if (q->pp)
        MHD_destroy_post_processor(q->pp);
    for (int i = 0; i < q->n_parts; i++) {
        free(q->parts[i].key);
        free(q->parts[i].data);
    }
    free(q->parts);
    free(q->body);
    free(q);
}

/* A request's parameters and images: the JSON body, or a multipart body's
 * fields made into one (files are the images, in order). */
typedef struct {
    json_t *req;
    vit_blob *img;
    unsigned char **own;  /* bytes fetched for JSON references */
    int n_img;
    int form;
} input;

static void input_free(input *in)
{
    json_decref(in->req);
    for (int i = 0; in->own && i < in->n_img; i++)
        free(in->own[i]);
    free(in->own);
    free(in->img);
}

/* What a handler answers when it cannot go on: an error code (static)
 * and message, and the index of the item at fault. */
typedef struct {
    const char *code;
    char msg[1024];
    int index;
} failure;

static int failf(failure *f, const char *code, int index, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
static int failf(failure *f, const char *code, int index, const char *fmt,
                 ...)
{
    f->code = code;
    f->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* A multipart field's value as JSON: numbers for counts, true/false for
 * flags, lists for the fields that may repeat. */
static int form_field(json_t *o, const part *p, failure *f)
{
    static const char *const lists[] = {"labels", "texts", "input"};
    static const char *const ints[] = {"top_k", "k", "deadline_ms"};
    static const char *const bools[] = {"logits", "normalize"};
    const char *v = (const char *)(p->data ? p->data : (unsigned char *)"");
    for (size_t i = 0; i < 3; i++)
        if (strcmp(p->key, lists[i]) == 0) {
            json_t *a = json_object_get(o, p->key);
            if (!a) {
                a = json_array();
                json_object_set_new(o, p->key, a);
            }
            json_t *s = json_stringn(v, p->n);
            if (!s)
                return failf(f, "bad_request", -1,
                             "field '%s' is not valid UTF-8", p->key);
            json_array_append_new(a, s);
            return 0;
        }
    for (size_t i = 0; i < 3; i++)
        if (strcmp(p->key, ints[i]) == 0) {
            char *end;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || end == v || *end)
                return failf(f, "bad_request", -1,
                             "field '%s' must be an integer, not '%.40s'",
                             p->key, v);
            json_object_set_new(o, p->key, json_integer(x));
            return 0;
        }
    for (size_t i = 0; i < 2; i++)
        if (strcmp(p->key, bools[i]) == 0) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                return failf(f, "bad_request", -1,
                             "field '%s' must be true or false", p->key);
            json_object_set_new(o, p->key, json_boolean(v[0] == 't'));
            return 0;
        }
    json_t *s = json_stringn(v, p->n);
    if (!s)
        return failf(f, "bad_request", -1, "field '%s' is not valid UTF-8",
                     p->key);
    json_object_set_new(o, p->key, s);
    return 0;
}

static int read_input(reqctx *q, input *in, failure *f)
{
    memset(in, 0, sizeof *in);
    if (q->pp) {
        in->form = 1;
        if (!(in->req = json_object()))
            return failf(f, "internal", -1, "out of memory");
        int files = 0;
        for (int i = 0; i < q->n_parts; i++)
            files += q->parts[i].file;
        if (files && !(in->img = calloc((size_t)files, sizeof *in->img)))
            return failf(f, "internal", -1, "out of memory");
        for (int i = 0; i < q->n_parts; i++) {
            part *p = &q->parts[i];
            if (p->file)
                in->img[in->n_img++] = (vit_blob){p->data, p->n};
            else if (form_field(in->req, p, f) != 0)
                return -1;
        }
        return 0;
    }
    json_error_t je;
    in->req = q->n ? json_loadb(q->body, q->n, 0, &je) : NULL;
    if (!q->n)
        return failf(f, "bad_request", -1,
                     "the body is empty: send a JSON object, or "
                     "multipart/form-data");
    if (!in->req)
        return failf(f, "bad_request", -1, "the body is not valid JSON: %s "
                                           "(line %d)",
                     je.text, je.line);
    if (!json_is_object(in->req))
        return failf(f, "bad_request", -1, "the body must be a JSON object");
    return 0;
}

/* The images of a JSON request: the strings of `field` (an array, or one
 * string), each a data: URI, bare base64 or a URL,
 * turned into bytes by the fetch callback. A multipart request's are its
 * files. */
static int take_images(vit_http *h, input *in, const char *field,
                       failure *f)
{
    if (in->form) {
        if (!in->n_img)
            return failf(f, "missing_field", -1,
                         "no image: send the images as files of the form");
        return 0;
    }
    json_t *v = json_object_get(in->req, field);
    if (!v)
        return failf(f, "missing_field", -1, "'%s' is required", field);
    json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        json_decref(arr);
        return failf(f, "bad_request", -1,
                     "'%s' must be an image or a non-empty array of "
                     "images (data: URIs or base64)",
                     field);
    }
    size_t n = json_array_size(arr);
    in->img = calloc(n, sizeof *in->img);
    in->own = calloc(n, sizeof *in->own);
    if (!in->img || !in->own) {
        json_decref(arr);
        return failf(f, "internal", -1, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *ref = json_string_value(json_array_get(arr, i));
        char why[512];
        size_t len = 0;
        if (!ref) {
            json_decref(arr);
            return failf(f, "bad_request", (int)i,
                         "image %zu: must be a string (a data: URI or "
                         "base64)",
                         i);
        }
        if (!h->o.fetch) {
            json_decref(arr);
            return failf(f, "bad_request", (int)i,
                         "image %zu: this gateway takes images as "
                         "multipart/form-data files only",
                         i);
        }
        if (h->o.fetch(h->o.fetch_ud, ref, h->o.max_body_bytes,
                       &in->own[i], &len, why, sizeof why) != 0) {
            json_decref(arr);
            return failf(f, "bad_image", (int)i, "image %zu: %s", i, why);
        }
        in->img[i] = (vit_blob){in->own[i], len};
        in->n_img = (int)i + 1;
    }
    json_decref(arr);
    return 0;
}

/* One request to the endpoint: 0 with the reply parsed into *body (and
 * the reply, for its data frames); -1 with the failure (the service's
 * error code, or "timeout"). */
static int call(vit_http *h, const char *service, int probe, json_t *header,
                const vit_blob *img, int n, vit_reply *rep, json_t **body,
                failure *f)
{
    char *hs = json_dumps(header, JSON_COMPACT);
    if (!hs)
        return failf(f, "bad_request", -1,
                     "a parameter is not valid UTF-8, or out of memory");
    pooled *p = NULL;
    vit_client *c = probe ? client_new(h, service, 1)
                          : (p = client_take(h, service)) ? p->c : NULL;
    if (!c) {
        free(hs);
        return failf(f, "internal", -1, "cannot make a client for %s",
                     h->connect);
    }
    vit_error err = {{0}};
    vit_status st = vit_client_call(c, hs, img, n, rep, &err);
    free(hs);
    if (probe)
        vit_client_free(c);
    else
        client_give(h, p, st != VIT_OK);
    if (st == VIT_E_IO)
        return failf(f, "timeout", -1, "%s", err.msg);
    if (st != VIT_OK)
        return failf(f, "internal", -1, "%s", err.msg);
    char code[32], msg[1024];
    int index = -1;
    if (vit_reply_error(rep, code, msg, sizeof msg, &index)) {
        vit_reply_free(rep);
        /* The codes of PROTOCOL.md section 4; any other is internal. */
        static const char *const codes[] = {
            "bad_request", "unknown_op", "missing_field", "bad_image",
            "too_large", "no_text_tower", "no_vision_tower", "no_head",
            "no_index", "unknown_service", "overloaded", "shutting_down",
            "unavailable", "deadline_exceeded", "internal"};
        const char *sc = "internal";
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
            if (strcmp(code, codes[i]) == 0)
                sc = codes[i];
        return failf(f, sc, index, "%s", msg);
    }
    if (!(*body = json_loads(rep->body, 0, NULL))) {
        vit_reply_free(rep);
        return failf(f, "internal", -1, "a malformed reply from %s",
                     h->connect);
    }
    return 0;
}

/* The model a request names ("model"), routed to as the service name. */
static const char *model_of(input *in, failure *f)
{
    json_t *m = json_object_get(in->req, "model");
    if (!m || json_is_null(m))
        return "";
    if (!json_is_string(m) || json_string_length(m) > 255) {
        failf(f, "bad_request", -1,
              "'model' must be a model's name (at most 255 bytes)");
        return NULL;
    }
    return json_string_value(m);
}

/* The common path of an operation: the model the request names, its
 * images (from `field`, when `field` is not NULL), a header of `op` with
 * the request's `fields` (the worker checks their types and ranges), the
 * call. */
static int op_call(vit_http *h, input *in, const char *op,
                   const char *field, const char *const *fields,
                   json_t *extra, vit_reply *rep, json_t **b, failure *f)
{
    const char *model = model_of(in, f);
    json_t *hdr = json_pack("{s:s}", "op", op);
    if (!model || (field && take_images(h, in, field, f) != 0) || !hdr) {
        json_decref(hdr);
        json_decref(extra);
        return model && !hdr ? failf(f, "internal", -1, "out of memory")
                             : -1;
    }
    /* The request's own deadline, when it gives one (the worker checks
     * it); past it the answer is deadline_exceeded, 504. */
    json_t *dl = json_object_get(in->req, "deadline_ms");
    if (dl)
        json_object_set(hdr, "deadline_ms", dl);
    for (; *fields; fields++) {
        json_t *v = json_object_get(in->req, *fields);
        if (v)
            json_object_set(hdr, *fields, v);
    }
    if (extra)
        json_object_update(hdr, extra);
    json_decref(extra);
    int rc = call(h, model, 0, hdr, in->img, in->n_img, rep, b, f);
    json_decref(hdr);
    return rc;
}

/* ---- routes ---- */

static json_t *model_entry(json_t *info, const char *service)
{
    json_t *m = json_object_get(info, "model");
    json_t *e = json_pack("{s:s, s:s, s:s}", "id",
                          service && *service
                              ? service
                              : json_string_value(json_object_get(m, "name"))
                                    ? json_string_value(
                                          json_object_get(m, "name"))
                                    : "",
                          "object", "model", "owned_by", "vit");
    static const char *const keep[][2] = {
        {"architecture", "architecture"}, {"embed_dim", "embedding_dim"},
        {"precision", "precision"},       {"preprocess", "preprocess"},
        {"num_labels", "num_labels"},     {"image_h", "image_height"},
        {"image_w", "image_width"},       {"has_vision", "has_vision"},
        {"has_text", "has_text"},         {"text_max_len", "text_max_len"},
    };
    for (size_t i = 0; e && i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(m, keep[i][0]);
        if (v)
            json_object_set(e, keep[i][1], v);
    }
    json_t *lim = json_object_get(info, "limits");
    if (e && lim)
        json_object_set(e, "limits", lim);
    return e;
}

static int do_models(vit_http *h, json_t **out, failure *f)
{
    json_t *data = json_array();
    json_t *hdr = json_pack("{s:s}", "op", "info");
    vit_reply rep;
    json_t *b = NULL;
    /* A broker lists its models (mmi.broker); a worker answers
     * unknown_service to that name, and its own info is the one model. */
    json_t *services = NULL;
    if (call(h, "mmi.broker", 1, hdr, NULL, 0, &rep, &b, f) == 0) {
        services = json_incref(json_object_get(b, "services"));
        json_decref(b);
        vit_reply_free(&rep);
    } else if (strcmp(f->code, "unknown_service") != 0) {
        json_decref(hdr);
        json_decref(data);
        return -1;
    }
    json_object_set_new(hdr, "deadline_ms", json_integer(PROBE_MS));
    if (services) {
        const char *name;
        json_t *s;
        json_object_foreach(services, name, s)
        {
            if (json_integer_value(json_object_get(s, "workers")) < 1)
                continue;
            if (call(h, name, 1, hdr, NULL, 0, &rep, &b, f) != 0)
                continue;
            json_array_append_new(data, model_entry(b, name));
            json_decref(b);
            vit_reply_free(&rep);
        }
        json_decref(services);
    } else {
        if (call(h, "", 1, hdr, NULL, 0, &rep, &b, f) != 0) {
            json_decref(hdr);
            json_decref(data);
            return -1;
        }
        json_array_append_new(data, model_entry(b, rep.service));
        json_decref(b);
        vit_reply_free(&rep);
    }
    json_decref(hdr);
    *out = json_pack("{s:s, s:o}", "object", "list", "data", data);
    return 0;
}

static int do_ready(vit_http *h, json_t **out, failure *f)
{
    json_t *hdr = json_pack("{s:s, s:i}", "op", "info", "deadline_ms",
                            PROBE_MS);
    vit_reply rep;
    json_t *b;
    int rc = call(h, "", 1, hdr, NULL, 0, &rep, &b, f);
    json_decref(hdr);
    if (rc != 0) {
        char m[sizeof f->msg];
        snprintf(m, sizeof m, "%s", f->msg);
        return failf(f, "not_ready", -1, "no worker answers at %s: %s",
                     h->connect, m);
    }
    *out = json_pack("{s:s, s:s}", "status", "ready", "model",
                     rep.service ? rep.service : "");
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static int do_classify(vit_http *h, input *in, json_t **out, failure *f)
{
    static const char *const fields[] = {"top_k", "labels", "template",
                                         "logits", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, "classify", "images", fields, NULL, &rep, &b, f) != 0)
        return -1;
    *out = json_pack("{s:s, s:O}", "model", rep.service ? rep.service : "",
                     "results", json_object_get(b, "results"));
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

/* The rows of an embed_* reply's data frame, `count` of them. */
static json_t *embedding_rows(const vit_reply *rep, json_t *b, int count,
                              failure *f)
{
    long long n = json_integer_value(json_object_get(b, "count"));
    long long dim = json_integer_value(json_object_get(b, "dim"));
    if (n != count || dim < 1 || rep->n_data != 1 ||
        rep->data[0].size != (size_t)n * (size_t)dim * 4) {
        failf(f, "internal", -1, "a malformed embeddings reply");
        return NULL;
    }
    json_t *data = json_array();
    const unsigned char *p = rep->data[0].data;
    for (long long i = 0; data && i < n; i++) {
        json_t *v = json_array();
        for (long long j = 0; v && j < dim; j++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                         (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float x;
            memcpy(&x, &u, 4);
            json_array_append_new(v, json_real(x));
        }
        json_array_append_new(
            data, json_pack("{s:s, s:I, s:o}", "object", "embedding",
                            "index", (json_int_t)i, "embedding", v));
    }
    return data;
}

static int do_embed(vit_http *h, input *in, json_t **out, failure *f)
{
    json_t *mod = json_object_get(in->req, "modality");
    const char *m = json_string_value(mod);
    if (mod && (!m || (strcmp(m, "text") != 0 && strcmp(m, "image") != 0)))
        return failf(f, "bad_request", -1,
                     "'modality' is \"text\" (default) or \"image\"");
    json_t *fmt = json_object_get(in->req, "encoding_format");
    if (fmt && !(json_is_string(fmt) &&
                 strcmp(json_string_value(fmt), "float") == 0))
        return failf(f, "bad_request", -1,
                     "'encoding_format' is \"float\" only");
    int image = in->form ? in->n_img > 0 : m && strcmp(m, "image") == 0;
    json_t *extra = json_pack("{s:b}", "normalize", 1);
    int count = 0;
    if (!image) {
        json_t *t = json_object_get(in->req, "input");
        json_t *texts = json_is_string(t) ? json_pack("[O]", t)
                                          : json_incref(t);
        if (!json_is_array(texts) || json_array_size(texts) == 0) {
            json_decref(texts);
            json_decref(extra);
            return failf(f, t ? "bad_request" : "missing_field", -1,
                         "'input' must be a string or a non-empty array of "
                         "strings");
        }
        count = (int)json_array_size(texts);
        json_object_set_new(extra, "texts", texts);
    }
    static const char *const fields[] = {"normalize", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, image ? "embed_image" : "embed_text",
                image ? "input" : NULL, fields, extra, &rep, &b, f) != 0)
        return -1;
    json_t *data = embedding_rows(&rep, b, image ? in->n_img : count, f);
    if (data)
        /* The protocol does not count tokens: usage is 0. */
        *out = json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list",
                         "data", data, "model",
                         rep.service ? rep.service : "", "usage",
                         "prompt_tokens", 0, "total_tokens", 0);
    json_decref(b);
    vit_reply_free(&rep);
    return data ? 0 : -1;
}

static int do_match(vit_http *h, input *in, json_t **out, failure *f)
{
    static const char *const fields[] = {"texts", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, "match", "images", fields, NULL, &rep, &b, f) != 0)
        return -1;
    json_t *res = json_array(), *r;
    size_t i;
    json_array_foreach(json_object_get(b, "results"), i, r)
        json_array_append_new(
            res, json_pack("{s:O, s:O}", "scores",
                           json_object_get(r, "probs"), "logits",
                           json_object_get(r, "logits")));
    *out = json_pack("{s:s, s:o}", "model", rep.service ? rep.service : "",
                     "results", res);
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static int do_search(vit_http *h, input *in, json_t **out, failure *f)
{
    json_t *text = json_object_get(in->req, "text");
    int image = in->form ? in->n_img > 0
                         : json_object_get(in->req, "image") != NULL;
    if (!text == !image)
        return failf(f, "bad_request", -1,
                     "give one of 'text' (a string) and 'image'");
    if (text && !json_is_string(text))
        return failf(f, "bad_request", -1, "'text' must be a string");
    if (in->form && in->n_img != 1)
        return failf(f, "bad_request", -1, "search takes one image");
    static const char *const fields[] = {"k", "prefix", NULL};
    vit_reply rep;
    json_t *b;
    if (op_call(h, in, image ? "search_image" : "search_text",
                image ? "image" : NULL, fields,
                text ? json_pack("{s:[O]}", "texts", text) : NULL, &rep, &b,
                f) != 0)
        return -1;
    if (in->n_img > 1) {
        json_decref(b);
        vit_reply_free(&rep);
        return failf(f, "bad_request", -1, "search takes one image");
    }
    json_t *res = json_array(), *r;
    size_t i;
    json_array_foreach(json_array_get(json_object_get(b, "results"), 0), i, r)
        json_array_append_new(
            res, json_pack("{s:I, s:O, s:O, s:O, s:O}", "rank",
                           (json_int_t)i + 1, "score",
                           json_object_get(r, "score"), "path",
                           json_object_get(r, "id"), "id",
                           json_object_get(r, "rowid"), "metadata",
                           json_object_get(r, "metadata")));
    *out = json_pack("{s:s, s:o}", "model", rep.service ? rep.service : "",
                     "results", res);
    json_decref(b);
    vit_reply_free(&rep);
    return 0;
}

static enum MHD_Result do_metrics(vit_http *h, struct MHD_Connection *con)
{
    failure f;
    json_t *hdr = json_pack("{s:s, s:s}", "op", "metrics", "format",
                            "prometheus");
    vit_reply rep;
    json_t *b;
    int rc = call(h, "", 0, hdr, NULL, 0, &rep, &b, &f);
    json_decref(hdr);
    if (rc != 0)
        return send_error(h, con, f.code, f.index, "%s", f.msg);
    const char *t = json_string_value(json_object_get(b, "text"));
    char *text = strdup(t ? t : "");
    json_decref(b);
    vit_reply_free(&rep);
    return send_text(h, con, MHD_HTTP_OK,
                     "text/plain; version=0.0.4; charset=utf-8", text, NULL);
}

/* The media type of an image file by its first bytes. */
static const char *image_type(const unsigned char *b, size_t n)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return "image/jpeg";
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "image/gif";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return "image/bmp";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return "image/tiff";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0)
        return memcmp(b + 8, "avi", 3) == 0 ? "image/avif" : "image/heic";
    return "application/octet-stream";
}

/* GET /v1/image?id=PATH: the bytes of a file that is an item of the
 * worker's index (index_get says so: added by `vit index add` as a file),
 * never of any other path. */
static enum MHD_Result do_image(vit_http *h, struct MHD_Connection *con)
{
    const char *id =
        MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "id");
    const char *model =
        MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "model");
    if (!id || !*id)
        return send_error(h, con, "bad_request", -1,
                          "'id', an item's path, is required");
    if (model && strlen(model) > 255)
        return send_error(h, con, "bad_request", -1,
                          "'model' must be a model's name (at most 255 "
                          "bytes)");
    failure f;
    json_t *hdr = json_pack("{s:s, s:[o]}", "op", "index_get", "ids",
                            svc_key_json(id));
    vit_reply rep;
    json_t *b;
    int rc = hdr ? call(h, model ? model : "", 0, hdr, NULL, 0, &rep, &b, &f)
                 : failf(&f, "internal", -1, "out of memory");
    json_decref(hdr);
    if (rc != 0)
        return send_error(h, con, f.code, f.index, "%s", f.msg);
    json_t *it = json_array_get(json_object_get(b, "items"), 0);
    int file = json_is_true(json_object_get(it, "file"));
    json_decref(b);
    vit_reply_free(&rep);
    if (!file)
        return send_error(h, con, "not_found", -1,
                          "%.300s is not a file of the index", id);
    int fd = open(id, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EISDIR;
        if (fd >= 0)
            close(fd);
        return send_error(h, con, "not_found", -1,
                          "%.300s, a file of the index, cannot be read "
                          "here: %s",
                          id, strerror(e));
    }
    unsigned char head[16];
    ssize_t n = pread(fd, head, sizeof head, 0);
    struct MHD_Response *r =
        MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            image_type(head, n > 0 ? (size_t)n : 0));
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            "private, max-age=60");
    enum MHD_Result ok = MHD_queue_response(con, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- libmicrohttpd's callbacks ---- */

/* The bearer token against the key, in time that depends on the key's
 * length only. */
static int authorized(vit_http *h, struct MHD_Connection *con)
{
    const char *a = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return 0;
    a += 7;
    size_t n = strlen(h->api_key), m = strlen(a);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(h->api_key[i] ^ (i < m ? a[i] : 0));
    return diff == 0;
}

static enum MHD_Result dispatch(vit_http *h, struct MHD_Connection *con,
                                reqctx *q)
{
    failure f = {0};
    json_t *out = NULL;
    int rc;
    switch (q->route) {
    case R_HEALTH:
        return send_json(h, con, MHD_HTTP_OK,
                         json_pack("{s:s}", "status", "ok"));
    case R_METRICS:
        return do_metrics(h, con);
    case R_PAGE:
        return send_text(h, con, MHD_HTTP_OK, "text/html; charset=utf-8",
                         strdup(svc_http_page), NULL);
    case R_IMAGE:
        return do_image(h, con);
    case R_READY:
        rc = do_ready(h, &out, &f);
        break;
    case R_MODELS:
        rc = do_models(h, &out, &f);
        break;
    default: {
        if (q->bad_form)
            return send_error(h, con, "bad_request", -1,
                              "the multipart/form-data body could not be "
                              "read");
        input in;
        rc = read_input(q, &in, &f);
        if (rc == 0)
            switch (q->route) {
            case R_CLASSIFY: rc = do_classify(h, &in, &out, &f); break;
            case R_EMBED: rc = do_embed(h, &in, &out, &f); break;
            case R_MATCH: rc = do_match(h, &in, &out, &f); break;
            default: rc = do_search(h, &in, &out, &f); break;
            }
        input_free(&in);
    }
    }
    if (rc != 0)
        return send_error(h, con, f.code, f.index, "%s", f.msg);
    return send_json(h, con, MHD_HTTP_OK, out);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    vit_http *h = cls;
    reqctx *q = *con_cls;
    if (!q) {
        if (!(q = calloc(1, sizeof *q)))
            return MHD_NO;
        *con_cls = q;
        pthread_mutex_lock(&h->mu);
        h->in_flight++;
        pthread_mutex_unlock(&h->mu);
        int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
        int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                  strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
        int found = 0;
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
            if (strcmp(url, routes[i].path) == 0) {
                found = 1;
                if (routes[i].post ? post : get)
                    q->route = routes[i].r;
                else
                    q->over = 1;  /* its body is dropped */
            }
        if (!found)
            return send_error(h, con, "not_found", -1, "no route %s %.200s",
                              method, url);
        if (q->route == R_NONE) {
            int p = strncmp(url, "/v1/", 4) == 0 &&
                    strcmp(url, "/v1/models") != 0;
            return send_err(h, con, "method_not_allowed", -1,
                            p ? "POST" : "GET, HEAD", "%.200s takes %s", url,
                            p ? "POST" : "GET");
        }
        if (h->api_key && q->route != R_HEALTH && q->route != R_PAGE &&
            !authorized(h, con)) {
            q->route = R_NONE;
            return send_error(h, con, "unauthorized", -1,
                              "this server needs 'Authorization: Bearer "
                              "KEY'");
        }
        const char *cl = MHD_lookup_connection_value(
            con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->o.max_body_bytes) {
            q->route = R_NONE;
            return send_error(h, con, "too_large", -1,
                              "the body is over the %zu-byte limit",
                              h->o.max_body_bytes);
        }
        const char *ct = MHD_lookup_connection_value(
            con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        /* Any other body is read as JSON, whatever its type says (curl
         * -d sends application/x-www-form-urlencoded). */
        if (post && ct &&
            strncasecmp(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
                        strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) ==
                0) {
            q->pp = MHD_create_post_processor(con, 65536, on_part, q);
            if (!q->pp)
                q->bad_form = 1;
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->route == R_NONE || q->over)
            return MHD_YES;
        q->got += n;
        if (q->got > h->o.max_body_bytes) {
            q->over = 1;
            free(q->body);
            q->body = NULL;
            q->n = q->cap = 0;
            return MHD_YES;
        }
        if (q->pp) {
            if (!q->bad_form &&
                MHD_post_process(q->pp, upload_data, n) != MHD_YES)
                q->bad_form = 1;
        } else if (grow((unsigned char **)&q->body, &q->cap, q->n + n) !=
                   0) {
            return MHD_NO;
        } else {
            memcpy(q->body + q->n, upload_data, n);
            q->n += n;
        }
        return MHD_YES;
    }
    if (q->route == R_NONE)  /* answered already */
        return MHD_YES;
    if (q->over)
        return send_error(h, con, "too_large", -1,
                          "the body is over the %zu-byte limit",
                          h->o.max_body_bytes);
    return dispatch(h, con, q);
}

static void on_done(void *cls, struct MHD_Connection *con, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)con, (void)toe;
    vit_http *h = cls;
    if (!*con_cls)
        return;
    reqctx_free(*con_cls);
    *con_cls = NULL;
    pthread_mutex_lock(&h->mu);
    if (--h->in_flight == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->mu);
}

/* ---- start and stop ---- */

/* A listening socket on HOST:PORT ([V6]:PORT, *:PORT for any). */
static int listen_on(const char *hostport, int *port, vit_error *err)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || !colon[1]) {
        vit__fail(err, VIT_E_ARG, "'%s' is not HOST:PORT", hostport);
        return -1;
    }
    char host[256];
    size_t hl = (size_t)(colon - hostport);
    if (hl >= sizeof host) {
        vit__fail(err, VIT_E_ARG, "'%s': the host is too long", hostport);
        return -1;
    }
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(strcmp(host, "*") == 0 || !*host ? NULL : host,
                        colon + 1, &hints, &ai);
    if (g != 0) {
        vit__fail(err, VIT_E_ARG, "'%s': %s", hostport, gai_strerror(g));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        vit__fail(err, VIT_E_IO, "cannot listen on %s: %s", hostport,
              strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void http_free(vit_http *h)
{
    while (h->pool) {
        pooled *p = h->pool;
        h->pool = p->next;
        vit_client_free(p->c);
        free(p);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->idle);
    free(h->connect);
    free(h->api_key);
    free(h);
}

vit_status vit_http_start(const vit_http_options *opt, vit_http **out,
                          vit_error *err)
{
    *out = NULL;
    if (!opt || !opt->listen || !opt->connect)
        return vit__fail(err, VIT_E_ARG, "the gateway needs an address to listen "
                                     "on and an endpoint to connect to");
    if (opt->timeout_ms < 1 || opt->retries < 0 || opt->max_connections < 1 ||
        opt->max_body_bytes < 1 || opt->connection_timeout_s < 1)
        return vit__fail(err, VIT_E_ARG, "a timeout, connection limit or body "
                                     "limit below 1");
    if (opt->api_key && !*opt->api_key)
        return vit__fail(err, VIT_E_ARG, "the API key is empty");
    if (opt->curve_server_key &&
        (!svc_key_valid(opt->curve_server_key) ||
         (opt->curve_public_key && !svc_key_valid(opt->curve_public_key)) ||
         (opt->curve_secret_key && !svc_key_valid(opt->curve_secret_key)) ||
         !opt->curve_public_key != !opt->curve_secret_key))
        return vit__fail(err, VIT_E_ARG, "a CURVE key is not 40 Z85 characters, "
                                     "or only half a key pair was given");
    vit_http *h = calloc(1, sizeof *h);
    if (!h)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    h->o = *opt;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->connect = strdup(opt->connect);
    h->api_key = opt->api_key ? strdup(opt->api_key) : NULL;
    if (!h->connect || (opt->api_key && !h->api_key)) {
        http_free(h);
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    }
    if (opt->curve_server_key) {
        snprintf(h->server_key, 41, "%s", opt->curve_server_key);
        if (opt->curve_public_key) {
            snprintf(h->public_key, 41, "%s", opt->curve_public_key);
            snprintf(h->secret_key, 41, "%s", opt->curve_secret_key);
        }
    }
    /* A client now: a bad endpoint is an error at start, not at the
     * first request. */
    pooled *p = client_take(h, "");
    if (!p) {
        vit_client *c = NULL;
        vit_client_new(h->connect, NULL, &c, err);
        vit_client_free(c);
        http_free(h);
        return VIT_E_ARG;
    }
    client_give(h, p, 0);
    int fd = listen_on(opt->listen, &h->port, err);
    if (fd < 0) {
        http_free(h);
        return VIT_E_IO;
    }
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
            MHD_USE_ITC | MHD_USE_AUTO,
        0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_done, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)opt->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt->connection_timeout_s,
        MHD_OPTION_END);
    if (!h->d) {
        close(fd);
        http_free(h);
        return vit__fail(err, VIT_E_IO, "libmicrohttpd could not start on %s",
                     opt->listen);
    }
    *out = h;
    return VIT_OK;
}

int vit_http_port(const vit_http *h)
{
    return h->port;
}

void vit_http_stop(vit_http *h, int drain_ms)
{
    if (!h)
        return;
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += drain_ms / 1000;
    until.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    while (h->in_flight > 0 &&
           pthread_cond_timedwait(&h->idle, &h->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&h->mu);
    MHD_stop_daemon(h->d);
    http_free(h);
}

/* ---- the worker's metrics port (--metrics-bind) ----
 *
 * The same library serves a worker's Prometheus scrapes: GET /metrics
 * answers with what `text` returns (called on libmicrohttpd's thread; the
 * worker makes it a round trip to its own loop, which owns the numbers),
 * any other path 404, any other method 405. One polling thread is plenty
 * for a scraper or two. */
struct svc_metrics_http {
    struct MHD_Daemon *d;
    svc_metrics_fn text;
    void *ud;
};

static enum MHD_Result metrics_reply(struct MHD_Connection *con,
                                     unsigned status, const char *type,
                                     char *body /* taken */,
                                     const char *allow)
{
    struct MHD_Response *r = body ? response_of(body, type, allow) : NULL;
    if (!r)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *con,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    svc_metrics_http *m = cls;
    (void)version, (void)upload, (void)con_cls;
    if (*upload_size)
        return MHD_NO; /* a body to a GET: drop the connection */
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/metrics") != 0)
        return metrics_reply(con, MHD_HTTP_NOT_FOUND, "text/plain",
                             strdup("not found: the metrics are at "
                                    "/metrics\n"),
                             NULL);
    if (!get)
        return metrics_reply(con, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                             strdup("method not allowed\n"), "GET, HEAD");
    char *text = m->text(m->ud);
    if (!text)
        return metrics_reply(con, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                             strdup("the worker did not answer\n"), NULL);
    return metrics_reply(con, MHD_HTTP_OK, "text/plain; version=0.0.4", text,
                         NULL);
}

vit_status svc_metrics_http_start(const char *endpoint, svc_metrics_fn text,
                                  void *ud, svc_metrics_http **out, int *port,
                                  vit_error *err)
{
    *out = NULL;
    /* ZeroMQ's form of the address, which --metrics-bind has always
     * taken: tcp://HOST:PORT, port * for any. */
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return vit__fail(err, VIT_E_ARG,
                         "'%s': the metrics endpoint must be "
                         "tcp://HOST:PORT",
                         endpoint);
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s", endpoint + 6);
    size_t n = strlen(hostport);
    if (n >= 2 && strcmp(hostport + n - 2, ":*") == 0)
        strcpy(hostport + n - 1, "0");
    svc_metrics_http *m = calloc(1, sizeof *m);
    if (!m)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    m->text = text;
    m->ud = ud;
    int fd = listen_on(hostport, port, err);
    if (fd < 0) {
        free(m);
        return VIT_E_IO;
    }
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                                MHD_USE_AUTO,
                            0, NULL, NULL, on_metrics, m,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, 64u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->d) {
        close(fd);
        free(m);
        return vit__fail(err, VIT_E_IO,
                         "libmicrohttpd could not start on %s", endpoint);
    }
    *out = m;
    return VIT_OK;
}

void svc_metrics_http_stop(svc_metrics_http *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    free(m);
}
