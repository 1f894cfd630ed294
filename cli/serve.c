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

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
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

#define usage_error cli_usage_error

/* A whole decimal number in [lo, hi], or -1. */
static long long parse_num(const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    return v;
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

static const char serve_usage[] =
    "usage: vit serve --model DIR (--bind EP | --connect BROKER_EP) "
    "[options]\n";

static void serve_help(void)
{
    vit_serve_options d = vit_serve_options_default();
    fputs(serve_usage, stdout);
    printf(
        "\nServe a model over ZeroMQ (the protocol is service/PROTOCOL.md): "
        "directly\nto clients at --bind, or as a worker of a broker at "
        "--connect.\n"
        "\noptions:\n"
        "  -m, --model DIR          the model directory (required)\n"
        "  -b, --bind EP            serve clients here, e.g. "
        "tcp://127.0.0.1:5555\n"
        "  -c, --connect EP         connect to a broker's backend instead\n"
        "  -n, --name NAME          the service name (default: the model "
        "directory's\n"
        "                           last component)\n"
        "      --max-batch N        items per forward pass (%d)\n"
        "      --max-delay-ms MS    wait at most this for a batch to fill "
        "(%d)\n"
        "      --batch-wait MODE    adaptive (default): wait while more images "
        "are being\n"
        "                           decoded, and for the clients just "
        "answered at most\n"
        "                           1/16 of a full batch's time; full: "
        "always wait\n"
        "      --max-queue N        requests held at once; more are refused\n"
        "                           'overloaded' (%d)\n"
        "      --max-queue-bytes N  image bytes and pixels held at once "
        "(%zu)\n"
        "      --decode-threads N   threads decoding images (%d)\n"
        "      --threads N          threads of each forward pass (0: one per "
        "CPU)\n"
        "      --precision P        fp32 (default), bf16 or int8: the "
        "encoder's products in\n"
        "                           bfloat16 (oneDNN, with AVX512-BF16 or "
        "AMX) or in\n"
        "                           int8, about 2.4x as fast with VNNI "
        "(1.3x on AVX2), but\n"
        "                           it CHANGES NUMBERS (see vit classify "
        "--help)\n"
        "      --preprocess B       pil (default) or torchvision: which of\n"
        "                           transformers' two image processors to\n"
        "                           reproduce (see vit classify --help)\n"
        "      --deadline-ms MS     default deadline of a request (%d)\n"
        "      --max-images N       images per request (%d)\n"
        "      --max-texts N        texts per request (%d)\n"
        "      --max-text-bytes N   bytes per text (%d)\n"
        "      --max-image-bytes N  bytes per image (%zu)\n"
        "      --max-request-bytes N  bytes of all images of a request "
        "(%zu)\n"
        "      --max-pixels N       pixels per decoded image (%llu)\n"
        "      --max-request-pixels N  pixels of all images of a request, "
        "by their\n"
        "                           headers, refused before decoding\n"
        "                           (%llu; 0: no limit)\n"
        "      --heartbeat-ms MS    heartbeat interval with a broker (%d)\n"
        "      --metrics-bind EP    serve Prometheus metrics over HTTP here, at\n"
        "                           /metrics,\n"
        "                           e.g. tcp://127.0.0.1:9100 (port * for "
        "any)\n"
        "      --curve-secret-key FILE  with --bind: encrypt with CURVE, "
        "this server's\n"
        "                           key pair (a CZMQ certificate)\n"
        "      --allow-keys DIR     with --bind: admit only the client "
        "public keys\n"
        "                           in DIR\n"
        "      --curve-server-key FILE  with --connect: the broker's backend "
        "public key;\n"
        "                           CURVE to the broker\n"
        "      --curve-key FILE     with --connect: this worker's key pair; "
        "its public\n"
        "                           key must be in the broker's "
        "--allow-worker-keys\n"
        "      --index PATH         an embedding index to search and add to\n"
        "                           (index_* and search_* operations; made\n"
        "                           by 'vit index add' or created here)\n"
        "      --index-precision P  fp32 (default), fp16 or int8 in memory\n"
        "      --http HOST:PORT     with --bind: also answer HTTP/JSON here "
        "(the gateway\n"
        "                           of 'vit http', in this process; "
        "README.md, \"HTTP\")\n"
        "      --api-key KEY        with --http: require 'Authorization: "
        "Bearer KEY'\n"
        "                           on every route but /health\n"
        "      --api-key-file FILE  the key, the first line of FILE "
        "(default:\n"
        "                           $VIT_API_KEY when set)\n"
        "  -h, --help               show this help and exit\n"
        "\nSIGTERM or Ctrl-C drains: accepted work is finished, new work is "
        "refused,\nthen the exit status is 0. A second Ctrl-C exits at once "
        "(130).\n",
        d.max_batch, d.max_delay_ms, d.max_queue, d.max_queue_bytes,
        d.decode_threads,
        d.deadline_ms, d.max_images, d.max_texts, d.max_text_bytes,
        d.max_image_bytes, d.max_request_bytes,
        (unsigned long long)d.max_pixels,
        (unsigned long long)d.max_request_pixels, d.heartbeat_ms);
}

enum {
    O_MAX_BATCH = 256, O_MAX_DELAY, O_MAX_QUEUE, O_DECODE, O_DEADLINE,
    O_MAX_IMAGES, O_MAX_TEXTS, O_MAX_TEXT_BYTES, O_MAX_IMAGE_BYTES,
    O_MAX_REQ_BYTES, O_MAX_PIXELS, O_HEARTBEAT, O_CURVE_SECRET, O_ALLOW,
    O_FRONTEND, O_BACKEND, O_BATCH_WAIT, O_METRICS_BIND, O_THREADS,
    O_MAX_QUEUE_BYTES, O_INDEX, O_INDEX_PRECISION, O_CURVE_SERVER,
    O_CURVE_KEY, O_ALLOW_WORKERS, O_BACKEND_SECRET, O_PRECISION,
    O_PREPROCESS, O_MAX_REQ_PIXELS, O_HTTP, O_API_KEY, O_API_KEY_FILE,
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
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"bind", required_argument, NULL, 'b'},
        {"connect", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, 'n'},
        {"max-batch", required_argument, NULL, O_MAX_BATCH},
        {"max-delay-ms", required_argument, NULL, O_MAX_DELAY},
        {"max-queue", required_argument, NULL, O_MAX_QUEUE},
        {"batch-wait", required_argument, NULL, O_BATCH_WAIT},
        {"max-queue-bytes", required_argument, NULL, O_MAX_QUEUE_BYTES},
        {"metrics-bind", required_argument, NULL, O_METRICS_BIND},
        {"decode-threads", required_argument, NULL, O_DECODE},
        {"threads", required_argument, NULL, O_THREADS},
        {"deadline-ms", required_argument, NULL, O_DEADLINE},
        {"max-images", required_argument, NULL, O_MAX_IMAGES},
        {"max-texts", required_argument, NULL, O_MAX_TEXTS},
        {"max-text-bytes", required_argument, NULL, O_MAX_TEXT_BYTES},
        {"max-image-bytes", required_argument, NULL, O_MAX_IMAGE_BYTES},
        {"max-request-bytes", required_argument, NULL, O_MAX_REQ_BYTES},
        {"max-pixels", required_argument, NULL, O_MAX_PIXELS},
        {"max-request-pixels", required_argument, NULL, O_MAX_REQ_PIXELS},
        {"heartbeat-ms", required_argument, NULL, O_HEARTBEAT},
        {"curve-secret-key", required_argument, NULL, O_CURVE_SECRET},
        {"allow-keys", required_argument, NULL, O_ALLOW},
        {"curve-server-key", required_argument, NULL, O_CURVE_SERVER},
        {"curve-key", required_argument, NULL, O_CURVE_KEY},
        {"index", required_argument, NULL, O_INDEX},
        {"index-precision", required_argument, NULL, O_INDEX_PRECISION},
        {"precision", required_argument, NULL, O_PRECISION},
        {"preprocess", required_argument, NULL, O_PREPROCESS},
        {"http", required_argument, NULL, O_HTTP},
        {"api-key", required_argument, NULL, O_API_KEY},
        {"api-key-file", required_argument, NULL, O_API_KEY_FILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    vit_serve_options o = vit_serve_options_default();
    char secret[41], server_key[41], pub[41];
    const char *secret_file = NULL, *server_key_file = NULL, *key_file = NULL;
    const char *http = NULL, *api_key = NULL, *api_key_file = NULL;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:b:c:n:h", longopts, NULL)) != -1) {
        long long v = 0;
        const char *name = NULL;
        long long lo = 1, hi = 1000000;
        switch (c) {
        case 'm': o.model_dir = optarg; continue;
        case 'b': o.bind = optarg; continue;
        case 'c': o.connect = optarg; continue;
        case 'n': o.name = optarg; continue;
        case O_CURVE_SECRET: secret_file = optarg; continue;
        case O_ALLOW: o.allow_keys_dir = optarg; continue;
        case O_CURVE_SERVER: server_key_file = optarg; continue;
        case O_CURVE_KEY: key_file = optarg; continue;
        case O_METRICS_BIND: o.metrics_bind = optarg; continue;
        case O_INDEX: o.index_path = optarg; continue;
        case O_HTTP: http = optarg; continue;
        case O_API_KEY: api_key = optarg; continue;
        case O_API_KEY_FILE: api_key_file = optarg; continue;
        case O_INDEX_PRECISION:
            if (strcmp(optarg, "fp32") == 0)
                o.index_precision = 0;
            else if (strcmp(optarg, "fp16") == 0)
                o.index_precision = 1;
            else if (strcmp(optarg, "int8") == 0)
                o.index_precision = 2;
            else
                return usage_error("serve", serve_usage,
                                   "--index-precision is fp32, fp16 or int8, "
                                   "not '%s'", optarg);
            continue;
        case O_PRECISION: {
            int p = cli_precision(optarg);
            if (p < 0)
                return usage_error("serve", serve_usage,
                                   "--precision is fp32, int8 or bf16, not '%s'",
                                   optarg);
            o.precision = p;
            continue;
        }
        case O_PREPROCESS: {
            int tv = cli_preprocess_torchvision(optarg);
            if (tv < 0)
                return usage_error("serve", serve_usage,
                                   "--preprocess is pil or torchvision, not "
                                   "'%s'",
                                   optarg);
            o.preprocess = tv ? VIT_PREPROCESS_TORCHVISION : VIT_PREPROCESS_PIL;
            continue;
        }
        case O_BATCH_WAIT:
            if (strcmp(optarg, "full") != 0 && strcmp(optarg, "adaptive") != 0)
                return usage_error("serve", serve_usage,
                                   "--batch-wait is adaptive or full, not "
                                   "'%s'", optarg);
            o.batch_wait_full = strcmp(optarg, "full") == 0;
            continue;
        case 'h': serve_help(); return CLI_EXIT_OK;
        case ':':
            return usage_error("serve", serve_usage,
                               "option '%s' needs an argument",
                               argv[optind - 1]);
        case '?':
            return usage_error("serve", serve_usage, "unknown option '%s'",
                               argv[optind - 1]);
        case O_MAX_BATCH: name = "max-batch"; hi = 4096; break;
        case O_MAX_DELAY: name = "max-delay-ms"; lo = 0; hi = 60000; break;
        case O_MAX_QUEUE: name = "max-queue"; break;
        case O_DECODE: name = "decode-threads"; hi = 64; break;
        case O_THREADS: name = "threads"; lo = 0; hi = 1024; break;
        case O_DEADLINE: name = "deadline-ms"; hi = 86400000; break;
        case O_MAX_IMAGES: name = "max-images"; hi = 100000; break;
        case O_MAX_TEXTS: name = "max-texts"; hi = 100000; break;
        case O_MAX_TEXT_BYTES: name = "max-text-bytes"; hi = 1 << 24; break;
        case O_MAX_IMAGE_BYTES:
        case O_MAX_REQ_BYTES: name = "max-*-bytes"; hi = 1LL << 31; break;
        case O_MAX_QUEUE_BYTES: name = "max-queue-bytes"; hi = 1LL << 40; break;
        case O_MAX_PIXELS: name = "max-pixels"; hi = 1LL << 40; break;
        case O_MAX_REQ_PIXELS:
            name = "max-request-pixels"; lo = 0; hi = 1LL << 50; break;
        case O_HEARTBEAT: name = "heartbeat-ms"; lo = 10; hi = 600000; break;
        }
        if ((v = parse_num(optarg, lo, hi)) < 0)
            return usage_error("serve", serve_usage,
                               "--%s needs an integer from %lld to %lld, not "
                               "'%s'", name, lo, hi, optarg);
        switch (c) {
        case O_MAX_BATCH: o.max_batch = (int)v; break;
        case O_MAX_DELAY: o.max_delay_ms = (int)v; break;
        case O_MAX_QUEUE: o.max_queue = (int)v; break;
        case O_DECODE: o.decode_threads = (int)v; break;
        case O_THREADS: o.threads = (int)v; break;
        case O_DEADLINE: o.deadline_ms = (int)v; break;
        case O_MAX_IMAGES: o.max_images = (int)v; break;
        case O_MAX_TEXTS: o.max_texts = (int)v; break;
        case O_MAX_TEXT_BYTES: o.max_text_bytes = (int)v; break;
        case O_MAX_IMAGE_BYTES: o.max_image_bytes = (size_t)v; break;
        case O_MAX_REQ_BYTES: o.max_request_bytes = (size_t)v; break;
        case O_MAX_QUEUE_BYTES: o.max_queue_bytes = (size_t)v; break;
        case O_MAX_PIXELS: o.max_pixels = (uint64_t)v; break;
        case O_MAX_REQ_PIXELS: o.max_request_pixels = (uint64_t)v; break;
        case O_HEARTBEAT: o.heartbeat_ms = (int)v; break;
        }
    }
    if (optind < argc)
        return usage_error("serve", serve_usage, "unexpected argument '%s'",
                           argv[optind]);
    if (!o.model_dir)
        return usage_error("serve", serve_usage, "--model DIR is required");
    if (!o.bind == !o.connect)
        return usage_error("serve", serve_usage,
                           "give exactly one of --bind and --connect");
    if (o.connect && (secret_file || o.allow_keys_dir))
        return usage_error("serve", serve_usage,
                           "--curve-secret-key and --allow-keys are for "
                           "--bind; with --connect, CURVE takes "
                           "--curve-server-key and --curve-key");
    if (o.bind && (server_key_file || key_file))
        return usage_error("serve", serve_usage,
                           "--curve-server-key and --curve-key are for "
                           "--connect; with --bind, CURVE takes "
                           "--curve-secret-key");
    if (o.allow_keys_dir && !secret_file)
        return usage_error("serve", serve_usage,
                           "--allow-keys needs --curve-secret-key");
    if (!server_key_file != !key_file)
        return usage_error("serve", serve_usage,
                           "--curve-server-key and --curve-key go together");
    if (secret_file) {
        if (cli_read_key(secret_file, "secret", secret) != 0)
            return CLI_EXIT_FAILED;
        o.curve_secret_key = secret;
    }
    if (server_key_file) {
        if (cli_read_key(server_key_file, "public", server_key) != 0 ||
            cli_read_key(key_file, "public", pub) != 0 ||
            cli_read_key(key_file, "secret", secret) != 0)
            return CLI_EXIT_FAILED;
        o.curve_server_key = server_key;
        o.curve_public_key = pub;
        o.curve_secret_key = secret;
    }
    if ((api_key || api_key_file) && !http)
        return usage_error("serve", serve_usage,
                           "--api-key and --api-key-file go with --http");
    char gw_ep[512];
    if (http && (o.connect || secret_file))
        return usage_error("serve", serve_usage,
                           "--http goes with --bind, without CURVE; behind "
                           "a broker, or with CURVE, run 'vit http' "
                           "--connect to the broker or the worker");
    if (http && gateway_endpoint(o.bind, gw_ep, sizeof gw_ep) != 0)
        return usage_error("serve", serve_usage,
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
        if (cli_http_key(api_key, api_key_file, &key) != 0)
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
