/*
 * `vit serve` and `vit broker`: their options, the signal handling a
 * long-running server needs, and the log lines on stderr. The serving
 * itself is service/'s (vit_serve, vit_broker). SIGTERM, or a first SIGINT,
 * asks for a drain: work already accepted is finished and answered, new
 * work is refused, then the process exits 0. A second SIGINT exits at once
 * with status 130, for a person who does not want to wait.
 */
#include "cli/args.h"
#include "service/service.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    if (sig == SIGINT && g_stop) {
        static const char msg[] = "vit: interrupted again; exiting now\n";
        ssize_t rc = write(2, msg, sizeof msg - 1);
        (void)rc;
        _exit(130);
    }
    g_stop = 1;
}

volatile sig_atomic_t *cli_server_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A client that vanishes must not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    return &g_stop;
}

static void log_line(void *ud, const char *line)
{
    fprintf(stderr, "vit %s: %s\n", (const char *)ud, line);
}

/* Reads a key file: CZMQ's zcert text (`secret-key = "..."`) or the bare 40
 * characters. Returns 0 and the key, or -1 with a message on stderr. */
int cli_read_key(const char *path, const char *which, char key[41])
{
    char text[4096];
    if (cli_read_text(path, text, sizeof text) != 0)
        return -1;
    char tag[32];
    snprintf(tag, sizeof tag, "%s-key", which);
    const char *p = strstr(text, tag);
    if (p && (p = strchr(p, '"')))
        p++;
    else if (!strstr(text, "-key"))
        for (p = text; *p == ' ' || *p == '\n' || *p == '\t'; p++)
            ;
    if (p && strlen(p) >= 40) {
        memcpy(key, p, 40);
        key[40] = '\0';
        const char *z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"
                          "QRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
        if (strspn(key, z85) == 40)
            return 0;
    }
    fprintf(stderr, "vit: %s: no %s key (40 Z85 characters) found\n", path,
            which);
    return -1;
}

int cli_client_keys(const char *server_file, const char *key_file,
                    cli_curve_keys *k, const char **server, const char **pub,
                    const char **sec)
{
    if (!server_file)
        return 0;
    if (cli_read_key(server_file, "public", k->server) != 0)
        return -1;
    *server = k->server;
    if (!key_file)
        return 0;
    if (cli_read_key(key_file, "public", k->pub) != 0 ||
        cli_read_key(key_file, "secret", k->sec) != 0)
        return -1;
    *pub = k->pub;
    *sec = k->sec;
    return 0;
}

/* ---- vit serve ---- */

typedef struct {
    vit_serve_options o;
    const char *secret_file, *server_key_file, *key_file;
    const char *http, *api_key, *api_key_file;
    cli_strv rest;  /* none are taken */
} serve_args;

static const cli_opt serve_opts[] = {
    {.name = "model", .key = 'm', .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.model_dir),
     .where = CLI_LOCAL,
     .help =
        "  -m, --model DIR          the model directory (required)\n"},
    {.name = "bind", .key = 'b', .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.bind),
     .where = CLI_LOCAL,
     .help =
        "  -b, --bind EP            serve clients here, e.g. "
        "tcp://127.0.0.1:5555\n"},
    {.name = "connect", .key = 'c', .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.connect),
     .where = CLI_LOCAL,
     .help =
        "  -c, --connect EP         connect to a broker's backend instead\n"},
    {.name = "name", .key = 'n', .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.name),
     .where = CLI_LOCAL,
     .help =
        "  -n, --name NAME          the service name (default: the model "
        "directory's\n"
        "                           last component)\n"},
    {.name = "max-batch", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_batch),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 4096, .help_value = 1,
     .bad = "--max-batch needs an integer from 1 to 4096, not '%s'",
     .help =
        "      --max-batch N        items per forward pass (%d)\n"},
    {.name = "max-delay-ms", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_delay_ms),
     .where = CLI_LOCAL,
     .lo = 0, .hi = 60000, .help_value = 1,
     .bad = "--max-delay-ms needs an integer from 0 to 60000, not '%s'",
     .help =
        "      --max-delay-ms MS    wait at most this for a batch to fill "
        "(%d)\n"},
    {.name = "batch-wait", .key = 0, .type = CLI_ARG_CHOICE,
     .off = offsetof(serve_args, o.batch_wait_full),
     .where = CLI_LOCAL,
     .choices = "adaptive|full",
     .bad = "--batch-wait is adaptive or full, not '%s'",
     .help =
        "      --batch-wait MODE    adaptive (default): wait while more "
        "images are being\n"
        "                           decoded, and for the clients just "
        "answered at most\n"
        "                           1/16 of a full batch's time; full: "
        "always wait\n"},
    {.name = "max-queue", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_queue),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1000000, .help_value = 1,
     .bad = "--max-queue needs an integer from 1 to 1000000, not '%s'",
     .help =
        "      --max-queue N        requests held at once; more are refused\n"
        "                           'overloaded' (%d)\n"},
    {.name = "max-queue-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(serve_args, o.max_queue_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 40, .help_value = 1,
     .bad = "--max-queue-bytes needs an integer from 1 to 1099511627776, not '%s'",
     .help =
        "      --max-queue-bytes N  image bytes and pixels held at once "
        "(%zu)\n"},
    {.name = "decode-threads", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.decode_threads),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 64, .help_value = 1,
     .bad = "--decode-threads needs an integer from 1 to 64, not '%s'",
     .help =
        "      --decode-threads N   threads decoding images (%d)\n"},
    {.name = "threads", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.threads),
     .where = CLI_LOCAL,
     .lo = 0, .hi = 1024,
     .bad = "--threads needs an integer from 0 to 1024, not '%s'",
     .help =
        "      --threads N          threads of each forward pass (0: one per "
        "CPU)\n"},
    {.name = "precision", .key = 0, .type = CLI_ARG_CHOICE,
     .off = offsetof(serve_args, o.precision),
     .where = CLI_LOCAL,
     .choices = "fp32|int8|bf16",
     .bad = "--precision is fp32, int8 or bf16, not '%s'",
     .help =
        "      --precision P        fp32 (default), bf16 or int8: the "
        "encoder's products in\n"
        "                           bfloat16 (oneDNN, with AVX512-BF16 or "
        "AMX) or in\n"
        "                           int8, about 2.4x as fast with VNNI (1.3x "
        "on AVX2), but\n"
        "                           it CHANGES NUMBERS (see vit classify "
        "--help)\n"},
    {.name = "preprocess", .key = 0, .type = CLI_ARG_CHOICE,
     .off = offsetof(serve_args, o.preprocess),
     .where = CLI_LOCAL,
     .choices = "pil|torchvision",
     .bad = "--preprocess is pil or torchvision, not '%s'",
     .help =
        "      --preprocess B       pil (default) or torchvision: which of\n"
        "                           transformers' two image processors to\n"
        "                           reproduce (see vit classify --help)\n"},
    {.name = "deadline-ms", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.deadline_ms),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 86400000, .help_value = 1,
     .bad = "--deadline-ms needs an integer from 1 to 86400000, not '%s'",
     .help =
        "      --deadline-ms MS     default deadline of a request (%d)\n"},
    {.name = "max-images", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_images),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 100000, .help_value = 1,
     .bad = "--max-images needs an integer from 1 to 100000, not '%s'",
     .help =
        "      --max-images N       images per request (%d)\n"},
    {.name = "max-texts", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_texts),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 100000, .help_value = 1,
     .bad = "--max-texts needs an integer from 1 to 100000, not '%s'",
     .help =
        "      --max-texts N        texts per request (%d)\n"},
    {.name = "max-text-bytes", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.max_text_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1 << 24, .help_value = 1,
     .bad = "--max-text-bytes needs an integer from 1 to 16777216, not '%s'",
     .help =
        "      --max-text-bytes N   bytes per text (%d)\n"},
    {.name = "max-image-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(serve_args, o.max_image_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 31, .help_value = 1,
     .bad = "--max-image-bytes needs an integer from 1 to 2147483648, not '%s'",
     .help =
        "      --max-image-bytes N  bytes per image (%zu)\n"},
    {.name = "max-request-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(serve_args, o.max_request_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 31, .help_value = 1,
     .bad = "--max-request-bytes needs an integer from 1 to 2147483648, not '%s'",
     .help =
        "      --max-request-bytes N  bytes of all images of a request "
        "(%zu)\n"},
    {.name = "max-pixels", .key = 0, .type = CLI_ARG_U64,
     .off = offsetof(serve_args, o.max_pixels),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 40, .help_value = 1,
     .bad = "--max-pixels needs an integer from 1 to 1099511627776, not '%s'",
     .help =
        "      --max-pixels N       pixels per decoded image (%llu)\n"},
    {.name = "max-request-pixels", .key = 0, .type = CLI_ARG_U64,
     .off = offsetof(serve_args, o.max_request_pixels),
     .where = CLI_LOCAL,
     .lo = 0, .hi = 1L << 50, .help_value = 1,
     .bad = "--max-request-pixels needs an integer from 0 to 1125899906842624, not '%s'",
     .help =
        "      --max-request-pixels N  pixels of all images of a request, by "
        "their\n"
        "                           headers, refused before decoding\n"
        "                           (%llu; 0: no limit)\n"},
    {.name = "heartbeat-ms", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(serve_args, o.heartbeat_ms),
     .where = CLI_LOCAL,
     .lo = 10, .hi = 600000, .help_value = 1,
     .bad = "--heartbeat-ms needs an integer from 10 to 600000, not '%s'",
     .help =
        "      --heartbeat-ms MS    heartbeat interval with a broker (%d)\n"},
    {.name = "metrics-bind", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.metrics_bind),
     .where = CLI_LOCAL,
     .help =
        "      --metrics-bind EP    serve Prometheus metrics over HTTP here, "
        "at\n"
        "                           /metrics,\n"
        "                           e.g. tcp://127.0.0.1:9100 (port * for "
        "any)\n"},
    {.name = "curve-secret-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, secret_file),
     .where = CLI_LOCAL,
     .help =
        "      --curve-secret-key FILE  with --bind: encrypt with CURVE, "
        "this server's\n"
        "                           key pair (a CZMQ certificate)\n"},
    {.name = "allow-keys", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.allow_keys_dir),
     .where = CLI_LOCAL,
     .help =
        "      --allow-keys DIR     with --bind: admit only the client "
        "public keys\n"
        "                           in DIR\n"},
    {.name = "curve-server-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, server_key_file),
     .where = CLI_LOCAL,
     .help =
        "      --curve-server-key FILE  with --connect: the broker's backend "
        "public key;\n"
        "                           CURVE to the broker\n"},
    {.name = "curve-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, key_file),
     .where = CLI_LOCAL,
     .help =
        "      --curve-key FILE     with --connect: this worker's key pair; "
        "its public\n"
        "                           key must be in the broker's "
        "--allow-worker-keys\n"},
    {.name = "index", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, o.index_path),
     .where = CLI_LOCAL,
     .help =
        "      --index PATH         an embedding index to search and add to\n"
        "                           (index_* and search_* operations; made\n"
        "                           by 'vit index add' or created here): a\n"
        "                           file, which this worker alone writes, or\n"
        "                           a postgresql:// URI, which many workers\n"
        "                           serve at once (searched on the server)\n"},
    {.name = "index-precision", .key = 0, .type = CLI_ARG_CHOICE,
     .off = offsetof(serve_args, o.index_precision),
     .where = CLI_LOCAL,
     .choices = "fp32|fp16|int8",
     .bad = "--index-precision is fp32, fp16 or int8, not '%s'",
     .help =
        "      --index-precision P  fp32 (default), fp16 or int8 in memory\n"
        "                           (a file's index)\n"},
    {.name = "http", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, http),
     .where = CLI_LOCAL,
     .help =
        "      --http HOST:PORT     with --bind: also answer HTTP/JSON here "
        "(the gateway\n"
        "                           of 'vit http', in this process; "
        "README.md, \"HTTP\")\n"},
    {.name = "api-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, api_key),
     .where = CLI_LOCAL,
     .help =
        "      --api-key KEY        with --http: require 'Authorization: "
        "Bearer KEY'\n"
        "                           on every route but /health\n"},
    {.name = "api-key-file", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(serve_args, api_key_file),
     .where = CLI_LOCAL,
     .help =
        "      --api-key-file FILE  the key, the first line of FILE "
        "(default:\n"
        "                           $VIT_API_KEY when set)\n"},
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP,
     .where = CLI_LOCAL,
     .help =
        "  -h, --help               show this help and exit\n"},
    {0},
};

static void serve_init(void *p)
{
    ((serve_args *)p)->o = vit_serve_options_default();
}

static const char *serve_check(void *p, unsigned backend, char *buf,
                               size_t n)
{
    const serve_args *a = p;
    const vit_serve_options *o = &a->o;
    if (a->rest.n) {
        snprintf(buf, n, "unexpected argument '%s'", a->rest.v[0]);
        return buf;
    }
    if (!o->model_dir)
        return "--model DIR is required";
    if (!o->bind == !o->connect)
        return "give exactly one of --bind and --connect";
    if (o->connect && (a->secret_file || o->allow_keys_dir))
        return "--curve-secret-key and --allow-keys are for --bind; with "
               "--connect, CURVE takes --curve-server-key and --curve-key";
    if (o->bind && (a->server_key_file || a->key_file))
        return "--curve-server-key and --curve-key are for --connect; with "
               "--bind, CURVE takes --curve-secret-key";
    if (o->allow_keys_dir && !a->secret_file)
        return "--allow-keys needs --curve-secret-key";
    if (!a->server_key_file != !a->key_file)
        return "--curve-server-key and --curve-key go together";
    return NULL;
}

static const cli_op serve_spec = {
    .name = "serve",
    .usage = "usage: vit serve --model DIR (--bind EP | --connect BROKER_EP) "
             "[options]\n",
    .about =
        "\n"
        "Serve a model over ZeroMQ (the protocol is service/PROTOCOL.md): "
        "directly\n"
        "to clients at --bind, or as a worker of a broker at --connect.\n",
    .after =
        "\n"
        "SIGTERM or Ctrl-C drains: accepted work is finished, new work is "
        "refused,\n"
        "then the exit status is 0. A second Ctrl-C exits at once (130).\n",
    .opts = serve_opts,
    .size = sizeof(serve_args),
    .positional = offsetof(serve_args, rest),
    .init = serve_init,
    .check = serve_check,
};

/* The endpoint the gateway of `vit serve --http` connects to: the bind
 * endpoint, a wildcard host made the loopback address. -1 for a port
 * that ZeroMQ picks ('*'), which is not known before the bind. */
static int gateway_endpoint(const char *bind, char *out, size_t size)
{
    const char *port = strrchr(bind, ':');
    if (strncmp(bind, "tcp://", 6) != 0)
        return snprintf(out, size, "%s", bind) < (int)size ? 0 : -1;
    if (!port || strcmp(port, ":*") == 0 || strcmp(port, ":0") == 0)
        return -1;
    if (strncmp(bind, "tcp://*:", 8) == 0 ||
        strncmp(bind, "tcp://0.0.0.0:", 14) == 0)
        return snprintf(out, size, "tcp://127.0.0.1%s", port) < (int)size
                   ? 0
                   : -1;
    return snprintf(out, size, "%s", bind) < (int)size ? 0 : -1;
}

int cli_serve_main(int argc, char **argv)
{
    serve_args a;
    int rc = cli_op_parse_local(&serve_spec, argc, argv, &a);
    cli_op_free(&serve_spec, &a);
    if (rc >= 0)
        return rc;
    vit_serve_options o = a.o;
    char secret[41];
    const char *http = a.http;
    if (a.secret_file) {
        if (cli_read_key(a.secret_file, "secret", secret) != 0)
            return CLI_EXIT_FAILED;
        o.curve_secret_key = secret;
    }
    /* With --connect: to the broker, as its client. */
    cli_curve_keys keys;
    if (cli_client_keys(a.server_key_file, a.key_file, &keys,
                        &o.curve_server_key, &o.curve_public_key,
                        &o.curve_secret_key) != 0)
        return CLI_EXIT_FAILED;
    if ((a.api_key || a.api_key_file) && !http)
        return cli_usage_error("serve", serve_spec.usage,
                               "--api-key and --api-key-file go with --http");
    char gw_ep[512];
    if (http && (o.connect || a.secret_file))
        return cli_usage_error("serve", serve_spec.usage,
                           "--http goes with --bind, without CURVE; behind "
                           "a broker, or with CURVE, run 'vit http' "
                           "--connect to the broker or the worker");
    if (http && gateway_endpoint(o.bind, gw_ep, sizeof gw_ep) != 0)
        return cli_usage_error("serve", serve_spec.usage,
                           "--http needs --bind with a port of its own "
                           "(not '*'), not '%s'",
                           o.bind);
    cli_server_signals();
    vit_http *gw = NULL;
    char *key = NULL;
    int fetch_urls = 0;
    if (http) {
        vit_http_options ho = vit_http_options_default();
        ho.listen = http;
        ho.connect = gw_ep;
        ho.fetch = cli_http_fetch;
        ho.fetch_ud = &fetch_urls;
        if (cli_http_key(a.api_key, a.api_key_file, &key) != 0)
            return CLI_EXIT_FAILED;
        ho.api_key = key;
        cli_fetch_init();
        if (cli_http_begin("serve", &ho, &gw) != 0) {
            free(key);
            return CLI_EXIT_FAILED;
        }
    }
    o.stop = &g_stop;
    o.log = log_line;
    o.log_ud = "serve";
    vit_error err = {{0}};
    vit_status st = vit_serve(&o, &err);
    /* The worker has answered what it accepted; so does the gateway. */
    vit_http_stop(gw, vit_http_options_default().timeout_ms);
    free(key);
    if (st != VIT_OK) {
        fprintf(stderr, "vit serve: %s\n",
                err.msg[0] ? err.msg : vit_status_str(st));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* ---- vit broker ---- */

typedef struct {
    vit_broker_options o;
    const char *secret_file, *back_file;
    cli_strv rest;  /* none are taken */
} broker_args;

static const cli_opt broker_opts[] = {
    {.name = "frontend", .key = 'f', .type = CLI_ARG_STR,
     .off = offsetof(broker_args, o.frontend),
     .where = CLI_LOCAL,
     .help =
        "  -f, --frontend EP        clients connect here\n"},
    {.name = "backend", .key = 'b', .type = CLI_ARG_STR,
     .off = offsetof(broker_args, o.backend),
     .where = CLI_LOCAL,
     .help =
        "  -b, --backend EP         workers connect here\n"},
    {.name = "heartbeat-ms", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(broker_args, o.heartbeat_ms),
     .where = CLI_LOCAL,
     .lo = 10, .hi = 600000, .help_value = 1,
     .bad = "--heartbeat-ms needs 10 to 600000",
     .help =
        "      --heartbeat-ms MS    heartbeat interval (%d)\n"},
    {.name = "deadline-ms", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(broker_args, o.deadline_ms),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 86400000, .help_value = 1,
     .bad = "--deadline-ms needs a positive integer",
     .help =
        "      --deadline-ms MS     default deadline of a request (%d)\n"},
    {.name = "max-queue", .key = 0, .type = CLI_ARG_INT,
     .off = offsetof(broker_args, o.max_queue),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 10000000, .help_value = 1,
     .bad = "--max-queue needs a positive integer",
     .help =
        "      --max-queue N        requests waiting for a worker (%d)\n"},
    {.name = "max-queue-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(broker_args, o.max_queue_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 40, .help_value = 1,
     .bad = "--max-queue-bytes needs a positive integer",
     .help =
        "      --max-queue-bytes N  bytes of the requests held (%zu)\n"},
    {.name = "max-request-bytes", .key = 0, .type = CLI_ARG_SIZE,
     .off = offsetof(broker_args, o.max_request_bytes),
     .where = CLI_LOCAL,
     .lo = 1, .hi = 1L << 31, .help_value = 1,
     .bad = "--max-request-bytes needs a positive integer",
     .help =
        "      --max-request-bytes N  largest frame a client may send (%zu)\n"},
    {.name = "curve-secret-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(broker_args, secret_file),
     .where = CLI_LOCAL,
     .help =
        "      --curve-secret-key FILE  the broker's key pair: encrypt the "
        "frontend\n"
        "                           with CURVE (and the backend, with\n"
        "                           --allow-worker-keys)\n"},
    {.name = "allow-keys", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(broker_args, o.allow_keys_dir),
     .where = CLI_LOCAL,
     .help =
        "      --allow-keys DIR     admit only the client public keys in "
        "DIR\n"},
    {.name = "allow-worker-keys", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(broker_args, o.allow_worker_keys_dir),
     .where = CLI_LOCAL,
     .help =
        "      --allow-worker-keys DIR  encrypt the backend with CURVE and "
        "admit only\n"
        "                           the worker public keys in DIR\n"},
    {.name = "backend-curve-secret-key", .key = 0, .type = CLI_ARG_STR,
     .off = offsetof(broker_args, back_file),
     .where = CLI_LOCAL,
     .help =
        "      --backend-curve-secret-key FILE  a key pair for the backend "
        "of its own\n"
        "                           (default: --curve-secret-key's)\n"},
    {.name = "help", .key = 'h', .type = CLI_ARG_HELP,
     .where = CLI_LOCAL,
     .help =
        "  -h, --help               show this help and exit\n"},
    {0},
};

static void broker_init(void *p)
{
    ((broker_args *)p)->o = vit_broker_options_default();
}

static const char *broker_check(void *p, unsigned backend, char *buf,
                                size_t n)
{
    const broker_args *a = p;
    if (a->rest.n) {
        snprintf(buf, n, "unexpected argument '%s'", a->rest.v[0]);
        return buf;
    }
    if (!a->o.frontend || !a->o.backend)
        return "--frontend and --backend are required";
    if (a->o.allow_keys_dir && !a->secret_file)
        return "--allow-keys needs --curve-secret-key";
    if (a->back_file && !a->o.allow_worker_keys_dir)
        return "--backend-curve-secret-key goes with --allow-worker-keys";
    if (a->o.allow_worker_keys_dir && !a->secret_file && !a->back_file)
        return "--allow-worker-keys needs --curve-secret-key or "
               "--backend-curve-secret-key";
    return NULL;
}

static const cli_op broker_spec = {
    .name = "broker",
    .usage = "usage: vit broker --frontend EP --backend EP [options]\n",
    .about =
        "\n"
        "Route clients' requests to workers (vit serve --connect) by model "
        "name,\n"
        "with heartbeats, credit-based flow and re-sending of the work a "
        "dead worker\n"
        "held (service/PROTOCOL.md section 7). The service name mmi.broker "
        "is the\n"
        "broker's own: `vit client --connect FRONTEND broker-info` prints "
        "what it\n"
        "serves.\n",
    .after =
        "\n"
        "SIGTERM or Ctrl-C stops it (exit 0).\n",
    .opts = broker_opts,
    .size = sizeof(broker_args),
    .positional = offsetof(broker_args, rest),
    .init = broker_init,
    .check = broker_check,
};

int cli_broker_main(int argc, char **argv)
{
    broker_args a;
    int rc = cli_op_parse_local(&broker_spec, argc, argv, &a);
    cli_op_free(&broker_spec, &a);
    if (rc >= 0)
        return rc;
    vit_broker_options o = a.o;
    const char *secret_file = a.secret_file, *back_file = a.back_file;
    char secret[41], back_secret[41];
    if (secret_file) {
        if (cli_read_key(secret_file, "secret", secret) != 0)
            return CLI_EXIT_FAILED;
        o.curve_secret_key = secret;
    }
    if (back_file) {
        if (cli_read_key(back_file, "secret", back_secret) != 0)
            return CLI_EXIT_FAILED;
        o.backend_curve_secret_key = back_secret;
    }
    cli_server_signals();
    o.stop = &g_stop;
    o.log = log_line;
    o.log_ud = "broker";
    vit_error err = {{0}};
    vit_status st = vit_broker(&o, &err);
    if (st != VIT_OK) {
        fprintf(stderr, "vit broker: %s\n",
                err.msg[0] ? err.msg : vit_status_str(st));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}
