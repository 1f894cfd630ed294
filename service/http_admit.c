/*
 * What the HTTP gateway lets in: the socket it listens on (HOST:PORT, IPv4
 * or IPv6), and of the requests, those to a route it has by a method the
 * route takes, bearing the API key when there is one, and announcing no
 * body past max_body_bytes.
 */
#include "service/svc_http.h"
#include "vit/fail.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* The bearer token against the key, in time that depends on the key's
 * length only. */
int svc_authorized(vit_http *h, struct MHD_Connection *con)
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

/* A listening socket on HOST:PORT ([V6]:PORT, *:PORT for any). */
int svc_listen_on(const char *hostport, int *port, vit_error *err)
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

enum MHD_Result svc_admit(vit_http *h, struct MHD_Connection *con, reqctx *q,
                          const char *url, const char *method)
{
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
        return svc_send_error(h, con, "not_found", -1,
                              "no route %s %.200s", method, url);
    if (q->route == R_NONE) {
        int p = strncmp(url, "/v1/", 4) == 0 &&
                strcmp(url, "/v1/models") != 0;
        return svc_send_err(h, con, "method_not_allowed", -1,
                            p ? "POST" : "GET, HEAD", "%.200s takes %s",
                            url, p ? "POST" : "GET");
    }
    if (h->api_key && q->route != R_HEALTH && q->route != R_PAGE &&
        !svc_authorized(h, con)) {
        q->route = R_NONE;
        return svc_send_error(h, con, "unauthorized", -1,
                              "this server needs 'Authorization: Bearer "
                              "KEY'");
    }
    const char *cl = MHD_lookup_connection_value(
        con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > h->o.max_body_bytes) {
        q->route = R_NONE;
        return svc_send_error(h, con, "too_large", -1,
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
        q->pp = MHD_create_post_processor(con, 65536, svc_on_part, q);
        if (!q->pp)
            q->bad_form = 1;
    }
    return MHD_YES;
}
