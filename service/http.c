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
 *
 * This file holds the gateway itself; the parts it is made of are listed
 * in service/svc_http.h.
 */
#include "service/svc_http.h"
#include "vit/fail.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- clients ---- */

vit_client *svc_http_client_new(vit_http *h, const char *service, int probe)
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

pooled *svc_http_client_take(vit_http *h, const char *service)
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
    if (!(p->c = svc_http_client_new(h, service, 0))) {
        free(p);
        return NULL;
    }
    return p;
}

/* Back to the pool, or freed: a client that timed out, or one too many. */
void svc_http_client_give(vit_http *h, pooled *p, int broken)
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
struct MHD_Response *svc_response_of(char *text, const char *type,
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

enum MHD_Result svc_send_text(vit_http *h, struct MHD_Connection *con,
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
    struct MHD_Response *r = svc_response_of(text, type, allow);
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
enum MHD_Result svc_send_json(vit_http *h, struct MHD_Connection *con,
                              unsigned status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(9))
                : NULL;
    json_decref(o);
    return svc_send_text(h, con, status, "application/json", s, NULL);
}

enum MHD_Result svc_send_err(vit_http *h, struct MHD_Connection *con,
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
    return svc_send_text(h, con, code_status(code), "application/json", s,
                         allow);
}

/* ---- libmicrohttpd's callbacks ---- */

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
        return svc_admit(h, con, q, url, method);
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
        } else if (svc_grow((unsigned char **)&q->body, &q->cap, q->n + n) !=
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
        return svc_send_error(h, con, "too_large", -1,
                              "the body is over the %zu-byte limit",
                              h->o.max_body_bytes);
    return svc_dispatch(h, con, q);
}

static void on_done(void *cls, struct MHD_Connection *con, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)con, (void)toe;
    vit_http *h = cls;
    if (!*con_cls)
        return;
    svc_reqctx_free(*con_cls);
    *con_cls = NULL;
    pthread_mutex_lock(&h->mu);
    if (--h->in_flight == 0)
        pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->mu);
}

/* ---- start and stop ---- */

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
        return vit__fail(err, VIT_E_ARG,
                         "the gateway needs an address to listen "
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
        return vit__fail(err, VIT_E_ARG,
                         "a CURVE key is not 40 Z85 characters, "
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
    pooled *p = svc_http_client_take(h, "");
    if (!p) {
        vit_client *c = NULL;
        vit_client_new(h->connect, NULL, &c, err);
        vit_client_free(c);
        http_free(h);
        return VIT_E_ARG;
    }
    svc_http_client_give(h, p, 0);
    int fd = svc_listen_on(opt->listen, &h->port, err);
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
