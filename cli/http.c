/*
 * `vit http`: the HTTP gateway (service.h's vit_http_*) in front of a
 * worker or a broker, and what `vit serve --http` shares with it: the API
 * key (from an option, a file or VIT_API_KEY), how image references in
 * JSON bodies become bytes (cli/fetch.c, the local commands' own), and the
 * start with its log line. SIGTERM or Ctrl-C stops accepting connections,
 * answers the requests in flight, then exits 0.
 */
#include "cli/cli.h"
#include "service/service.h"

#include <errno.h>
#include <getopt.h>
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
    FILE *f = fopen(file, "rb");
    if (!f) {
        cli_report(file, strerror(errno));
        return -1;
    }
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
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

static const char usage[] =
    "usage: vit http --connect EP --listen HOST:PORT [options]\n";

static void help(void)
{
    vit_http_options d = vit_http_options_default();
    fputs(usage, stdout);
    printf(
        "\nAn HTTP/JSON gateway to a vit worker (vit serve --bind) or broker "
        "(vit\nbroker --frontend): GET /health, /ready, /metrics, /v1/models; "
        "POST\n/v1/classify, /v1/embeddings, /v1/match, /v1/search "
        "(README.md, \"HTTP\").\n"
        "\noptions:\n"
        "  -c, --connect EP         the worker's or broker's endpoint "
        "(required)\n"
        "  -l, --listen HOST:PORT   serve HTTP here, e.g. 127.0.0.1:8080 "
        "(port 0:\n"
        "                           any free one; the log line says which)\n"
        "      --api-key KEY        require 'Authorization: Bearer KEY' on "
        "every route\n"
        "                           but /health (visible to other users in "
        "ps:\n"
        "                           prefer the next two)\n"
        "      --api-key-file FILE  the key, the first line of FILE\n"
        "                           (default: $VIT_API_KEY when set)\n"
        "      --max-body-bytes N   larger request bodies are refused, 413 "
        "(%zu)\n"
        "      --max-connections N  connections at once (%d); past it a new "
        "one is\n"
        "                           closed at once\n"
        "      --connection-timeout S  close a connection idle for S "
        "seconds (%d)\n"
        "      --timeout MS         wait this long for the service's reply "
        "(%d);\n"
        "                           past it the answer is 504\n"
        "      --retries N          tries after one that timed out (%d)\n"
        "      --fetch-urls         fetch images given as http(s) URLs "
        "(default:\n"
        "                           refused, 400: the server would reach "
        "any\n"
        "                           address a client names)\n"
        "      --curve-server-key FILE  the server's public key: CURVE to "
        "it\n"
        "      --curve-key FILE     this gateway's key pair (default: a "
        "fresh one)\n"
        "  -h, --help               show this help and exit\n"
        "\nSIGTERM or Ctrl-C stops accepting connections, answers the "
        "requests in\nflight, then exits 0.\n",
        d.max_body_bytes, d.max_connections, d.connection_timeout_s,
        d.timeout_ms, d.retries);
}

enum {
    O_KEY = 256, O_KEY_FILE, O_MAX_BODY, O_MAX_CONN, O_TIMEOUT, O_RETRIES,
    O_FETCH_URLS, O_CURVE_SERVER, O_CURVE_KEY, O_CONN_TIMEOUT,
};

int cli_http_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"api-key", required_argument, NULL, O_KEY},
        {"api-key-file", required_argument, NULL, O_KEY_FILE},
        {"max-body-bytes", required_argument, NULL, O_MAX_BODY},
        {"max-connections", required_argument, NULL, O_MAX_CONN},
        {"connection-timeout", required_argument, NULL, O_CONN_TIMEOUT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"retries", required_argument, NULL, O_RETRIES},
        {"fetch-urls", no_argument, NULL, O_FETCH_URLS},
        {"curve-server-key", required_argument, NULL, O_CURVE_SERVER},
        {"curve-key", required_argument, NULL, O_CURVE_KEY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    vit_http_options o = vit_http_options_default();
    const char *key_arg = NULL, *key_file = NULL;
    const char *server_key_file = NULL, *curve_key_file = NULL;
    int fetch_urls = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:l:h", longopts, NULL)) != -1) {
        long v;
        switch (c) {
        case 'c': o.connect = optarg; break;
        case 'l': o.listen = optarg; break;
        case O_KEY: key_arg = optarg; break;
        case O_KEY_FILE: key_file = optarg; break;
        case O_FETCH_URLS: fetch_urls = 1; break;
        case O_CURVE_SERVER: server_key_file = optarg; break;
        case O_CURVE_KEY: curve_key_file = optarg; break;
        case 'h': help(); return CLI_EXIT_OK;
        case O_MAX_BODY:
            if ((v = cli_parse_long(optarg, 1, 1L << 40)) < 0)
                return cli_usage_error("http", usage,
                                       "--max-body-bytes needs a positive "
                                       "integer, not '%s'",
                                       optarg);
            o.max_body_bytes = (size_t)v;
            break;
        case O_MAX_CONN:
            if ((v = cli_parse_long(optarg, 1, 100000)) < 0)
                return cli_usage_error("http", usage,
                                       "--max-connections needs 1 to "
                                       "100000, not '%s'",
                                       optarg);
            o.max_connections = (int)v;
            break;
        case O_CONN_TIMEOUT:
            if ((v = cli_parse_long(optarg, 1, 86400)) < 0)
                return cli_usage_error("http", usage,
                                       "--connection-timeout needs 1 to "
                                       "86400 s, not '%s'",
                                       optarg);
            o.connection_timeout_s = (int)v;
            break;
        case O_TIMEOUT:
            if ((v = cli_parse_long(optarg, 1, 86400000)) < 0)
                return cli_usage_error("http", usage,
                                       "--timeout needs 1 to 86400000 ms, "
                                       "not '%s'",
                                       optarg);
            o.timeout_ms = (int)v;
            break;
        case O_RETRIES:
            if ((v = cli_parse_long(optarg, 0, 100)) < 0)
                return cli_usage_error("http", usage,
                                       "--retries needs 0 to 100, not '%s'",
                                       optarg);
            o.retries = (int)v;
            break;
        case ':':
            return cli_usage_error("http", usage,
                                   "option '%s' needs an argument",
                                   argv[optind - 1]);
        default:
            return cli_usage_error("http", usage, "unknown option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("http", usage, "unexpected argument '%s'",
                               argv[optind]);
    if (!o.connect || !o.listen)
        return cli_usage_error("http", usage,
                               "--connect and --listen are required");
    if (curve_key_file && !server_key_file)
        return cli_usage_error("http", usage,
                               "--curve-key needs --curve-server-key");
    char server_key[41], pub[41], secret[41];
    if (server_key_file) {
        if (cli_read_key(server_key_file, "public", server_key) != 0)
            return CLI_EXIT_FAILED;
        o.curve_server_key = server_key;
        if (curve_key_file) {
            if (cli_read_key(curve_key_file, "public", pub) != 0 ||
                cli_read_key(curve_key_file, "secret", secret) != 0)
                return CLI_EXIT_FAILED;
            o.curve_public_key = pub;
            o.curve_secret_key = secret;
        }
    }
    char *key;
    if (cli_http_key(key_arg, key_file, &key) != 0)
        return CLI_EXIT_FAILED;
    o.api_key = key;
    o.fetch = cli_http_fetch;
    o.fetch_ud = &fetch_urls;
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
