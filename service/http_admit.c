/*
 * What the HTTP gateway lets in: the socket it listens on (HOST:PORT, IPv4
 * or IPv6), and, with an API key, only the requests that bear it.
 */
#include "service/svc_http.h"
#include "vit/fail.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
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
