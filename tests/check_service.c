/*
 * Tests of the ZeroMQ service as clients meet it: `vit serve` (VIT_BIN, set
 * by `make test`) is started as a process on an ipc:// endpoint in a fresh
 * temporary directory, driven through the client library and through raw
 * DEALER sockets that send what a broken or hostile client would, and
 * stopped with SIGTERM, whose exit status (0, and under `make asan` no
 * leak) is part of each test. Every wait is bounded in time, and every
 * process started here is killed and reaped, also when a test fails
 * (teardown, and an exit handler for a forked test that dies).
 */
#define _XOPEN_SOURCE 700

#include "service/client.h"
#include "testutil.h"
#include "vit/vit.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define FIXTURES_DIR "tests/fixtures"
#define MODEL FIXTURES_DIR "/vit_tiny"
#define NOISE_PNG "tests/fixtures/cli/noise.png"
#define GRADIENT_JPG "tests/fixtures/cli/gradient.jpg"

/* ---- processes ---- */

#define MAX_PROCS 16
static pid_t g_pids[MAX_PROCS];
static char g_tmp[128];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (g_pids[i] == pid)
            g_pids[i] = 0;
}

/* Waits up to timeout_ms for `pid`; returns its exit status (128 + signal
 * when killed), or -1 after killing it because it did not exit. */
static int reap(pid_t pid, int timeout_ms)
{
    double until = now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            forget(pid);
            return -1;
        }
        if (now_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            forget(pid);
            return -1;
        }
        sleep_ms(5);
    }
    forget(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void cleanup(void)
{
    kill_all();
    if (g_tmp[0]) {
        nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        g_tmp[0] = '\0';
    }
}

static void setup(void)
{
    static int registered;
    if (!registered) {
        atexit(cleanup);
        registered = 1;
    }
    /* ipc:// paths must be short (about 100 bytes), so /tmp, not $TMPDIR. */
    snprintf(g_tmp, sizeof g_tmp, "/tmp/vit_svc_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static void teardown(void)
{
    cleanup();
}

/* An ipc endpoint named `name` in the test's directory. */
static void endpoint(char *out, size_t size, const char *name)
{
    snprintf(out, size, "ipc://%s/%s", g_tmp, name);
}

/* Starts `vit ARGS...` (NULL-terminated) through tu_spawn, its log (what
 * it writes to stderr) in TMP/NAME.err, started afresh; teardown kills
 * it. */
static pid_t spawn(const char *name, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, name);
    while ((args[n] = va_arg(ap, const char *)) != NULL) {
        n++;
        ck_assert_int_lt(n, 47);
    }
    va_end(ap);
    char errpath[256];
    snprintf(errpath, sizeof errpath, "%s/%s.err", g_tmp, name);
    unlink(errpath);
    pid_t pid = tu_spawn(args, errpath);
    for (int i = 0; i < MAX_PROCS; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            return pid;
        }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("too many processes");
    return -1;
}

/* Sends SIGTERM and expects a clean exit (0) within 10 s. */
static void stop_ok(pid_t pid)
{
    kill(pid, SIGTERM);
    ck_assert_int_eq(reap(pid, 10000), 0);
}

/* ---- client helpers ---- */

static vit_client *client(const char *ep, int timeout_ms, int retries)
{
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = timeout_ms;
    o.retries = retries;
    vit_client *c = NULL;
    vit_error err = {{0}};
    ck_assert_msg(vit_client_new(ep, &o, &c, &err) == VIT_OK, "%s", err.msg);
    return c;
}

/* A call that must get a reply; returns the parsed body. */
static json_t *call(vit_client *c, const char *header, const vit_blob *b,
                    int n)
{
    vit_reply r;
    vit_error err = {{0}};
    ck_assert_msg(vit_client_call(c, header, b, n, &r, &err) == VIT_OK, "%s",
                  err.msg);
    json_t *o = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(o);
    vit_reply_free(&r);
    return o;
}

/* Waits until the server at `ep` answers health (at most 20 s: a worker
 * under ASan loads slowly on a busy machine). */
static void wait_ready(const char *ep, pid_t pid)
{
    vit_client *c = client(ep, 200, 0);
    double until = now_ms() + 20000;
    for (;;) {
        vit_reply r;
        if (vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
            VIT_OK) {
            vit_reply_free(&r);
            break;
        }
        ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0,
                      "the server exited before answering");
        ck_assert_msg(now_ms() < until, "the server did not come up");
    }
    vit_client_free(c);
}

static pid_t start_worker(const char *ep, ...)
{
    const char *args[40] = {"serve", "--model", MODEL, "--bind", ep};
    int n = 5;
    va_list ap;
    va_start(ap, ep);
    while ((args[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    pid_t pid = spawn("worker", args[0], args[1], args[2], args[3], args[4],
                      args[5], args[6], args[7], args[8], args[9], args[10],
                      args[11], args[12], args[13], args[14], args[15],
                      args[16], args[17], args[18], args[19], NULL);
    wait_ready(ep, pid);
    return pid;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static const char *err_code(json_t *o)
{
    json_t *e = json_object_get(o, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    return c ? c : (json_is_true(json_object_get(o, "ok")) ? "ok" : "?");
}

/* Runs `vit ARGS...` (tu_run): its stdout, malloc'd, and in *code its exit
 * status; its stderr is dropped. */
static tu_run_result g_run;
static char *stdout_of(int *code, tu_run_result *r)
{
    *code = r->code;
    free(r->err);
    return r->out;
}
#define run_capture(code, ...)                                              \
    stdout_of((code), (tu_run(&g_run, __VA_ARGS__), &g_run))

/* ---- results over the wire equal the local command's ---- */

START_TEST(test_wire_equals_local)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, NULL);
    static const char *const fmts[] = {"text", "jsonl", "csv"};
    for (int i = 0; i < 3; i++) {
        int c1, c2;
        char *remote = run_capture(&c1, "client", "--connect", ep, "classify",
                                   "--top-k", "3", "--format", fmts[i],
                                   "tests/fixtures/cli", NULL);
        char *local = run_capture(&c2, "classify", "--model", MODEL,
                                  "--top-k", "3", "--format", fmts[i],
                                  "tests/fixtures/cli", NULL);
        ck_assert_int_eq(c1, 0);
        ck_assert_int_eq(c2, 0);
        ck_assert_msg(strlen(local) > 20, "local output: %s", local);
        ck_assert_str_eq(remote, local);
        free(remote);
        free(local);
    }
    int c1, c2;
    char *remote = run_capture(&c1, "client", "--connect", ep, "classify",
                               "--logits", "--format", "jsonl", NOISE_PNG,
                               GRADIENT_JPG, NULL);
    char *local = run_capture(&c2, "classify", "--model", MODEL, "--logits",
                              "--format", "jsonl", NOISE_PNG, GRADIENT_JPG,
                              NULL);
    ck_assert_int_eq(c1, 0);
    ck_assert_str_eq(remote, local);
    free(remote);
    free(local);
    stop_ok(w);
}
END_TEST

/* A worker started with `OPTION VALUE` says so in info (`"KEY": "VALUE"`)
 * and answers as the local command with the same option does, which
 * differs from the default's answer (the option really ran). */
static void worker_like_local(const char *tag, const char *option,
                              const char *value, const char *key)
{
    char ep[200];
    endpoint(ep, sizeof ep, tag);
    pid_t w = start_worker(ep, option, value, NULL);
    int c1, c2;
    char *info = run_capture(&c1, "client", "--connect", ep, "info", NULL);
    ck_assert_int_eq(c1, 0);
    char want[128];
    snprintf(want, sizeof want, "\"%s\": \"%s\"", key, value);
    ck_assert_msg(strstr(info, want) != NULL, "%s", info);
    ck_assert_msg(strstr(info, "\"cpu\": \"") != NULL, "%s", info);
    free(info);
    char *remote = run_capture(&c1, "client", "--connect", ep, "classify",
                               "--logits", "--format", "jsonl",
                               "tests/fixtures/cli", NULL);
    char *local = run_capture(&c2, "classify", "--model", MODEL, option,
                              value, "--logits", "--format", "jsonl",
                              "tests/fixtures/cli", NULL);
    char *plain = run_capture(&c2, "classify", "--model", MODEL, "--logits",
                              "--format", "jsonl", "tests/fixtures/cli", NULL);
    ck_assert_int_eq(c1, 0);
    ck_assert_int_eq(c2, 0);
    ck_assert_msg(strlen(local) > 20, "local output: %s", local);
    ck_assert_str_eq(remote, local);
    ck_assert_str_ne(local, plain);
    free(remote), free(local), free(plain);
    stop_ok(w);
}

/* int8: each row's quantization is its own, so batching with other
 * requests changes nothing. */
START_TEST(test_int8_worker)
{
    worker_like_local("w8", "--precision", "int8", "precision");
}
END_TEST

START_TEST(test_bf16_worker)
{
    worker_like_local("wb16", "--precision", "bf16", "precision");
}
END_TEST

START_TEST(test_torchvision_worker)
{
    worker_like_local("wtv", "--preprocess", "torchvision", "preprocess");
}
END_TEST

/* ---- 8 clients x 200 requests against one worker ---- */

typedef struct {
    const char *ep;
    int id, n;
    const unsigned char *img[2];
    size_t size[2];
    vit_prediction want[2][3];
    int ok, wrong, lost;
} load_arg;

static void *load_main(void *p)
{
    load_arg *a = p;
    vit_client *c = NULL;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 10000;
    o.retries = 1;
    if (vit_client_new(a->ep, &o, &c, NULL) != VIT_OK) {
        a->lost = a->n;
        return NULL;
    }
    for (int i = 0; i < a->n; i++) {
        int which = (a->id + i) & 1;
        vit_blob b = {a->img[which], a->size[which]};
        vit_reply r;
        if (vit_client_call(c, "{\"op\":\"classify\",\"top_k\":3}", &b, 1, &r,
                            NULL) != VIT_OK) {
            a->lost++;
            continue;
        }
        json_t *o2 = json_loads(r.body, 0, NULL);
        json_t *labels = json_object_get(
            json_array_get(json_object_get(o2, "results"), 0), "labels");
        int good = json_array_size(labels) == 3;
        for (int j = 0; good && j < 3; j++) {
            json_t *e = json_array_get(labels, (size_t)j);
            float s = (float)json_real_value(json_object_get(e, "score"));
            /* Scores may differ in the last bits with the batch's
             * composition (the matrix kernels block by batch size). */
            good = json_integer_value(json_object_get(e, "id")) ==
                       a->want[which][j].id &&
                   fabsf(s - a->want[which][j].score) < 1e-5f;
        }
        a->ok += good;
        a->wrong += !good;
        json_decref(o2);
        vit_reply_free(&r);
    }
    vit_client_free(c);
    return NULL;
}

START_TEST(test_concurrent_clients)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, "--max-delay-ms", "3", NULL);

    /* The expected answers, from the library in this process. */
    vit_model *m;
    vit_state *s;
    vit_error err = {{0}};
    ck_assert(vit_model_load(MODEL, NULL, &m, &err) == VIT_OK);
    ck_assert(vit_state_new(m, &s, &err) == VIT_OK);
    load_arg proto = {.ep = ep, .n = 200};
    const char *paths[2] = {NOISE_PNG, GRADIENT_JPG};
    for (int k = 0; k < 2; k++) {
        proto.img[k] = read_all(paths[k], &proto.size[k]);
        vit_image img;
        ck_assert(vit_image_decode(proto.img[k], proto.size[k], NULL, &img,
                                   &err) == VIT_OK);
        ck_assert(vit_classify(s, &img, 1, 3, proto.want[k], NULL, &err) ==
                  VIT_OK);
        vit_image_free(&img);
    }
    vit_state_free(s);
    vit_model_free(m);

    enum { N = 8 };
    load_arg a[N];
    pthread_t th[N];
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        a[i] = proto;
        a[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_main, &a[i]), 0);
    }
    int ok = 0, wrong = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
        wrong += a[i].wrong;
        lost += a[i].lost;
    }
    double dt = now_ms() - t0;
    printf("service: %d clients x %d requests: %d right, %d wrong, %d lost "
           "in %.0f ms (%.0f requests/s)\n",
           N, proto.n, ok, wrong, lost, dt, 1e3 * (ok + wrong) / dt);
    ck_assert_int_eq(wrong, 0);
    ck_assert_int_eq(lost, 0);
    ck_assert_int_eq(ok, N * proto.n);

    vit_client *c = client(ep, 5000, 0);
    json_t *mt = call(c, "{\"op\":\"metrics\"}", NULL, 0);
    json_t *sizes = json_object_get(json_object_get(mt, "batches"), "sizes");
    const char *key;
    json_t *v;
    int largest = 0;
    json_object_foreach(sizes, key, v)
    {
        if (atoi(key) > largest)
            largest = atoi(key);
    }
    char *dumped = json_dumps(json_object_get(mt, "batches"), JSON_COMPACT);
    printf("service: batches %s\n", dumped);
    free(dumped);
    ck_assert_msg(largest > 1, "no batch held more than one image");
    json_t *cl = json_object_get(json_object_get(mt, "requests"), "classify");
    ck_assert_int_eq(json_integer_value(json_object_get(cl, "ok")),
                     N * proto.n);
    json_decref(mt);
    vit_client_free(c);
    free((void *)proto.img[0]);
    free((void *)proto.img[1]);
    stop_ok(w);
}
END_TEST

/* ---- raw DEALER sockets ---- */

/* A DEALER in `ctx` connected to `ep`, closing at once when closed. */
static void *dealer(void *ctx, const char *ep)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    ck_assert_ptr_nonnull(d);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(d, ep), 0);
    return d;
}

/* Sends a request (PROTOCOL.md 2.1) with one image frame, or none when
 * `img` is NULL. */
static void send_req(void *d, const char *service, const char *rid,
                     const char *header, const void *img, size_t n)
{
    const char cmd = 1;
    zmq_send(d, "", 0, ZMQ_SNDMORE);
    zmq_send(d, "VITC01", 6, ZMQ_SNDMORE);
    zmq_send(d, &cmd, 1, ZMQ_SNDMORE);
    zmq_send(d, service, strlen(service), ZMQ_SNDMORE);
    zmq_send(d, rid, strlen(rid), ZMQ_SNDMORE);
    zmq_send(d, header, strlen(header), img ? ZMQ_SNDMORE : 0);
    if (img)
        zmq_send(d, img, n, 0);
}

/* ---- batches stay full under closed-loop clients ---- */

/* Appends tensor NAME of `n` floats with the shape (dims) to a safetensors
 * header being built in `h`, at data offset *off. */
static void st_tensor(char *h, size_t size, size_t *off, const char *name,
                      int nd, const int *dims)
{
    size_t n = 1, len = strlen(h);
    len += (size_t)snprintf(h + len, size - len, "%s\"%s\":{\"dtype\":\"F32\","
                            "\"shape\":[", len > 1 ? "," : "", name);
    for (int i = 0; i < nd; i++) {
        n *= (size_t)dims[i];
        len += (size_t)snprintf(h + len, size - len, "%s%d", i ? "," : "",
                                dims[i]);
    }
    snprintf(h + len, size - len, "],\"data_offsets\":[%zu,%zu]}", *off,
             *off + 4 * n);
    *off += 4 * n;
}

/* A ViT classifier in TMP/slow whose forward pass takes much longer than a
 * client's round trip, for tests of batching: 160x160 images, hidden size
 * 256, 4 layers (0.7 GFLOP an image, tens of ms), all weights zero (a
 * sparse file). */
static void slow_model(char *dir, size_t size)
{
    enum { D = 256, F = 1024, LAYERS = 4, T = 101, LABELS = 10 };
    snprintf(dir, size, "%s/slow", g_tmp);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"ViTForImageClassification\"], "
             "\"model_type\": \"vit\", \"hidden_size\": %d, "
             "\"intermediate_size\": %d, \"num_attention_heads\": 4, "
             "\"num_hidden_layers\": %d, \"image_size\": 160, "
             "\"patch_size\": 16, \"num_channels\": 3, \"hidden_act\": "
             "\"gelu\", \"layer_norm_eps\": 1e-12, \"qkv_bias\": true, "
             "\"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\", "
             "\"3\": \"d\", \"4\": \"e\", \"5\": \"f\", \"6\": \"g\", "
             "\"7\": \"h\", \"8\": \"i\", \"9\": \"j\"}}",
             D, F, LAYERS);
    ck_assert_int_eq(tu_write(path, cfg, strlen(cfg)), 0);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    const char *pre = "{\"do_normalize\": true, \"do_rescale\": true, "
                      "\"do_resize\": true, \"image_mean\": [0.5, 0.5, 0.5], "
                      "\"image_std\": [0.5, 0.5, 0.5], \"resample\": 2, "
                      "\"rescale_factor\": 0.00392156862745098, \"size\": "
                      "{\"height\": 160, \"width\": 160}}";
    ck_assert_int_eq(tu_write(path, pre, strlen(pre)), 0);

    static char h[16384];
    size_t off = 0;
    strcpy(h, "{");
    const int d1[] = {D}, dd[] = {D, D}, fd[] = {F, D}, df[] = {D, F},
              f1[] = {F}, cls[] = {1, 1, D}, pos[] = {1, T, D},
              patch[] = {D, 3, 16, 16}, head[] = {LABELS, D},
              l1[] = {LABELS};
    st_tensor(h, sizeof h, &off, "classifier.bias", 1, l1);
    st_tensor(h, sizeof h, &off, "classifier.weight", 2, head);
    st_tensor(h, sizeof h, &off, "vit.embeddings.cls_token", 3, cls);
    st_tensor(h, sizeof h, &off,
              "vit.embeddings.patch_embeddings.projection.bias", 1, d1);
    st_tensor(h, sizeof h, &off,
              "vit.embeddings.patch_embeddings.projection.weight", 4, patch);
    st_tensor(h, sizeof h, &off, "vit.embeddings.position_embeddings", 3,
              pos);
    st_tensor(h, sizeof h, &off, "vit.layernorm.bias", 1, d1);
    st_tensor(h, sizeof h, &off, "vit.layernorm.weight", 1, d1);
    static const struct {
        const char *name;
        int which;  /* 0 (D), 1 (D, D), 2 (F), 3 (F, D), 4 (D, F) */
    } per_layer[] = {
        {"attention.attention.key.bias", 0},
        {"attention.attention.key.weight", 1},
        {"attention.attention.query.bias", 0},
        {"attention.attention.query.weight", 1},
        {"attention.attention.value.bias", 0},
        {"attention.attention.value.weight", 1},
        {"attention.output.dense.bias", 0},
        {"attention.output.dense.weight", 1},
        {"intermediate.dense.bias", 2},
        {"intermediate.dense.weight", 3},
        {"layernorm_after.bias", 0},
        {"layernorm_after.weight", 0},
        {"layernorm_before.bias", 0},
        {"layernorm_before.weight", 0},
        {"output.dense.bias", 0},
        {"output.dense.weight", 4},
    };
    const int *shapes[] = {d1, dd, f1, fd, df};
    const int nds[] = {1, 2, 1, 2, 2};
    for (int l = 0; l < LAYERS; l++)
        for (size_t k = 0; k < sizeof per_layer / sizeof *per_layer; k++) {
            char name[128];
            snprintf(name, sizeof name, "vit.encoder.layer.%d.%s", l,
                     per_layer[k].name);
            st_tensor(h, sizeof h, &off, name, nds[per_layer[k].which],
                      shapes[per_layer[k].which]);
        }
    strcat(h, "}");
    size_t hl = strlen(h);
    while (hl % 8)
        h[hl++] = ' ';
    h[hl] = '\0';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(out, 0);
    uint64_t n = hl;
    ck_assert_int_eq(write(out, &n, 8), 8);
    ck_assert_int_eq(write(out, h, hl), (ssize_t)hl);
    ck_assert_int_eq(ftruncate(out, (off_t)(8 + hl + off)), 0);
    close(out);
}

typedef struct {
    const char *ep;
    const unsigned char *img;
    size_t n;
    int requests, ok;
} loop_arg;

/* A closed-loop client: each request sent when the last one's reply is
 * in. */
static void *loop_main(void *p)
{
    loop_arg *a = p;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 60000;
    o.retries = 0;
    vit_client *c;
    if (vit_client_new(a->ep, &o, &c, NULL) != VIT_OK)
        return NULL;
    vit_blob b = {a->img, a->n};
    for (int i = 0; i < a->requests; i++) {
        vit_reply r;
        if (vit_client_call(c, "{\"op\":\"classify\",\"top_k\":1}", &b, 1,
                            &r, NULL) != VIT_OK)
            break;
        a->ok += !vit_reply_error(&r, NULL, NULL, 0, NULL);
        vit_reply_free(&r);
    }
    vit_client_free(c);
    return NULL;
}

/* Four closed-loop clients on a worker whose batches hold four: one client
 * starts first, so that its first request is computed alone while the
 * other three arrive. When that pass ends the three are queued, and a
 * worker that ran them at once would keep the clients in two groups
 * forever, in passes of one and three; it waits the moment it takes the
 * first client to send again, and from then on every pass is full. That
 * moment is the scheduler's: on a machine busy with other work a client
 * can miss it, so the run is tried up to three times, and one with the
 * groups joined is enough (a worker that does not wait splits them in
 * every run). Returns the passes the run took. */
static long batches_run(const char *ep, const unsigned char *png, size_t n)
{
    enum { C = 4, R = 8 };
    loop_arg a[C];
    pthread_t th[C];
    for (int i = 0; i < C; i++) {
        a[i] = (loop_arg){.ep = ep, .img = png, .n = n, .requests = R};
        ck_assert_int_eq(pthread_create(&th[i], NULL, loop_main, &a[i]), 0);
        if (i == 0)
            sleep_ms(5);
    }
    int ok = 0;
    for (int i = 0; i < C; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
    }
    ck_assert_int_eq(ok, C * R);
    vit_client *c = client(ep, 5000, 0);
    json_t *mt = call(c, "{\"op\":\"metrics\"}", NULL, 0);
    json_t *b = json_object_get(mt, "batches");
    long passes = (long)json_integer_value(json_object_get(b, "count"));
    char *sizes = json_dumps(json_object_get(b, "sizes"), JSON_COMPACT);
    printf("service: 4 closed-loop clients x %d requests, batches of up to "
           "4: %ld passes, sizes %s, %.2f s computing\n", R, passes, sizes,
           json_real_value(json_object_get(b, "busy_s")));
    ck_assert(json_real_value(json_object_get(b, "busy_s")) > 0);
    free(sizes);
    json_decref(mt);
    vit_client_free(c);
    return passes;
}

START_TEST(test_batches_stay_full)
{
    char model[256], ep[200];
    slow_model(model, sizeof model);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    long passes = 0;
    for (int run = 0; run < 3; run++) {
        endpoint(ep, sizeof ep, run == 0 ? "w" : run == 1 ? "w2" : "w3");
        pid_t w = spawn("worker", "serve", "--model", model, "--bind", ep,
                        "--max-batch", "4", "--max-delay-ms", "50", NULL);
        wait_ready(ep, w);
        passes = batches_run(ep, png, n);
        stop_ok(w);
        /* 32 items: 8 full passes (and one first and one last part-full
         * one at most) where the groups join; 16 where they stay apart. */
        if (passes <= 11)
            break;
    }
    ck_assert_msg(passes <= 11, "%ld passes for 32 items in each of 3 runs",
                  passes);
    free(png);
}
END_TEST

/* ---- malformed input ---- */

/* Sends raw frames on a DEALER and returns the reply body's error code
 * (a static buffer), or NULL when no reply came within timeout_ms. */
/* The request id and body of the last reply raw() read. */
static char raw_rid[4096], raw_body[4096];

static const char *raw(void *sock, int timeout_ms, int n, ...)
{
    static char code[64];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const void *data = va_arg(ap, const void *);
        size_t size = va_arg(ap, size_t);
        ck_assert_int_ge(zmq_send(sock, data, size,
                                  i + 1 < n ? ZMQ_SNDMORE : 0), 0);
    }
    va_end(ap);
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    /* The reply: "", VITC01, 0x03, service, request id, body, ... */
    static char frames[8][4096];
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
        more = zmq_msg_more(&m);
        if (nf < 8) {
            size_t len = zmq_msg_size(&m) < 4095 ? zmq_msg_size(&m) : 4095;
            memcpy(frames[nf], zmq_msg_data(&m), len);
            frames[nf][len] = '\0';
            nf++;
        }
        zmq_msg_close(&m);
    }
    ck_assert_int_ge(nf, 6);
    ck_assert_str_eq(frames[1], "VITC01");
    ck_assert_int_eq(frames[2][0], 3);
    snprintf(raw_rid, sizeof raw_rid, "%s", frames[4]);
    snprintf(raw_body, sizeof raw_body, "%s", frames[5]);
    json_t *o = json_loads(frames[5], 0, NULL);
    ck_assert_ptr_nonnull(o);
    snprintf(code, sizeof code, "%s", err_code(o));
    json_decref(o);
    return code;
}

/* A fixed pseudo-random sequence (Numerical Recipes' LCG). */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

#define S(x) (x), strlen(x)
#define F(p, n) (const void *)(p), (size_t)(n)

START_TEST(test_malformed_sweep)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, "--max-image-bytes", "100000",
                           "--max-request-bytes", "300000", "--max-images",
                           "4", "--max-pixels", "2000", NULL);
    size_t png_n, jpg_n;
    unsigned char *png = read_all(NOISE_PNG, &png_n);  /* 40 x 30 */
    unsigned char *jpg = read_all(GRADIENT_JPG, &jpg_n);  /* 48 x 48 */
    /* Over max-image-bytes (a reply), and over the frame cap of twice that
     * (never read). */
    size_t big_n = 150000, huge_n = 1 << 20;
    unsigned char *big = calloc(1, huge_n);
    ck_assert_ptr_nonnull(big);

    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    const char cmd = 1, bad_cmd = 9;
    struct {
        const char *what, *want;
        const char *got;
    } r[40];
    int n = 0;
#define CASE(what_, want_, ...)                                         \
    do {                                                                \
        r[n].what = what_;                                              \
        r[n].want = want_;                                              \
        r[n].got = raw(d, 5000, __VA_ARGS__);                           \
        ck_assert_msg(r[n].got, "%s: no reply", what_);                 \
        ck_assert_msg(strcmp(r[n].got, want_) == 0, "%s: got %s, want %s", \
                      what_, r[n].got, want_);                          \
        n++;                                                            \
    } while (0)

    CASE("one garbage frame", "bad_request", 1, S("garbage"));
    CASE("one empty frame", "bad_request", 1, F("", 0));
    CASE("delimiter only", "bad_request", 2, F("", 0), S("VITC01"));
    CASE("no delimiter", "bad_request", 6, S("x"), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"health\"}"));
    CASE("wrong protocol", "bad_request", 6, F("", 0), S("MDPC02"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"health\"}"));
    CASE("wrong command", "bad_request", 6, F("", 0), S("VITC01"),
         F(&bad_cmd, 1), F("", 0), S("r"), S("{\"op\":\"health\"}"));
    CASE("no header", "bad_request", 5, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"));
    CASE("empty request id", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), F("", 0), S("{\"op\":\"health\"}"));
    CASE("empty header", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), F("", 0));
    CASE("bad JSON", "bad_request", 6, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\": \"classify\""));
    CASE("JSON not an object", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("[1,2]"));
    CASE("garbage header", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), F(big, 100));
    CASE("no op", "missing_field", 6, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"top_k\":3}"));
    CASE("op not a string", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":3}"));
    CASE("unknown op", "unknown_op", 6, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"fly\"}"));
    CASE("unknown service", "unknown_service", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), S("other_model"), S("r"), S("{\"op\":\"health\"}"));
    CASE("bad version", "bad_request", 6, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"health\",\"v\":2}"));
    CASE("bad top_k", "bad_request", 7, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"classify\",\"top_k\":0}"),
         F(png, png_n));
    CASE("classify without images", "missing_field", 6, F("", 0),
         S("VITC01"), F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"classify\"}"));
    CASE("health with data", "bad_request", 7, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"health\"}"),
         F(png, png_n));
    CASE("empty image", "bad_image", 7, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"classify\"}"), F("", 0));
    CASE("garbage image", "bad_image", 7, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"classify\"}"), S("not an image"));
    CASE("truncated PNG", "bad_image", 7, F("", 0), S("VITC01"), F(&cmd, 1),
         F("", 0), S("r"), S("{\"op\":\"classify\"}"), F(png, png_n / 2));
    CASE("PNG cut in its header", "bad_image", 7, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"embed_image\"}"),
         F(png, 20));
    CASE("image over max-pixels", "too_large", 7, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"classify\"}"),
         F(jpg, jpg_n));
    CASE("image over max-image-bytes", "too_large", 7, F("", 0),
         S("VITC01"), F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"classify\"}"), F(big, big_n));
    CASE("too many images", "too_large", 11, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"classify\"}"),
         F(jpg, jpg_n), F(jpg, jpg_n), F(jpg, jpg_n), F(jpg, jpg_n),
         F(jpg, jpg_n));
    CASE("texts for a ViT", "no_text_tower", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"embed_text\",\"texts\":[\"a cat\"]}"));
    CASE("match without texts", "missing_field", 7, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"), S("{\"op\":\"match\"}"),
         F(jpg, jpg_n));
    CASE("zero-shot labels for a ViT", "no_text_tower", 7, F("", 0),
         S("VITC01"), F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"classify\",\"labels\":[\"a\"]}"), F(png, png_n));
    CASE("template without labels", "missing_field", 7, F("", 0),
         S("VITC01"), F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"classify\",\"template\":\"a {}\"}"), F(png, png_n));
    CASE("template without {}", "bad_request", 7, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"classify\",\"labels\":[\"a\"],\"template\":\"x\"}"),
         F(png, png_n));
    CASE("texts not strings", "bad_request", 6, F("", 0), S("VITC01"),
         F(&cmd, 1), F("", 0), S("r"),
         S("{\"op\":\"embed_text\",\"texts\":[1]}"));
    /* Random messages from a fixed seed: any number of frames of random
     * bytes, sometimes behind a valid envelope or header, sometimes with a
     * mangled copy of a real image. Each gets a reply with some code. */
    uint32_t seed = 12345;
#define RND() lcg(&seed)
    static const char *const headers[] = {
        "{\"op\":\"classify\"}", "{\"op\":\"embed_image\"}",
        "{\"op\":\"match\",\"texts\":[\"a\"]}", "{\"op\":\"health\"}",
        "{\"op\":\"classify\",\"top_k\":\"x\"}", "{}", "null", "{\"op\":"};
    int fuzz = 0;
    for (int it = 0; it < 300; it++) {
        int nf = 1 + (int)(RND() % 10);
        unsigned char frame[400];
        for (int f = 0; f < nf; f++) {
            size_t len = RND() % sizeof frame;
            const void *data = frame;
            int envelope = RND() % 4 != 0;
            if (envelope && f == 0)
                len = 0;
            else if (envelope && f == 1)
                data = "VITC01", len = 6;
            else if (envelope && f == 2)
                data = &cmd, len = 1;
            else if (envelope && f == 5) {
                const char *h = headers[RND() % 8];
                data = h, len = strlen(h);
            } else if (f >= 6 && RND() % 2) {
                /* A real image with bytes flipped or cut. */
                len = RND() % png_n;
                memcpy(big, png, png_n);
                for (int k = 0; k < 8; k++) {
                    size_t at = RND() % png_n;
                    big[at] ^= (unsigned char)RND();
                }
                data = big;
            } else {
                for (size_t k = 0; k < len; k++)
                    frame[k] = (unsigned char)RND();
            }
            ck_assert_int_ge(zmq_send(d, data, len,
                                      f + 1 < nf ? ZMQ_SNDMORE : 0), 0);
        }
        zmq_pollitem_t pi = {d, 0, ZMQ_POLLIN, 0};
        ck_assert_msg(zmq_poll(&pi, 1, 5000) == 1, "message %d: no reply", it);
        int more = 1, k = 0;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            ck_assert_int_ge(zmq_msg_recv(&m, d, 0), 0);
            if (k == 1)
                ck_assert_int_eq(zmq_msg_size(&m), 6);
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            k++;
        }
        ck_assert_int_ge(k, 6);
        fuzz++;
    }
#undef RND
    /* A frame over ZMQ_MAXMSGSIZE is never read: the connection drops. */
    ck_assert_ptr_null(raw(d, 500, 7, F("", 0), S("VITC01"), F(&cmd, 1),
                           F("", 0), S("r"), S("{\"op\":\"classify\"}"),
                           F(big, huge_n)));
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(big);
    free(jpg);
    printf("service: %d malformed requests answered with their codes, %d "
           "random ones answered\n", n, fuzz);

    /* Still healthy, and still right. */
    vit_client *c = client(ep, 5000, 0);
    json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")),
                     "serving");
    json_decref(h);
    vit_blob b = {png, png_n};
    json_t *o = call(c, "{\"op\":\"classify\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "ok");
    json_decref(o);
    free(png);
    vit_client_free(c);
    stop_ok(w);
}
END_TEST

/* ---- info, embeddings ---- */

START_TEST(test_info_and_embed)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, "--name", "digits", "--metrics-bind",
                           "tcp://127.0.0.1:*", NULL);
    vit_client *c = client(ep, 5000, 0);
    json_t *o = call(c, "{\"op\":\"info\"}", NULL, 0);
    json_t *m = json_object_get(o, "model");
    ck_assert_str_eq(json_string_value(json_object_get(m, "name")), "digits");
    ck_assert_int_eq(json_integer_value(json_object_get(m, "num_labels")), 10);
    int dim = (int)json_integer_value(json_object_get(m, "embed_dim"));
    ck_assert_int_gt(dim, 0);
    json_decref(o);

    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    vit_blob b[2] = {{png, n}, {png, n}};
    vit_reply r;
    ck_assert(vit_client_call(c, "{\"op\":\"embed_image\"}", b, 2, &r, NULL) ==
              VIT_OK);
    ck_assert_str_eq(r.service, "digits");
    ck_assert_int_eq(r.n_data, 1);
    ck_assert_int_eq(r.data[0].size, 2 * dim * sizeof(float));

    /* The same numbers as the library's. */
    vit_model *model;
    vit_state *s;
    ck_assert(vit_model_load(MODEL, NULL, &model, NULL) == VIT_OK);
    ck_assert(vit_state_new(model, &s, NULL) == VIT_OK);
    vit_image img;
    ck_assert(vit_image_decode(png, n, NULL, &img, NULL) == VIT_OK);
    vit_model_info info;
    vit_model_get_info(model, &info);
    size_t chw = (size_t)info.channels * info.image_h * info.image_w;
    float *px = malloc(chw * sizeof(float)), *e = malloc(dim * sizeof(float));
    ck_assert(vit_preprocess(model, &img, 1, px, NULL) == VIT_OK);
    ck_assert(vit_embed_pixels(s, px, 1, e, NULL) == VIT_OK);
    /* Frames have no alignment; copy before reading floats. */
    float *got = malloc(r.data[0].size);
    memcpy(got, r.data[0].data, r.data[0].size);
    double maxd = 0;
    for (int i = 0; i < dim; i++) {
        double dd = fabs((double)got[i] - e[i]) +
                    fabs((double)got[dim + i] - e[i]);
        maxd = dd > maxd ? dd : maxd;
    }
    printf("service: embed_image over the wire vs library: max diff %g\n",
           maxd);
    ck_assert(maxd < 1e-5);
    free(got);
    free(px);
    free(e);
    vit_image_free(&img);
    vit_state_free(s);
    vit_model_free(model);
    vit_reply_free(&r);
    free(png);

    /* Metrics as Prometheus text: by the operation, and over HTTP. */
    o = call(c, "{\"op\":\"metrics\",\"format\":\"prometheus\"}", NULL, 0);
    const char *text = json_string_value(json_object_get(o, "text"));
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "vit_requests_total{model=\"digits\","
                               "op=\"embed_image\",code=\"ok\"} 1\n"),
                  "%s", text);
    json_decref(o);
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/worker.err", g_tmp);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int port = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "http://127.0.0.1:");
        if (p)
            port = atoi(p + strlen("http://127.0.0.1:"));
    }
    fclose(f);
    ck_assert_int_gt(port, 0);
    /* libmicrohttpd's: /metrics for GET, 404 elsewhere, 405 for others. */
    static const struct {
        const char *req, *status;
    } scrapes[] = {
        {"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", " 200 OK"},
        {"GET /other HTTP/1.0\r\nHost: x\r\n\r\n", " 404 "},
        {"DELETE /metrics HTTP/1.0\r\nHost: x\r\n\r\n", " 405 "},
    };
    for (size_t k = 0; k < sizeof scrapes / sizeof *scrapes; k++) {
        int fd = tu_tcp_connect(port);
        const char *get = scrapes[k].req;
        ck_assert_int_eq(write(fd, get, strlen(get)), (ssize_t)strlen(get));
        char resp[16384];
        size_t rn = 0;
        for (ssize_t nr; rn < sizeof resp - 1 &&
                          (nr = read(fd, resp + rn, sizeof resp - 1 - rn)) > 0;)
            rn += (size_t)nr;
        resp[rn] = '\0';
        close(fd);
        char *eol = strstr(resp, "\r\n");
        ck_assert_msg(eol && strncmp(resp, "HTTP/1.", 7) == 0 &&
                          strstr(resp, scrapes[k].status) &&
                          strstr(resp, scrapes[k].status) < eol,
                      "%s: %s", get, resp);
        if (k == 0) {
            ck_assert(strstr(resp, "vit_batch_size_bucket{model=\"digits\","
                                   "le=\"2\"}"));
            /* One work request so far (the embed_image above). */
            ck_assert_msg(strstr(resp, "vit_request_duration_seconds_bucket{"
                                       "model=\"digits\",le=\"+Inf\"} 1\r\n") ||
                              strstr(resp, "vit_request_duration_seconds_"
                                           "bucket{model=\"digits\",le=\"+Inf\"}"
                                           " 1\n"),
                          "%s", resp);
            ck_assert(strstr(resp, "# TYPE vit_request_duration_seconds "
                                   "histogram"));
            printf("service: metrics over HTTP, %zu bytes\n", rn);
        }
    }
    vit_client_free(c);
    stop_ok(w);
}
END_TEST

/* ---- backpressure, deadlines, health while busy ---- */

START_TEST(test_overload_deadline_health)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    /* A long batching delay keeps accepted work waiting in the queue. */
    pid_t w = start_worker(ep, "--max-queue", "3", "--max-delay-ms", "400",
                           "--max-batch", "64", "--batch-wait", "full", NULL);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    /* 6 requests at once: 3 are queued, 3 refused at once; one more asks
     * for a deadline shorter than the batching delay. */
    for (int i = 0; i < 6; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "q%d", i);
        const char *hdr = i == 0 ? "{\"op\":\"classify\",\"deadline_ms\":50}"
                                 : "{\"op\":\"classify\"}";
        send_req(d, "", rid, hdr, png, n);
    }
    /* Health is answered while the queue is full and waiting. */
    vit_client *c = client(ep, 5000, 0);
    double until = now_ms() + 3000, dt = 0;
    for (int depth = 0; depth < 3;) {
        double t0 = now_ms();
        json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
        dt = now_ms() - t0 > dt ? now_ms() - t0 : dt;
        depth = (int)json_integer_value(json_object_get(h, "queue_depth"));
        json_decref(h);
        ck_assert_msg(now_ms() < until, "the queue never held 3 (%d)", depth);
    }
    /* Well under the 400 ms the queued work waits. */
    ck_assert_msg(dt < 250, "health took %.0f ms", dt);

    int ok = 0, over = 0, late = 0;
    for (int i = 0; i < 6; i++) {
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
        char body[4096] = "";
        int more = 1, k = 0;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, d, 0);
            if (k++ == 5) {
                size_t len = zmq_msg_size(&m) < 4095 ? zmq_msg_size(&m) : 4095;
                memcpy(body, zmq_msg_data(&m), len);
                body[len] = '\0';
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        json_t *o = json_loads(body, 0, NULL);
        const char *code = err_code(o);
        ok += strcmp(code, "ok") == 0;
        over += strcmp(code, "overloaded") == 0;
        late += strcmp(code, "deadline_exceeded") == 0;
        json_decref(o);
    }
    printf("service: queue 3, 6 sent: %d ok, %d overloaded, %d past their "
           "deadline\n", ok, over, late);
    ck_assert_int_eq(over, 3);
    ck_assert_int_eq(late, 1);
    ck_assert_int_eq(ok, 2);
    zmq_close(d);
    zmq_ctx_term(ctx);
    vit_client_free(c);
    free(png);
    stop_ok(w);
}
END_TEST

/* ---- SIGTERM under load ---- */

START_TEST(test_sigterm_drains)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, "--max-delay-ms", "100", "--max-batch", "4",
                           "--batch-wait", "full", NULL);
    size_t n;
    unsigned char *jpg = read_all(GRADIENT_JPG, &n);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "%d", i);
        send_req(d, "", rid, "{\"op\":\"classify\"}", jpg, n);
    }
    /* Wait until the worker holds them all, then ask it to stop. */
    vit_client *c = client(ep, 5000, 0);
    double until = now_ms() + 5000;
    for (;;) {
        json_t *mt = call(c, "{\"op\":\"metrics\"}", NULL, 0);
        json_t *cl = json_object_get(json_object_get(mt, "requests"),
                                     "classify");
        int done = (int)json_integer_value(json_object_get(cl, "ok"));
        int depth = (int)json_integer_value(json_object_get(mt, "queue_depth"));
        json_decref(mt);
        if (done + depth >= N)
            break;
        ck_assert(now_ms() < until);
        sleep_ms(2);
    }
    vit_client_free(c);
    kill(w, SIGTERM);
    int seen[N] = {0}, ok = 0;
    for (int i = 0; i < N; i++) {
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        ck_assert_msg(zmq_poll(&it, 1, 10000) == 1, "only %d replies", i);
        char rid[16] = "", body[64] = "";
        int more = 1, k = 0;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, d, 0);
            size_t len = zmq_msg_size(&m);
            if (k == 4 && len < sizeof rid)
                memcpy(rid, zmq_msg_data(&m), len);
            if (k == 5)
                memcpy(body, zmq_msg_data(&m), len < 63 ? len : 63);
            k++;
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        int id = atoi(rid);
        ck_assert(id >= 0 && id < N);
        ck_assert_int_eq(seen[id], 0);
        seen[id] = 1;
        ok += strncmp(body, "{\"ok\":true", 10) == 0;
    }
    ck_assert_int_eq(ok, N);
    ck_assert_int_eq(reap(w, 10000), 0);
    printf("service: SIGTERM with %d requests held: all answered, exit 0\n",
           N);
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(jpg);
}
END_TEST

/* A client against nothing gives up after its tries (Lazy Pirate), and a
 * worker that comes up later is found by the next call. */
START_TEST(test_client_retries)
{
    char ep[200];
    endpoint(ep, sizeof ep, "late");
    vit_client *c = client(ep, 100, 2);
    vit_reply r;
    vit_error err = {{0}};
    double t0 = now_ms();
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, &err) ==
              VIT_E_IO);
    double dt = now_ms() - t0;
    ck_assert_msg(dt >= 290 && dt < 2000, "%.0f ms for 3 tries of 100", dt);
    ck_assert(strstr(err.msg, "3 tries") != NULL);
    pid_t w = start_worker(ep, NULL);
    json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
    ck_assert(json_is_true(json_object_get(h, "ok")));
    json_decref(h);
    vit_client_free(c);
    stop_ok(w);
}
END_TEST

/* ---- the broker ---- */

/* Sends classify request `id` on a raw DEALER. */
static void send_classify(void *d, int id, const void *img, size_t n)
{
    char rid[16];
    snprintf(rid, sizeof rid, "%d", id);
    send_req(d, "", rid, "{\"op\":\"classify\"}", img, n);
}

/* Receives one reply within timeout_ms: its request id, and whether it
 * was a success. Returns -1 when none came. */
static int recv_reply(void *d, int timeout_ms, int *ok)
{
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) != 1)
        return -1;
    char rid[16] = "", body[16] = "";
    int more = 1, k = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, d, 0);
        size_t len = zmq_msg_size(&m);
        if (k == 4 && len < sizeof rid)
            memcpy(rid, zmq_msg_data(&m), len);
        if (k == 5)
            memcpy(body, zmq_msg_data(&m), len < 15 ? len : 15);
        k++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    *ok = strncmp(body, "{\"ok\":true", 10) == 0;
    return atoi(rid);
}

static pid_t start_broker(const char *name, const char *front,
                          const char *back)
{
    return spawn(name, "broker", "--frontend", front, "--backend", back,
                 "--heartbeat-ms", "100", NULL);
}

static pid_t start_brokered_worker(const char *name, const char *back,
                                   const char *svc)
{
    return spawn(name, "serve", "--model", MODEL, "--connect", back,
                 "--name", svc, "--heartbeat-ms", "100", "--max-delay-ms",
                 "20", "--batch-wait", "full", NULL);
}

/* A worker of the broker at `back`, named `name`, with credit 1 and each
 * request held `delay_ms` by its batch wait. */
static pid_t start_slow_worker(const char *name, const char *back,
                               const char *delay_ms)
{
    return spawn(name, "serve", "--model", MODEL, "--connect", back,
                 "--name", name, "--heartbeat-ms", "100", "--max-queue", "1",
                 "--max-delay-ms", delay_ms, "--batch-wait", "full", NULL);
}

/* Waits until `n` workers of `svc` answer through the broker: asks for
 * health until each worker has been seen... a broker hides which worker
 * answered, so this waits for the broker's log instead. */
static void wait_workers(const char *broker_err, int n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmp, broker_err);
    double until = now_ms() + 20000;
    for (;;) {
        FILE *f = fopen(path, "r");
        int ready = 0;
        char line[512];
        while (f && fgets(line, sizeof line, f))
            ready += strstr(line, " ready, credit") != NULL;
        if (f)
            fclose(f);
        if (ready >= n)
            return;
        ck_assert_msg(now_ms() < until, "%d of %d workers came up", ready, n);
        sleep_ms(10);
    }
}

START_TEST(test_broker_worker_killed)
{
    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = start_broker("broker", front, back);
    pid_t w[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "worker%d", i);
        w[i] = start_brokered_worker(name, back, "tiny");
    }
    wait_workers("broker.err", 3);

    size_t n;
    unsigned char *jpg = read_all(GRADIENT_JPG, &n);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, front);
    enum { N = 300, WINDOW = 30 };
    int replies[N] = {0}, sent = 0, got = 0, ok = 0, killed = 0;
    double until = now_ms() + 60000;
    while (got < N) {
        while (sent < N && sent - got < WINDOW)
            send_classify(d, sent++, jpg, n);
        int good;
        int id = recv_reply(d, 10000, &good);
        ck_assert_msg(id >= 0, "no reply after %d of %d", got, N);
        ck_assert(id < N);
        replies[id]++;
        ck_assert_msg(replies[id] == 1, "request %d answered twice", id);
        got++;
        ok += good;
        if (got == N / 3 && !killed) {
            /* Mid-load, with requests held by every worker. */
            kill(w[1], SIGKILL);
            ck_assert_int_eq(reap(w[1], 5000), 128 + SIGKILL);
            killed = 1;
        }
        ck_assert(now_ms() < until);
    }
    /* No late duplicate arrives either. */
    int good;
    ck_assert_int_eq(recv_reply(d, 500, &good), -1);
    ck_assert_int_eq(ok, N);
    /* The dead worker held requests, and the broker sent them again. */
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/broker.err", g_tmp);
    FILE *f = fopen(path, "r");
    int requeued = -1;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "is silent; dropped; ");
        if (p)
            requeued = atoi(p + strlen("is silent; dropped; "));
    }
    if (f)
        fclose(f);
    ck_assert_msg(requeued > 0, "the killed worker held %d requests",
                  requeued);
    printf("service: broker, 3 workers, one SIGKILLed after %d replies "
           "holding %d: %d of %d answered once each\n", N / 3, requeued, ok,
           N);
    /* Credit let each worker hold several requests: batches behind the
     * broker held more than one image. */
    vit_client_options o = vit_client_options_default();
    o.service = "tiny";
    vit_client *c;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    json_t *mt = call(c, "{\"op\":\"metrics\"}", NULL, 0);
    json_t *sizes = json_object_get(json_object_get(mt, "batches"), "sizes");
    const char *key;
    json_t *val;
    int largest = 0;
    json_object_foreach(sizes, key, val)
    {
        if (atoi(key) > largest)
            largest = atoi(key);
    }
    ck_assert_msg(largest > 1, "no batch behind the broker held more than one");
    json_decref(mt);
    vit_client_free(c);
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(jpg);
    stop_ok(w[0]);
    stop_ok(w[2]);
    stop_ok(b);
}
END_TEST

START_TEST(test_broker_restart_and_routing)
{
    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = start_broker("broker", front, back);
    pid_t wa = start_brokered_worker("wa", back, "alpha");
    pid_t wb = start_brokered_worker("wb", back, "beta");
    wait_workers("broker.err", 2);

    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 1000;
    o.retries = 5;
    const char *names[2] = {"alpha", "beta"};
    vit_client *c[2];
    for (int i = 0; i < 2; i++) {
        o.service = names[i];
        ck_assert(vit_client_new(front, &o, &c[i], NULL) == VIT_OK);
    }
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    vit_blob img = {png, n};
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            /* The broker dies and comes back: workers reconnect, clients
             * retry. */
            kill(b, SIGKILL);
            ck_assert_int_eq(reap(b, 5000), 128 + SIGKILL);
            b = start_broker("broker2", front, back);
        }
        for (int i = 0; i < 20; i++) {
            json_t *r = call(c[i & 1], "{\"op\":\"classify\"}", &img, 1);
            ck_assert_str_eq(err_code(r), "ok");
            json_decref(r);
            /* Routed by name: the answer comes from that model. */
            json_t *info = call(c[i & 1], "{\"op\":\"info\"}", NULL, 0);
            ck_assert_str_eq(json_string_value(json_object_get(
                                 json_object_get(info, "model"), "name")),
                             names[i & 1]);
            json_decref(info);
        }
    }
    printf("service: broker restarted; alpha and beta served before and "
           "after\n");
    /* Random bytes on both of the broker's sockets change nothing. */
    void *ctx = zmq_ctx_new();
    void *fs = zmq_socket(ctx, ZMQ_DEALER), *bs = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(fs, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(bs, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(fs, front), 0);
    ck_assert_int_eq(zmq_connect(bs, back), 0);
    uint32_t seed = 777;
    for (int it = 0; it < 200; it++) {
        void *sock = it & 1 ? bs : fs;
        int nf = 1 + (int)(lcg(&seed) % 9);
        for (int f = 0; f < nf; f++) {
            unsigned char fr[64];
            size_t len = lcg(&seed) % sizeof fr;
            for (size_t k = 0; k < len; k++)
                fr[k] = (unsigned char)lcg(&seed);
            if (f == 1 && (it & 2)) /* sometimes a real protocol frame */
                memcpy(fr, it & 1 ? "VITW01" : "VITC01", len = 6);
            zmq_send(sock, fr, len, f + 1 < nf ? ZMQ_SNDMORE : 0);
        }
        if (sock == fs) {  /* a client always gets an answer */
            zmq_pollitem_t pi = {fs, 0, ZMQ_POLLIN, 0};
            ck_assert_int_eq(zmq_poll(&pi, 1, 5000), 1);
            int more = 1;
            while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                zmq_msg_recv(&m, fs, 0);
                more = zmq_msg_more(&m);
                zmq_msg_close(&m);
            }
        }
    }
    zmq_close(fs);
    zmq_close(bs);
    zmq_ctx_term(ctx);
    json_t *after = call(c[0], "{\"op\":\"classify\"}", &img, 1);
    ck_assert_str_eq(err_code(after), "ok");
    json_decref(after);
    /* A model nobody serves is answered, not left waiting. */
    o.service = "gamma";
    vit_client *g;
    ck_assert(vit_client_new(front, &o, &g, NULL) == VIT_OK);
    json_t *r = call(g, "{\"op\":\"health\",\"deadline_ms\":300}", NULL, 0);
    ck_assert_str_eq(err_code(r), "unavailable");
    json_decref(r);
    vit_client_free(g);
    for (int i = 0; i < 2; i++)
        vit_client_free(c[i]);
    free(png);
    stop_ok(wa);
    stop_ok(wb);
    stop_ok(b);
}
END_TEST

/* ---- CURVE with an allow-list ---- */

/* Writes a key file in CZMQ's zcert text; `secret` may be NULL. */
static void write_cert(const char *path, const char *pub, const char *secret)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "#   ZeroMQ CURVE certificate\nmetadata\ncurve\n"
               "    public-key = \"%s\"\n", pub);
    if (secret)
        fprintf(f, "    secret-key = \"%s\"\n", secret);
    fclose(f);
}

START_TEST(test_curve_allow_list)
{
    char srv_pub[41], srv_sec[41], a_pub[41], a_sec[41], b_pub[41], b_sec[41];
    if (zmq_curve_keypair(srv_pub, srv_sec) != 0) {
        printf("service: libzmq without CURVE; CURVE test skipped\n");
        return;
    }
    ck_assert_int_eq(zmq_curve_keypair(a_pub, a_sec), 0);
    ck_assert_int_eq(zmq_curve_keypair(b_pub, b_sec), 0);
    char server_key[256], server_pub[256], allow[200], a_pub_file[256],
        a_key_file[256];
    snprintf(server_key, sizeof server_key, "%s/server.key_secret", g_tmp);
    snprintf(server_pub, sizeof server_pub, "%s/server.key", g_tmp);
    snprintf(allow, sizeof allow, "%s/allowed", g_tmp);
    snprintf(a_pub_file, sizeof a_pub_file, "%s/a.key", allow);
    snprintf(a_key_file, sizeof a_key_file, "%s/a.key_secret", g_tmp);
    ck_assert_int_eq(mkdir(allow, 0700), 0);
    write_cert(server_key, srv_pub, srv_sec);
    write_cert(server_pub, srv_pub, NULL);
    write_cert(a_pub_file, a_pub, NULL);
    write_cert(a_key_file, a_pub, a_sec);

    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = spawn("worker", "serve", "--model", MODEL, "--bind", ep,
                    "--curve-secret-key", server_key, "--allow-keys", allow,
                    NULL);
    vit_client_options o = vit_client_options_default();
    o.curve_server_key = srv_pub;
    o.curve_public_key = a_pub;
    o.curve_secret_key = a_sec;
    o.timeout_ms = 300;
    o.retries = 0;
    vit_client *c;
    ck_assert(vit_client_new(ep, &o, &c, NULL) == VIT_OK);
    /* The listed key is served (once the worker is up). */
    double until = now_ms() + 20000;
    vit_reply r;
    while (vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) !=
           VIT_OK) {
        ck_assert_msg(now_ms() < until, "the listed key was never served");
        ck_assert_int_eq(waitpid(w, NULL, WNOHANG), 0);
    }
    ck_assert(strstr(r.body, "\"ok\":true") != NULL);
    vit_reply_free(&r);
    vit_client_free(c);

    /* An unlisted key, and a fresh one, are refused: no reply at all. */
    o.curve_public_key = b_pub;
    o.curve_secret_key = b_sec;
    ck_assert(vit_client_new(ep, &o, &c, NULL) == VIT_OK);
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
              VIT_E_IO);
    vit_client_free(c);
    o.curve_public_key = o.curve_secret_key = NULL;
    ck_assert(vit_client_new(ep, &o, &c, NULL) == VIT_OK);
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
              VIT_E_IO);
    vit_client_free(c);
    /* So is a client without CURVE. */
    c = client(ep, 300, 0);
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
              VIT_E_IO);
    vit_client_free(c);

    /* The command line client with the listed key file. */
    int c1, c2;
    char *remote = run_capture(&c1, "client", "--connect", ep,
                               "--curve-server-key", server_pub,
                               "--curve-key", a_key_file, "classify",
                               NOISE_PNG, NULL);
    char *local = run_capture(&c2, "classify", "--model", MODEL, NOISE_PNG,
                              NULL);
    ck_assert_int_eq(c1, 0);
    ck_assert_str_eq(remote, local);
    free(remote);
    free(local);
    stop_ok(w);

    /* The same on a broker's frontend. */
    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = spawn("broker", "broker", "--frontend", front, "--backend",
                    back, "--heartbeat-ms", "100", "--curve-secret-key",
                    server_key, "--allow-keys", allow, NULL);
    pid_t bw = start_brokered_worker("bworker", back, "tiny");
    wait_workers("broker.err", 1);
    o.curve_public_key = a_pub;
    o.curve_secret_key = a_sec;
    o.timeout_ms = 5000;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
    ck_assert_str_eq(err_code(h), "ok");
    json_decref(h);
    vit_client_free(c);
    o.curve_public_key = b_pub;
    o.curve_secret_key = b_sec;
    o.timeout_ms = 300;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
              VIT_E_IO);
    vit_client_free(c);
    printf("service: CURVE on a worker and on a broker: the listed key "
           "served, unlisted and anonymous refused\n");
    stop_ok(bw);
    stop_ok(b);
}
END_TEST

/* ---- CURVE between workers and the broker ---- */

/* Waits until the file TMP/NAME holds `text`; fails after 20 s. */
static void wait_log(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    double until = now_ms() + 20000;
    for (;;) {
        size_t n = 0;
        FILE *f = fopen(path, "rb");
        char buf[8192];
        if (f) {
            n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
        }
        buf[n] = '\0';
        if (strstr(buf, text))
            return;
        ck_assert_msg(now_ms() < until, "%s never said '%s': %s", name,
                      text, buf);
        sleep_ms(10);
    }
}

/* Whether the file TMP/NAME holds `text`. */
static int log_has(const char *name, const char *text)
{
    char path[256], buf[16384];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* The first 33 bytes of an 8-bit RGB PNG of w x h: its signature and IHDR
 * chunk (the CRC left zero), and nothing of its pixels. */
static void png_header(unsigned char *b, uint32_t w, uint32_t h)
{
    static const unsigned char head[16] = {0x89, 'P', 'N', 'G', '\r', '\n',
                                           0x1a, '\n', 0, 0, 0, 13,
                                           'I', 'H', 'D', 'R'};
    memcpy(b, head, 16);
    for (int i = 0; i < 4; i++) {
        b[16 + i] = (unsigned char)(w >> (24 - 8 * i));
        b[20 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    b[24] = 8;  /* bit depth */
    b[25] = 2;  /* RGB */
    memset(b + 26, 0, 7);
}

/* Where PROTOCOL.md and the worker once disagreed: a header past 64 KiB
 * is too_large; a number past 64 bits is invalid JSON, said so; a text
 * holding a NUL and an empty `texts` are bad_request; info states the
 * side and header limits. */
START_TEST(test_protocol_edges)
{
    char ep[200];
    endpoint(ep, sizeof ep, "edges");
    pid_t w = spawn("edges", "serve", "--model", FIXTURES "/clip_tok",
                    "--bind", ep, NULL);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    const char cmd = 1;
    size_t big = 70 * 1024;
    char *hdr = malloc(big + 1);
    ck_assert_ptr_nonnull(hdr);
    int n = snprintf(hdr, big + 1, "{\"op\":\"health\",\"pad\":\"");
    memset(hdr + n, 'x', big - (size_t)n - 2);
    memcpy(hdr + big - 2, "\"}", 3);
    const char *code = NULL;
    double until = now_ms() + 20000;
    while (!(code = raw(d, 2000, 6, F("", 0), S("VITC01"), F(&cmd, 1),
                        F("", 0), S("big"), F(hdr, big))) &&
           now_ms() < until)
        ; /* the worker is still loading */
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "too_large");
    free(hdr);
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("k"), S("{\"op\":\"classify\",\"top_k\":18446744073709551616}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    ck_assert_msg(strstr(raw_body, "not valid JSON"), "%s", raw_body);
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("n"), S("{\"op\":\"embed_text\",\"texts\":[\"a\\u0000b\"]}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    ck_assert_msg(strstr(raw_body, "NUL"), "%s", raw_body);
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("e"), S("{\"op\":\"embed_text\",\"texts\":[]}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    /* Cheap inputs, costly work: a PNG stating 8192 x 8192 pixels (a file
     * of zeros that size is 65 KB and took 1.4 s to decode), and two of
     * 4096 x 4097, each within max-pixels, together past the request's
     * pixel budget. Only their headers are sent, the rest cut off: they
     * are refused by what the headers say, before anything is decoded
     * (decoding would have answered bad_image, "truncated"). */
    unsigned char bomb[33], half[33];
    png_header(bomb, 8192, 8192);
    png_header(half, 4096, 4097);
    code = raw(d, 5000, 7, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("b"), S("{\"op\":\"embed_image\"}"), F(bomb, sizeof bomb));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "too_large");
    ck_assert_msg(strstr(raw_body, "67108864 pixels") &&
                      strstr(raw_body, "max-request-pixels"),
                  "%s", raw_body);
    code = raw(d, 5000, 8, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("b2"), S("{\"op\":\"embed_image\"}"), F(half, sizeof half),
               F(half, sizeof half));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "too_large");
    ck_assert_msg(strstr(raw_body, "33562624 pixels"), "%s", raw_body);
    /* One of them alone is within every limit: decoding it is what
     * fails. */
    code = raw(d, 5000, 7, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("b1"), S("{\"op\":\"embed_image\"}"), F(half, sizeof half));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_image");
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("i"), S("{\"op\":\"info\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_msg(strstr(raw_body, "\"max_side\":16384") &&
                      strstr(raw_body, "\"max_header_bytes\":65536") &&
                      strstr(raw_body, "\"max_request_pixels\":33554432"),
                  "%s", raw_body);
    zmq_close(d);
    zmq_ctx_term(ctx);
    stop_ok(w);
}
END_TEST

/* A worker whose --connect names a broker's frontend, or another worker's
 * --bind, says so within its heartbeat interval (before, it said nothing
 * after its start line, answered in the client protocol forever). */
START_TEST(test_worker_wrong_endpoint)
{
    char front[200], back[200], bind[200];
    endpoint(front, sizeof front, "wfront");
    endpoint(back, sizeof back, "wback");
    endpoint(bind, sizeof bind, "wbind");
    pid_t b = start_broker("broker", front, back);
    pid_t w1 = start_brokered_worker("lost1", front, "x");
    pid_t w0 = spawn("direct", "serve", "--model", MODEL, "--bind", bind,
                     NULL);
    pid_t w2 = start_brokered_worker("lost2", bind, "x");
    const char *say = "answers in the client protocol";
    double until = now_ms() + 3000;
    while ((!log_has("lost1.err", say) || !log_has("lost2.err", say)) &&
           now_ms() < until)
        sleep_ms(20);
    ck_assert_msg(log_has("lost1.err", say), "pointed at a broker's frontend, "
                  "the worker did not say so");
    ck_assert_msg(log_has("lost2.err", say), "pointed at a worker, the "
                  "worker did not say so");
    stop_ok(w1);
    stop_ok(w2);
    stop_ok(w0);
    stop_ok(b);
}
END_TEST

/* A fresh key pair written as TMP/NAME.key_secret (both keys) and
 * TMP/NAME.key (the public key only), or DIR/NAME.key when `dir` names an
 * allow-list directory in TMP. */
static void key_pair(const char *name, const char *dir, char pub[41],
                     char sec[41])
{
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/%s.key_secret", g_tmp, name);
    write_cert(path, pub, sec);
    if (dir)
        snprintf(path, sizeof path, "%s/%s/%s.key", g_tmp, dir, name);
    else
        snprintf(path, sizeof path, "%s/%s.key", g_tmp, name);
    write_cert(path, pub, NULL);
}

static pid_t start_curve_worker(const char *name, const char *back,
                                const char *server_pub_file,
                                const char *key_name)
{
    char key[256];
    snprintf(key, sizeof key, "%s/%s.key_secret", g_tmp, key_name);
    return spawn(name, "serve", "--model", MODEL, "--connect", back,
                 "--name", name, "--heartbeat-ms", "100",
                 "--curve-server-key", server_pub_file, "--curve-key", key,
                 NULL);
}

/* The broker's backend is a CURVE server with its own allow-list: a worker
 * whose key is listed is served end to end; one with an unlisted key (even
 * a key the frontend admits) and one without CURVE never join, never get
 * work, and say why in their logs. The two allow-lists are separate: a
 * worker's key does not admit a client either. */
START_TEST(test_curve_workers)
{
    char srv_pub[41], srv_sec[41];
    if (zmq_curve_keypair(srv_pub, srv_sec) != 0) {
        printf("service: libzmq without CURVE; CURVE test skipped\n");
        return;
    }
    char clients[256], workers[256], server_key[256], server_pub[256];
    snprintf(clients, sizeof clients, "%s/clients", g_tmp);
    snprintf(workers, sizeof workers, "%s/workers", g_tmp);
    ck_assert_int_eq(mkdir(clients, 0700), 0);
    ck_assert_int_eq(mkdir(workers, 0700), 0);
    snprintf(server_key, sizeof server_key, "%s/srv.key_secret", g_tmp);
    snprintf(server_pub, sizeof server_pub, "%s/srv.key", g_tmp);
    write_cert(server_key, srv_pub, srv_sec);
    write_cert(server_pub, srv_pub, NULL);
    char g_pub[41], g_sec[41], c_pub[41], c_sec[41];
    key_pair("good", "workers", g_pub, g_sec);
    key_pair("client", "clients", c_pub, c_sec);

    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = spawn("broker", "broker", "--frontend", front, "--backend",
                    back, "--heartbeat-ms", "100", "--curve-secret-key",
                    server_key, "--allow-keys", clients,
                    "--allow-worker-keys", workers, NULL);
    pid_t wg = start_curve_worker("good", back, server_pub, "good");
    pid_t wi = start_curve_worker("intruder", back, server_pub, "client");
    pid_t wp = spawn("plain", "serve", "--model", MODEL, "--connect", back,
                     "--name", "plain", "--heartbeat-ms", "100", NULL);
    wait_workers("broker.err", 1);
    wait_log("intruder.err", "refused this worker's CURVE key");
    wait_log("plain.err", "needs the broker's public key and a key pair");

    vit_client_options o = vit_client_options_default();
    o.curve_server_key = srv_pub;
    o.curve_public_key = c_pub;
    o.curve_secret_key = c_sec;
    o.timeout_ms = 5000;
    o.retries = 0;
    vit_client *c;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    /* Any model: every request is answered by the listed worker. */
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    vit_blob img = {png, n};
    for (int i = 0; i < 10; i++) {
        vit_reply r;
        ck_assert(vit_client_call(c, "{\"op\":\"classify\",\"top_k\":1}",
                                  &img, 1, &r, NULL) == VIT_OK);
        ck_assert_msg(strstr(r.body, "\"ok\":true"), "%s", r.body);
        ck_assert_str_eq(r.service, "good");
        vit_reply_free(&r);
    }
    vit_client_free(c);
    /* The refused workers' models are unavailable. */
    const char *refused[] = {"intruder", "plain"};
    for (int i = 0; i < 2; i++) {
        o.service = refused[i];
        ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
        json_t *r = call(c, "{\"op\":\"health\",\"deadline_ms\":300}", NULL,
                         0);
        ck_assert_str_eq(err_code(r), "unavailable");
        json_decref(r);
        vit_client_free(c);
    }
    /* The broker knows one worker, of 'good'. */
    o.service = "mmi.broker";
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    json_t *info = call(c, "{\"op\":\"info\"}", NULL, 0);
    json_t *svcs = json_object_get(info, "services");
    ck_assert_int_eq(json_object_size(svcs), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(svcs, "good"), "workers")),
                     1);
    json_decref(info);
    vit_client_free(c);
    ck_assert(!log_has("broker.err", "'intruder' ready"));
    ck_assert(!log_has("broker.err", "'plain' ready"));
    /* A worker's key is no client's. */
    o.service = NULL;
    o.curve_public_key = g_pub;
    o.curve_secret_key = g_sec;
    o.timeout_ms = 300;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    vit_reply r;
    ck_assert(vit_client_call(c, "{\"op\":\"health\"}", NULL, 0, &r, NULL) ==
              VIT_E_IO);
    vit_client_free(c);
    stop_ok(wg);
    stop_ok(wi);
    stop_ok(wp);
    stop_ok(b);

    /* A key pair for the backend alone; the frontend stays plain. */
    char bk_pub[41], bk_sec[41], bk_pub_file[256], bk_key_file[256];
    key_pair("backend", NULL, bk_pub, bk_sec);
    snprintf(bk_pub_file, sizeof bk_pub_file, "%s/backend.key", g_tmp);
    snprintf(bk_key_file, sizeof bk_key_file, "%s/backend.key_secret",
             g_tmp);
    endpoint(front, sizeof front, "front2");
    endpoint(back, sizeof back, "back2");
    b = spawn("broker2", "broker", "--frontend", front, "--backend", back,
              "--heartbeat-ms", "100", "--backend-curve-secret-key",
              bk_key_file, "--allow-worker-keys", workers, NULL);
    wg = start_curve_worker("good2", back, bk_pub_file, "good");
    wi = start_curve_worker("wrong-server", back, server_pub, "good");
    wait_workers("broker2.err", 1);
    c = client(front, 5000, 0);
    json_t *cl = call(c, "{\"op\":\"classify\"}", &img, 1);
    ck_assert_str_eq(err_code(cl), "ok");
    json_decref(cl);
    vit_client_free(c);
    /* A worker holding another server key never completes a handshake. */
    wait_log("wrong-server.err", "its public key is not the one");
    ck_assert(!log_has("broker2.err", "'wrong-server' ready"));
    free(png);
    stop_ok(wg);
    stop_ok(wi);
    stop_ok(b);
    /* An allow-list with no key in it is refused at start. */
    char empty[256];
    snprintf(empty, sizeof empty, "%s/empty", g_tmp);
    ck_assert_int_eq(mkdir(empty, 0700), 0);
    int code;
    char *out = run_capture(&code, "broker", "--frontend", front, "--backend",
                            back, "--backend-curve-secret-key", bk_key_file,
                            "--allow-worker-keys", empty, NULL);
    ck_assert_int_eq(code, 1);
    free(out);
    printf("service: CURVE between workers and a broker: the listed worker "
           "served, an unlisted key and a plain worker refused\n");
}
END_TEST

/* ---- the Python example client (pyzmq), written from PROTOCOL.md ---- */

static const char *python(void)
{
    const char *p = getenv("VIT_PYTHON");
    /* Debian's python3-zmq is for the system interpreter. */
    return p && *p ? p : "/usr/bin/python3";
}

START_TEST(test_python_client)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -c 'import zmq' >/dev/null 2>&1", python());
    if (system(cmd) != 0) {
        /* .ci/deps installs python3-zmq; a developer may not have it. */
        printf("service: %s has no pyzmq; Python client test skipped\n",
               python());
        return;
    }
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, NULL);
    char out[256];
    snprintf(out, sizeof out, "%s/py.txt", g_tmp);
    snprintf(cmd, sizeof cmd,
             "%s service/examples/vit_client.py --connect %s classify %s %s "
             ">%s 2>&1",
             python(), ep, NOISE_PNG, GRADIENT_JPG, out);
    ck_assert_int_eq(system(cmd), 0);
    size_t n;
    char *got = (char *)read_all(out, &n);
    got[n] = '\0';
    int code;
    char *local = run_capture(&code, "classify", "--model", MODEL, NOISE_PNG,
                              GRADIENT_JPG, NULL);
    ck_assert_int_eq(code, 0);
    ck_assert_str_eq(got, local);
    free(got);
    free(local);
    /* Its error path: a code it can act on. */
    snprintf(cmd, sizeof cmd,
             "%s service/examples/vit_client.py --connect %s embed-text hi "
             ">%s 2>&1",
             python(), ep, out);
    ck_assert_int_ne(system(cmd), 0);
    got = (char *)read_all(out, &n);
    got[n] = '\0';
    ck_assert_msg(strstr(got, "(no_text_tower)"), "%s", got);
    free(got);
    printf("service: the Python client's classify equals vit classify\n");
    stop_ok(w);
}
END_TEST

/* SIGINT drains like SIGTERM (new work refused, health says so); a second
 * SIGINT exits at once, whatever is still queued. */
START_TEST(test_sigint_twice)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    pid_t w = start_worker(ep, "--max-delay-ms", "10000", "--max-batch", "64",
                           "--batch-wait", "full", NULL);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    for (int i = 0; i < 3; i++)
        send_classify(d, i, png, n);
    vit_client *c = client(ep, 5000, 0);
    double until = now_ms() + 5000;
    for (int depth = 0; depth < 3;) {
        json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
        depth = (int)json_integer_value(json_object_get(h, "queue_depth"));
        json_decref(h);
        ck_assert(now_ms() < until);
    }
    kill(w, SIGINT);
    until = now_ms() + 5000;
    for (;;) {
        json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
        int draining = strcmp(json_string_value(json_object_get(h, "status")),
                              "draining") == 0;
        json_decref(h);
        if (draining)
            break;
        ck_assert(now_ms() < until);
    }
    vit_blob b = {png, n};
    json_t *o = call(c, "{\"op\":\"classify\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "shutting_down");
    json_decref(o);
    double t0 = now_ms();
    kill(w, SIGINT);
    ck_assert_int_eq(reap(w, 5000), 130);
    ck_assert(now_ms() - t0 < 5000);
    vit_client_free(c);
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(png);
}
END_TEST

/* The broker answers what it cannot route: malformed requests, requests
 * that wait past their deadline for a busy worker; and a stranger on the
 * backend is told to disconnect. */
START_TEST(test_broker_refusals)
{
    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = start_broker("broker", front, back);
    pid_t w = start_slow_worker("worker", back, "1000");
    wait_workers("broker.err", 1);

    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, front);
    const char cmd = 1;
    const char *code = raw(d, 5000, 1, S("garbage"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               F("", 0), S("{\"op\":\"health\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    /* A service name over 255 bytes: refused, with the request id echoed
     * so that a client matching replies by id gets it. */
    char longname[300];
    memset(longname, 'x', sizeof longname);
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1),
               F(longname, sizeof longname), S("long"),
               S("{\"op\":\"health\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    ck_assert_str_eq(raw_rid, "long");
    /* A name is its bytes, whole: "worker\0x" is not "worker". */
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1),
               F("worker\0x", 8), S("nul"), S("{\"op\":\"health\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "bad_request");
    ck_assert_str_eq(raw_rid, "nul");
    /* The worker validates what the broker passes on. */
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("r"), S("{\"op\":\"fly\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "unknown_op");

    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    send_classify(d, 1, png, n);  /* takes the worker's one credit */
    sleep_ms(100);
    /* health needs no credit: answered while the worker is full. */
    double th = now_ms();
    code = raw(d, 5000, 6, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("h"), S("{\"op\":\"health\"}"));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "ok");
    ck_assert_msg(now_ms() - th < 500, "health took %.0f ms", now_ms() - th);
    const char *hdr = "{\"op\":\"classify\",\"deadline_ms\":200}";
    double t0 = now_ms();
    code = raw(d, 5000, 7, F("", 0), S("VITC01"), F(&cmd, 1), F("", 0),
               S("2"), S(hdr), F(png, n));
    ck_assert_ptr_nonnull(code);
    ck_assert_str_eq(code, "deadline_exceeded");
    double dt = now_ms() - t0;
    ck_assert_msg(dt >= 150 && dt < 900, "answered after %.0f ms", dt);
    int ok;
    ck_assert_int_eq(recv_reply(d, 5000, &ok), 1);
    ck_assert(ok);

    /* A DEALER that never said READY is told to disconnect. */
    void *stranger = dealer(ctx, back);
    const char hb = 5;
    zmq_send(stranger, "", 0, ZMQ_SNDMORE);
    zmq_send(stranger, "VITW01", 6, ZMQ_SNDMORE);
    zmq_send(stranger, &hb, 1, 0);
    zmq_pollitem_t it = {stranger, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
    char f[3][16];
    for (int i = 0; i < 3; i++) {
        int len = zmq_recv(stranger, f[i], sizeof f[i], 0);
        ck_assert_int_ge(len, 0);
    }
    ck_assert_int_eq(f[2][0], 6);  /* DISCONNECT */
    zmq_close(stranger);
    /* A READY with a credit of -1, or settings that are not JSON, is
     * refused (DISCONNECT), not taken as credit 1. */
    const char *bad[] = {"{\"credit\": -1}", "not json"};
    for (int i = 0; i < 2; i++) {
        void *p = dealer(ctx, back);
        const char ready = 1;
        zmq_send(p, "", 0, ZMQ_SNDMORE);
        zmq_send(p, "VITW01", 6, ZMQ_SNDMORE);
        zmq_send(p, &ready, 1, ZMQ_SNDMORE);
        zmq_send(p, "odd", 3, ZMQ_SNDMORE);
        zmq_send(p, bad[i], strlen(bad[i]), 0);
        zmq_pollitem_t pi = {p, 0, ZMQ_POLLIN, 0};
        ck_assert_msg(zmq_poll(&pi, 1, 5000) == 1, "READY %s: no answer",
                      bad[i]);
        for (int k = 0; k < 3; k++)
            ck_assert_int_ge(zmq_recv(p, f[k], sizeof f[k], 0), 0);
        ck_assert_int_eq(f[2][0], 6);  /* DISCONNECT */
        zmq_close(p);
    }
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(png);
    stop_ok(w);
    stop_ok(b);
}
END_TEST

/* The broker's own service, mmi.broker: what it serves, with how many
 * workers, how much is held and queued per model, and its counters; read
 * through the library and through `vit client broker-info`. */
START_TEST(test_broker_info)
{
    char front[200], back[200];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    pid_t b = start_broker("broker", front, back);
    pid_t wa = start_slow_worker("alpha", back, "500");
    pid_t wb = start_brokered_worker("beta", back, "beta");
    wait_workers("broker.err", 2);

    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, front);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    for (int i = 0; i < 3; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "%d", i);
        send_req(d, "alpha", rid, "{\"op\":\"classify\"}", png, n);
    }
    send_req(d, "gamma", "g", "{\"op\":\"health\",\"deadline_ms\":500}",
             NULL, 0);
    sleep_ms(150);

    vit_client_options o = vit_client_options_default();
    o.service = "mmi.broker";
    vit_client *c;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    /* Answered by the broker at once, while alpha is busy. */
    double t0 = now_ms();
    vit_reply rep;
    ck_assert(vit_client_call(c, "{\"op\":\"info\"}", NULL, 0, &rep, NULL) ==
              VIT_OK);
    ck_assert_msg(now_ms() - t0 < 500, "info took %.0f ms", now_ms() - t0);
    ck_assert_str_eq(rep.service, "mmi.broker");
    json_t *info = json_loads(rep.body, 0, NULL);
    vit_reply_free(&rep);
    ck_assert_str_eq(err_code(info), "ok");
    ck_assert_str_eq(json_string_value(json_object_get(info, "role")),
                     "broker");
    json_t *svcs = json_object_get(info, "services");
#define SVC_FIELD(svc, key) \
    json_integer_value(json_object_get(json_object_get(svcs, svc), key))
    ck_assert_int_eq(json_object_size(svcs), 3);
    ck_assert_int_eq(SVC_FIELD("alpha", "workers"), 1);
    ck_assert_int_eq(SVC_FIELD("alpha", "credit"), 1);
    /* alpha holds one request and two wait for its credit (or, on a
     * machine slow enough to have answered one already, one). */
    json_int_t fwd = json_integer_value(json_object_get(
        json_object_get(info, "requests"), "forwarded"));
    ck_assert_int_eq(SVC_FIELD("alpha", "in_flight"), 1);
    ck_assert_int_eq(SVC_FIELD("alpha", "queued"), 2 - fwd);
    ck_assert_int_eq(SVC_FIELD("beta", "workers"), 1);
    ck_assert_int_eq(SVC_FIELD("beta", "credit"), 256);
    ck_assert_int_eq(SVC_FIELD("beta", "in_flight"), 0);
    ck_assert_int_eq(SVC_FIELD("beta", "queued"), 0);
    ck_assert_int_eq(SVC_FIELD("gamma", "workers"), 0);
    ck_assert_int_eq(SVC_FIELD("gamma", "queued"), 1);
#undef SVC_FIELD
    ck_assert_int_eq(json_integer_value(json_object_get(info, "queue_depth")),
                     3 - fwd);
    json_t *reqs = json_object_get(info, "requests");
    ck_assert_int_eq(json_integer_value(json_object_get(reqs, "received")),
                     5);  /* four above, and this info */
    json_decref(info);

    /* The three classify replies, then the counters again. */
    int got = 0;
    double until = now_ms() + 10000;
    while (got < 4) {
        int ok;
        ck_assert_msg(recv_reply(d, 5000, &ok) >= 0, "%d replies", got);
        got++;
        ck_assert(now_ms() < until);
    }
    info = call(c, "{\"op\":\"info\"}", NULL, 0);
    reqs = json_object_get(info, "requests");
    ck_assert_int_eq(json_integer_value(json_object_get(reqs, "forwarded")),
                     3);
    ck_assert_int_eq(json_integer_value(json_object_get(reqs, "expired")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(info, "queue_depth")),
                     0);
    json_decref(info);
    /* The broker's own health; other ops and mmi names are refused. */
    json_t *h = call(c, "{\"op\":\"health\"}", NULL, 0);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")),
                     "serving");
    json_decref(h);
    json_t *bad = call(c, "{\"op\":\"classify\"}", NULL, 0);
    ck_assert_str_eq(err_code(bad), "unknown_op");
    json_decref(bad);
    bad = call(c, "[1]", NULL, 0);
    ck_assert_str_eq(err_code(bad), "bad_request");
    json_decref(bad);
    vit_client_free(c);
    o.service = "mmi.service";
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    bad = call(c, "{\"op\":\"info\"}", NULL, 0);
    ck_assert_str_eq(err_code(bad), "unknown_service");
    json_decref(bad);
    vit_client_free(c);

    /* The command prints it. */
    int code;
    char *out = run_capture(&code, "client", "--connect", front,
                            "broker-info", NULL);
    ck_assert_int_eq(code, 0);
    json_t *printed = json_loads(out, 0, NULL);
    ck_assert_msg(printed != NULL, "%s", out);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(
                         json_object_get(printed, "services"), "beta"),
                         "workers")),
                     1);
    json_decref(printed);
    free(out);
    out = run_capture(&code, "client", "--connect", front, "--service",
                      "beta", "broker-info", NULL);
    ck_assert_int_eq(code, 2);
    free(out);
    printf("service: mmi.broker info: per-model workers, credit, in flight "
           "and queued, and the broker's counters\n");
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(png);
    stop_ok(wa);
    stop_ok(wb);
    stop_ok(b);
}
END_TEST

/* Sends `n` info requests to `service` at `front` on a DEALER of its own,
 * waits for `go` to be readable, then counts the replies (until none for
 * 3 s) into `out`. Runs in a child process (forked before any ZeroMQ
 * context of the parent's), which the parent stops and continues. */
static void slow_client(const char *front, const char *service, int n,
                        int go, const char *out)
{
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(d, front) != 0)
        _exit(1);
    for (int i = 0; i < n; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "%d", i);
        send_req(d, service, rid, "{\"op\":\"info\"}", NULL, 0);
    }
    char c;
    if (read(go, &c, 1) != 1)
        _exit(1);
    int got = 0, good = 0, ok;
    while (recv_reply(d, 3000, &ok) >= 0) {
        got++;
        good += ok;
    }
    FILE *f = fopen(out, "w");
    if (f) {
        fprintf(f, "%d %d\n", got, good);
        fclose(f);
    }
    zmq_close(d);
    zmq_ctx_term(ctx);
    _exit(0);
}

/* The broker's request counter `key` (mmi.broker info). */
static long broker_count(vit_client *c, const char *key)
{
    json_t *info = call(c, "{\"op\":\"info\"}", NULL, 0);
    long v = (long)json_integer_value(
        json_object_get(json_object_get(info, "requests"), key));
    json_decref(info);
    return v;
}

/* Replies the broker has forwarded but that have not left its socket when
 * it is stopped still reach their client. The worker is held (SIGSTOP)
 * while a client sends its requests, then the client is held while the
 * worker answers them all, so that the replies wait in the broker's socket
 * (the kernel's buffer takes about a hundred); the broker is stopped
 * once it counts them forwarded, and the client is let go 300 ms later.
 * Closed with no linger, the broker dropped what was in its socket. */
START_TEST(test_broker_stop_flushes_replies)
{
    char front[200], back[200], out[256];
    endpoint(front, sizeof front, "front");
    endpoint(back, sizeof back, "back");
    snprintf(out, sizeof out, "%s/client.out", g_tmp);
    /* Heartbeats of 1 s: a worker held for a moment is not given up. */
    pid_t b = spawn("broker", "broker", "--frontend", front, "--backend",
                    back, "--heartbeat-ms", "1000", NULL);
    pid_t w = spawn("worker", "serve", "--model", MODEL, "--connect", back,
                    "--name", "tiny", "--heartbeat-ms", "1000", NULL);
    wait_workers("broker.err", 1);

    enum { N = 600 };  /* about 1.5 KB each */
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    kill(w, SIGSTOP);
    fflush(NULL);
    pid_t cl = fork();
    ck_assert_int_ge(cl, 0);
    if (cl == 0) {
        close(go[1]);
        slow_client(front, "tiny", N, go[0], out);
    }
    close(go[0]);
    for (int i = 0; i < MAX_PROCS; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = cl;
            break;
        }
    vit_client_options o = vit_client_options_default();
    o.service = "mmi.broker";
    vit_client *c;
    ck_assert(vit_client_new(front, &o, &c, NULL) == VIT_OK);
    double until = now_ms() + 20000;
    while (broker_count(c, "received") < N) {
        ck_assert(now_ms() < until);
        sleep_ms(5);
    }
    kill(cl, SIGSTOP);
    ck_assert_int_eq(write(go[1], "g", 1), 1);  /* read once continued */
    kill(w, SIGCONT);
    while (broker_count(c, "forwarded") < N) {
        ck_assert(now_ms() < until);
        sleep_ms(5);
    }
    vit_client_free(c);
    kill(b, SIGTERM);
    sleep_ms(300);  /* the broker has closed its sockets by now */
    kill(cl, SIGCONT);
    ck_assert_int_eq(reap(cl, 20000), 0);
    close(go[1]);
    int got = -1, good = -1;
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%d %d", &got, &good), 2);
    fclose(f);
    ck_assert_msg(got == N && good == N, "%d of %d replies (%d ok)", got, N,
                  good);
    ck_assert_int_eq(reap(b, 10000), 0);
    printf("service: a broker stopped with %d replies in its socket to a "
           "held client: all %d arrive\n", N, got);
    stop_ok(w);
}
END_TEST

/* ---- CLIP: texts, images, matching, zero-shot labels ---- */

static int tu_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0;
    return fclose(f) != 0 || rc ? -1 : 0;
}

/* A CLIP model with a tokenizer: the clip_tiny weights (vocabulary 1000)
 * with the tiny tokenizer of the text suite (544 ids), linked into one
 * directory. The numbers are not the reference's; the test compares the
 * service with the local commands on the same directory. */
static void clip_model_dir(char *out, size_t size)
{
    snprintf(out, size, "%s/clip", g_tmp);
    ck_assert_int_eq(mkdir(out, 0700), 0);
    static const char *const files[][2] = {
        {FIXTURES_DIR "/clip_tiny", "config.json"},
        {FIXTURES_DIR "/clip_tiny", "model.safetensors"},
        {FIXTURES_DIR "/clip_tiny", "preprocessor_config.json"},
        {FIXTURES_DIR "/text/tiny", "tokenizer.json"},
        {FIXTURES_DIR "/text/tiny", "tokenizer_config.json"},
    };
    char cwd[1024];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char src[1400], dst[400];
        snprintf(src, sizeof src, "%s/%s/%s", cwd, files[i][0], files[i][1]);
        snprintf(dst, sizeof dst, "%s/%s", out, files[i][1]);
        ck_assert_int_eq(symlink(src, dst), 0);
    }
}

START_TEST(test_clip_over_the_wire)
{
    char model[256], ep[200];
    clip_model_dir(model, sizeof model);
    endpoint(ep, sizeof ep, "w");
    pid_t w = spawn("worker", "serve", "--model", model, "--bind", ep, NULL);
    wait_ready(ep, w);
    char labels[300];
    snprintf(labels, sizeof labels, "%s/labels.txt", g_tmp);
    ck_assert_int_eq(tu_write_text(labels, "cat\ndog\na bird\n"), 0);
    /* The same output as the local commands, each format. */
    const char *const cases[][8] = {
        {"classify", "--labels", labels, NOISE_PNG, GRADIENT_JPG, NULL},
        {"classify", "--format", "jsonl", "--logits", "--labels", labels,
         "--template", "a picture of {}"},
        {"embed", "--text", "a photo of a cat", "--text", "hello", NULL},
        {"embed", "--no-normalize", NOISE_PNG, GRADIENT_JPG, NULL},
        {"match", "--text", "cat", "--text", "a dog", NOISE_PNG, GRADIENT_JPG,
         NULL},
        {"match", "--format", "jsonl", "--text", "cat", "--text", "a dog",
         "tests/fixtures/cli"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *const *a = cases[i];
        /* Case 1 fills all 8 slots; its image comes last. */
        const char *last = i == 1 ? GRADIENT_JPG : NULL;
        int c1, c2;
        char *remote = run_capture(&c1, "client", "--connect", ep, a[0], a[1],
                                   a[2], a[3], a[4], a[5], a[6], a[7], last,
                                   NULL);
        char *local = run_capture(&c2, a[0], "--model", model, a[1], a[2],
                                  a[3], a[4], a[5], a[6], a[7], last, NULL);
        ck_assert_int_eq(c2, 0);
        ck_assert_int_eq(c1, 0);
        ck_assert_msg(strlen(local) > 20, "%s: %s", a[0], local);
        ck_assert_str_eq(remote, local);
        free(remote);
        free(local);
    }
    /* The wire format of embed_text: count x dim little-endian floats. */
    vit_client *c = client(ep, 5000, 0);
    vit_reply r;
    ck_assert(vit_client_call(c, "{\"op\":\"embed_text\",\"texts\":[\"a\","
                                 "\"b\",\"c\"],\"normalize\":true}",
                              NULL, 0, &r, NULL) == VIT_OK);
    json_t *o = json_loads(r.body, 0, NULL);
    int dim = (int)json_integer_value(json_object_get(o, "dim"));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "count")), 3);
    ck_assert_int_gt(dim, 0);
    ck_assert_int_eq(r.n_data, 1);
    ck_assert_int_eq(r.data[0].size, (size_t)3 * dim * sizeof(float));
    float *v = malloc(r.data[0].size);
    memcpy(v, r.data[0].data, r.data[0].size);
    for (int i = 0; i < 3; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)v[i * dim + j] * v[i * dim + j];
        ck_assert_msg(fabs(ss - 1) < 1e-5, "norm^2 %g", ss);
    }
    free(v);
    json_decref(o);
    vit_reply_free(&r);
    /* A CLIPModel has no classifier. */
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    vit_blob b = {png, n};
    o = call(c, "{\"op\":\"classify\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "no_head");
    json_decref(o);
    free(png);
    vit_client_free(c);
    printf("service: CLIP embed (texts, images), match and zero-shot "
           "classify over the wire equal the local commands\n");
    stop_ok(w);
}
END_TEST

/* A model with one tower answers the other tower's operations with a
 * code, not a crash. */
START_TEST(test_clip_single_towers)
{
    char ev[200], et[200];
    endpoint(ev, sizeof ev, "vision");
    endpoint(et, sizeof et, "text");
    pid_t wv = spawn("vision", "serve", "--model", FIXTURES_DIR "/clip_vision",
                     "--bind", ev, NULL);
    pid_t wt = spawn("text", "serve", "--model", FIXTURES_DIR "/clip_text",
                     "--bind", et, NULL);
    wait_ready(ev, wv);
    wait_ready(et, wt);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    vit_blob b = {png, n};
    vit_client *cv = client(ev, 5000, 0), *ct = client(et, 5000, 0);
    json_t *o = call(cv, "{\"op\":\"embed_text\",\"texts\":[\"a\"]}", NULL, 0);
    ck_assert_str_eq(err_code(o), "no_text_tower");
    json_decref(o);
    o = call(cv, "{\"op\":\"match\",\"texts\":[\"a\"]}", &b, 1);
    ck_assert_str_eq(err_code(o), "no_text_tower");
    json_decref(o);
    o = call(cv, "{\"op\":\"embed_image\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "ok");
    json_decref(o);
    o = call(ct, "{\"op\":\"embed_image\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "no_vision_tower");
    json_decref(o);
    o = call(ct, "{\"op\":\"classify\"}", &b, 1);
    ck_assert_str_eq(err_code(o), "no_vision_tower");
    json_decref(o);
    vit_client_free(cv);
    vit_client_free(ct);
    free(png);
    stop_ok(wv);
    stop_ok(wt);
}
END_TEST

/* Bytes are bounded as well as requests: a request is refused when the
 * work held would pass --max-queue-bytes, though one is always taken. */
START_TEST(test_queue_bytes)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    /* One noise.png request holds its 3 KB or so plus 12 KB of pixels. */
    pid_t w = start_worker(ep, "--max-queue-bytes", "20000", "--max-delay-ms",
                           "300", "--max-batch", "64", "--batch-wait", "full",
                           NULL);
    size_t n;
    unsigned char *png = read_all(NOISE_PNG, &n);
    void *ctx = zmq_ctx_new();
    void *d = dealer(ctx, ep);
    for (int i = 0; i < 3; i++)
        send_classify(d, i, png, n);
    int ok = 0, over = 0;
    for (int i = 0; i < 3; i++) {
        int good;
        int id = recv_reply(d, 5000, &good);
        ck_assert_int_ge(id, 0);
        ok += good;
        over += !good;
        if (!good)
            ck_assert_int_ne(id, 0);  /* the first is always taken */
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(over, 2);
    zmq_close(d);
    zmq_ctx_term(ctx);
    free(png);
    stop_ok(w);
}
END_TEST

/* The commands' usage errors (2) and failures to start (1). */
START_TEST(test_command_errors)
{
    char ep[200];
    endpoint(ep, sizeof ep, "w");
    static const char *const usage[][8] = {
        {"serve", NULL},
        {"serve", "--model", MODEL, NULL},
        {"serve", "--model", MODEL, "--max-batch", "0", NULL},
        {"broker", "--frontend", "ipc:///nonexistent/x", NULL},
        {"client", "classify", NOISE_PNG, NULL},
        {"client", "--connect", "ipc:///nonexistent/x", "fly", NULL},
        /* CURVE: each side's options, and what goes together */
        {"serve", "--model", MODEL, "--connect", "ipc:///n/x",
         "--curve-secret-key", NOISE_PNG, NULL},
        {"serve", "--model", MODEL, "--bind", "ipc:///n/x",
         "--curve-server-key", NOISE_PNG, NULL},
        {"serve", "--model", MODEL, "--connect", "ipc:///n/x",
         "--curve-key", NOISE_PNG, NULL},
        {"broker", "-f", "ipc:///n/x", "-b", "ipc:///n/y",
         "--allow-worker-keys", "/n", NULL},
        {"broker", "-f", "ipc:///n/x", "-b", "ipc:///n/y",
         "--backend-curve-secret-key", NOISE_PNG, NULL},
    };
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        int code;
        char *out = run_capture(&code, usage[i][0], usage[i][1], usage[i][2],
                                usage[i][3], usage[i][4], usage[i][5],
                                usage[i][6], NULL);
        ck_assert_msg(code == 2, "%s %s: exit %d", usage[i][0],
                      usage[i][1] ? usage[i][1] : "", code);
        free(out);
    }
    int code;
    char *out = run_capture(&code, "serve", "--model", "/nonexistent", "--bind",
                            ep, NULL);
    ck_assert_int_eq(code, 1);
    free(out);
    /* mmi. names are the broker's own. */
    out = run_capture(&code, "serve", "--model", MODEL, "--bind", ep,
                      "--name", "mmi.x", NULL);
    ck_assert_int_eq(code, 1);
    free(out);
    /* No server: the client gives up after its tries, exit 1. */
    out = run_capture(&code, "client", "--connect", ep, "--timeout", "100",
                      "--retries", "1", "classify", NOISE_PNG, NULL);
    ck_assert_int_eq(code, 1);
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("worker");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_wire_equals_local);
    tcase_add_test(tc, test_int8_worker);
    tcase_add_test(tc, test_bf16_worker);
    tcase_add_test(tc, test_torchvision_worker);
    tcase_add_test(tc, test_worker_wrong_endpoint);
    tcase_add_test(tc, test_protocol_edges);
    tcase_add_test(tc, test_concurrent_clients);
    tcase_add_test(tc, test_batches_stay_full);
    tcase_add_test(tc, test_malformed_sweep);
    tcase_add_test(tc, test_info_and_embed);
    tcase_add_test(tc, test_overload_deadline_health);
    tcase_add_test(tc, test_sigterm_drains);
    tcase_add_test(tc, test_client_retries);
    tcase_add_test(tc, test_command_errors);
    tcase_add_test(tc, test_curve_allow_list);
    tcase_add_test(tc, test_python_client);
    tcase_add_test(tc, test_clip_over_the_wire);
    tcase_add_test(tc, test_clip_single_towers);
    suite_add_tcase(s, tc);
    tc = tcase_create("broker");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_broker_worker_killed);
    tcase_add_test(tc, test_broker_restart_and_routing);
    tcase_add_test(tc, test_broker_refusals);
    tcase_add_test(tc, test_sigint_twice);
    tcase_add_test(tc, test_queue_bytes);
    tcase_add_test(tc, test_curve_workers);
    tcase_add_test(tc, test_broker_info);
    tcase_add_test(tc, test_broker_stop_flushes_replies);
    suite_add_tcase(s, tc);
    return s;
}
