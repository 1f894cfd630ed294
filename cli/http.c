/*
 * `vit http`: the HTTP gateway (service.h's vit_http_*) in front of a
 * worker or a broker, and what `vit serve --http` shares with it: the API
 * key (from an option, a file or VIT_API_KEY), how image references in
 * JSON bodies become bytes (cli/fetch.c, the local commands' own), and the
 * start with its log line. SIGTERM or Ctrl-C stops accepting connections,
 * answers the requests in flight, then exits 0.
 */
#include "cli/args.h"
#include "service/service.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_http_key(const char *arg, const char *file, char **key)
{
    *key = NULL;
    if (arg && file) {
        fprintf(stderr, "vit: give one of --api-key and --api-key-file\n");
        return -1;
    }
    if (!arg && !file) {
        const char *env = getenv("VIT_API_KEY");
        arg = env && *env ? env : NULL;
    }
    if (arg) {
        if (!(*key = strdup(arg)))
            fprintf(stderr, "vit: out of memory\n");
        return *key ? 0 : -1;
    }
    if (!file)
        return 0;
    char text[4096];
    if (cli_read_text(file, text, sizeof text) != 0)
        return -1;
    text[strcspn(text, "\r\n")] = '\0';  /* the first line */
    if (!text[0]) {
        cli_report(file, "the first line holds no API key");
        return -1;
    }
    if (!(*key = strdup(text)))
        fprintf(stderr, "vit: out of memory\n");
    return *key ? 0 : -1;
}

/* An image reference of a JSON body: a data: URI, an http(s) URL (only
 * with --fetch-urls), or else bare base64, read as a data: URI's. */
int cli_http_fetch(void *ud, const char *ref, size_t max_bytes,
                   unsigned char **data, size_t *n, char *why,
                   size_t why_size)
{
    int urls = *(const int *)ud;
    if (strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0) {
        if (!urls) {
            snprintf(why, why_size, "image URLs are not fetched by this "
                                    "server (vit http --fetch-urls); send "
                                    "the image as a data: URI or base64");
            return -1;
        }
        return cli_fetch(ref, max_bytes, data, n, why, why_size);
    }
    if (strncmp(ref, "data:", 5) == 0)
        return cli_fetch(ref, max_bytes, data, n, why, why_size);
    size_t len = strlen(ref);
    char *url = malloc(len + 14);
    if (!url) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    memcpy(url, "data:;base64,", 13);
    memcpy(url + 13, ref, len + 1);
    int rc = cli_fetch(url, max_bytes, data, n, why, why_size);
    free(url);
    return rc;
}

int cli_http_begin(const char *cmd, const vit_http_options *o,
                   vit_http **out)
{
    vit_error err = {{0}};
    if (vit_http_start(o, out, &err) != VIT_OK) {
        fprintf(stderr, "vit %s: %s\n", cmd, err.msg);
        return -1;
    }
    char host[256];
    const char *colon = strrchr(o->listen, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - o->listen), o->listen);
    fprintf(stderr,
            "vit %s: HTTP listening on http://%s:%d, sending to %s%s\n", cmd,
            host[0] && strcmp(host, "*") != 0 ? host : "0.0.0.0",
            vit_http_port(*out), o->connect,
            o->api_key ? " (API key required)" : "");
    return 0;
}

typedef struct {
    vit_http_options o;
    const char *key_arg, *key_file, *server_key_file, *curve_key_file;
    int fetch_urls;
    cli_strv rest;  /* none are taken */
} http_args;

static const cli_opt http_opts[] = {
    {.name = "connect", .key = 'c', .type = CLI_ARG_STR,
     .off = offsetof(http_args, o.connect), .where = CLI_LOCAL,
     .help =
        "  -c, --connect EP         the worker's or broker's endpoint "
        "(required)\n"},
    {.name = "listen", .key = 'l', .type = CLI_ARG_STR,
     .off = offsetof(http_args, o.listen), .where = CLI_LOCAL,
     .help =
        "  -l, --listen HOST:PORT   serve HTTP here, e.g. 127.0.0.1:8080 "
        "(port 0:\n"
        "                           any free one; the log line says which)\n"},
    {.name = "api-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(http_args, key_arg), .where = CLI_LOCAL,
     .help =
        "      --api-key KEY        require 'Authorization: Bearer KEY' on "
        "every route\n"
        "                           but /health (visible to other users in "
        "ps:\n"
        "                           prefer the next two)\n"},
    {.name = "api-key-file", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(http_args, key_file), .where = CLI_LOCAL,
     .help =
        "      --api-key-file FILE  the key, the first line of FILE\n"
        "                           (default: $VIT_API_KEY when set)\n"},
    {.name = "max-body-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(http_args, o.max_body_bytes), .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 40, .help_value = 1,
     .bad = "--max-body-bytes needs a positive integer, not '%s'",
     .help =
        "      --max-body-bytes N   larger request bodies are refused, 413 "
        "(%zu)\n"},
    {.name = "max-connections", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(http_args, o.max_connections), .where = CLI_LOCAL,
     .lo = 1, .hi = 100000, .help_value = 1,
     .bad = "--max-connections needs 1 to 100000, not '%s'",
     .help =
        "      --max-connections N  connections at once (%d); past it a new "
        "one is\n"
        "                           closed at once\n"},
    {.name = "connection-timeout", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(http_args, o.connection_timeout_s), .where = CLI_LOCAL,
     .lo = 1, .hi = 86400, .help_value = 1,
     .bad = "--connection-timeout needs 1 to 86400 s, not '%s'",
     .help =
        "      --connection-timeout S  close a connection idle for S seconds "
        "(%d)\n"},
    {.name = "timeout", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(http_args, o.timeout_ms), .where = CLI_LOCAL,
     .lo = 1, .hi = 86400000, .help_value = 1,
     .bad = "--timeout needs 1 to 86400000 ms, not '%s'",
     .help =
        "      --timeout MS         wait this long for the service's reply "
        "(%d);\n"
        "                           past it the answer is 504\n"},
    {.name = "retries", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(http_args, o.retries), .where = CLI_LOCAL,
     .lo = 0, .hi = 100, .help_value = 1,
     .bad = "--retries needs 0 to 100, not '%s'",
     .help =
        "      --retries N          tries after one that timed out (%d)\n"},
    {.name = "fetch-urls", .key = 0, .type = CLI_ARG_FLAG,
     .off = offsetof(http_args, fetch_urls), .where = CLI_LOCAL,
     .lo = 1,
     .help =
        "      --fetch-urls         fetch images given as http(s) URLs "
        "(default:\n"
        "                           refused, 400: the server would reach "
        "any\n"
        "                           address a client names)\n"},
    {.name = "curve-server-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(http_args, server_key_file), .where = CLI_LOCAL,
     .help =
        "      --curve-server-key FILE  the server's public key: CURVE to "
        "it\n"},
    {.name = "curve-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(http_args, curve_key_file), .where = CLI_LOCAL,
     .help =
        "      --curve-key FILE     this gateway's key pair (default: a "
        "fresh one)\n"},
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP, .where = CLI_LOCAL,
     .help =
        "  -h, --help               show this help and exit\n"},
    {0},
};

static void http_init(void *p)
{
    ((http_args *)p)->o = vit_http_options_default();
}

static const char *http_check(void *p, unsigned backend, char *buf, size_t n)
{
    const http_args *a = p;
    if (a->rest.n) {
        snprintf(buf, n, "unexpected argument '%s'", a->rest.v[0]);
        return buf;
    }
    if (!a->o.connect || !a->o.listen)
        return "--connect and --listen are required";
    if (a->curve_key_file && !a->server_key_file)
        return "--curve-key needs --curve-server-key";
    return NULL;
}

static const cli_op http_spec = {
    .name = "http",
    .usage = "usage: vit http --connect EP --listen HOST:PORT [options]\n",
    .about =
        "\n"
        "An HTTP/JSON gateway to a vit worker (vit serve --bind) or broker "
        "(vit\n"
        "broker --frontend): GET /health, /ready, /metrics, /v1/models; "
        "POST\n"
        "/v1/classify, /v1/embeddings, /v1/match, /v1/search (README.md, "
        "\"HTTP\").\n",
    .after =
        "\n"
        "SIGTERM or Ctrl-C stops accepting connections, answers the requests "
        "in\n"
        "flight, then exits 0.\n",
    .opts = http_opts,
    .size = sizeof(http_args),
    .positional = offsetof(http_args, rest),
    .init = http_init,
    .check = http_check,
};

int cli_http_main(int argc, char **argv)
{
    http_args a;
    int rc = cli_op_parse_local(&http_spec, argc, argv, &a);
    cli_op_free(&http_spec, &a);
    if (rc >= 0)
        return rc;
    vit_http_options o = a.o;
    cli_curve_keys keys;
    if (cli_client_keys(a.server_key_file, a.curve_key_file, &keys,
                        &o.curve_server_key, &o.curve_public_key,
                        &o.curve_secret_key) != 0)
        return CLI_EXIT_FAILED;
    char *key;
    if (cli_http_key(a.key_arg, a.key_file, &key) != 0)
        return CLI_EXIT_FAILED;
    o.api_key = key;
    o.fetch = cli_http_fetch;
    o.fetch_ud = &a.fetch_urls;
    cli_fetch_init();
    volatile sig_atomic_t *stop = cli_server_signals();
    vit_http *h;
    if (cli_http_begin("http", &o, &h) != 0) {
        free(key);
        return CLI_EXIT_FAILED;
    }
    struct timespec ts = {0, 50 * 1000000L};
    while (!*stop)
        nanosleep(&ts, NULL);
    fprintf(stderr, "vit http: stopping: answering the requests in flight\n");
    vit_http_stop(h, o.timeout_ms * (o.retries + 1) + 1000);
    free(key);
    fprintf(stderr, "vit http: stopped\n");
    return CLI_EXIT_OK;
}
