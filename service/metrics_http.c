/*
 * The worker's metrics port (--metrics-bind) on libmicrohttpd, the
 * library the HTTP gateway is served by.
 */
#include "service/svc_http.h"
#include "vit/fail.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

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
    struct MHD_Response *r = body ? svc_response_of(body, type, allow) : NULL;
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
    int fd = svc_listen_on(hostport, port, err);
    if (fd < 0) {
        free(m);
        return VIT_E_IO;
    }
    m->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_AUTO, 0, NULL,
        NULL, on_metrics, m, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
        MHD_OPTION_END);
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
