/*
 * The HTTP gateway (`vit http`, `vit serve --http`) driven with libcurl:
 * a worker on the tiny fixtures over ipc:// in a temporary directory, the
 * gateway on 127.0.0.1 at a port the system picks (read from its log
 * line). Every route answers what the ZeroMQ client gets for the same
 * inputs, numbers identical; the service's error codes come back as HTTP
 * statuses with OpenAI's error shape; the API key, the body limit, a
 * service that does not answer, concurrent requests and a clean stop on
 * SIGTERM. Processes die with the test process (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "service/client.h"
#include "testutil.h"

#define TOK FIXTURES "/clip_tok"
#define TINY FIXTURES "/vit_tiny"
#define GRADIENT FIXTURES "/cli/gradient.jpg"
#define NOISE FIXTURES "/cli/noise.png"

typedef struct {
    char *dir;
    char ep[600];
    char log[700];
    pid_t worker, gw;
    int port;
} fix;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The port of the line "... HTTP listening on http://127.0.0.1:PORT" in
 * `log`, waiting up to 20 s; 0 when `pid` exits first. */
static int wait_port(const char *log, pid_t pid)
{
    for (int i = 0; i < 2000; i++) {
        size_t n;
        unsigned char *b = tu_read(log, &n);
        char *t = b ? strndup((char *)b, n) : NULL;  /* NUL-terminated */
        free(b);
        char *s = t ? strstr(t, "listening on http://127.0.0.1:") : NULL;
        int port = s ? atoi(s + strlen("listening on http://127.0.0.1:")) : 0;
        free(t);
        if (port > 0)
            return port;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0;
        sleep_ms(10);
    }
    return 0;
}

/* `vit http --connect EP --listen 127.0.0.1:0 EXTRA...`, stderr to
 * DIR/http.log; returns once it listens. */
static void start_gw(fix *f, const char *ep, const char *const *extra)
{
    snprintf(f->log, sizeof f->log, "%s/http.log", f->dir);
    unlink(f->log);  /* not the line of a gateway started before */
    const char *argv[32] = {"http", "--connect", ep, "--listen",
                            "127.0.0.1:0"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = tu_spawn(argv, f->log);
    f->gw = pid;
    f->port = wait_port(f->log, pid);
    ck_assert_msg(f->port > 0, "vit http did not start; see %s", f->log);
}

static void fix_start(fix *f, const char *model, const char *index,
                      const char *const *gw_extra)
{
    memset(f, 0, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->ep, sizeof f->ep, "ipc://%s/w.sock", f->dir);
    f->worker = tu_serve_start(model, f->dir, f->ep, index);
    start_gw(f, f->ep, gw_extra);
}

/* SIGTERM to the gateway: exit 0. */
static void stop_gw(fix *f)
{
    kill(f->gw, SIGTERM);
    int status;
    ck_assert_int_eq(waitpid(f->gw, &status, 0), f->gw);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "vit http exited with status %d", status);
}

static void fix_stop(fix *f)
{
    stop_gw(f);
    if (f->worker)
        ck_assert_int_eq(tu_serve_stop(f->worker), 0);
    tu_rmrf(f->dir);
    free(f->dir);
}

/* ---- HTTP with libcurl ---- */

typedef struct {
    long status;
    char *body;
    size_t n;
    char retry_after[32];
    char type[128];
    char allow[64];
} resp;

static size_t on_body(char *d, size_t size, size_t nmemb, void *ud)
{
    resp *r = ud;
    char *b = realloc(r->body, r->n + size * nmemb + 1);
    if (!b)
        return 0;
    memcpy(b + r->n, d, size * nmemb);
    r->n += size * nmemb;
    b[r->n] = '\0';
    r->body = b;
    return size * nmemb;
}

static size_t on_header(char *d, size_t size, size_t nmemb, void *ud)
{
    resp *r = ud;
    size_t n = size * nmemb;
    if (n > 13 && strncasecmp(d, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s",
                 (int)strcspn(d + 13, "\r\n"), d + 13);
    if (n > 7 && strncasecmp(d, "Allow: ", 7) == 0)
        snprintf(r->allow, sizeof r->allow, "%.*s",
                 (int)strcspn(d + 7, "\r\n"), d + 7);
    if (n > 14 && strncasecmp(d, "Content-Type: ", 14) == 0)
        snprintf(r->type, sizeof r->type, "%.*s",
                 (int)strcspn(d + 14, "\r\n"), d + 14);
    return n;
}

/* Set: the next POSTs send their body chunked, with no Content-Length. */
static int g_chunked;

/* A request to the gateway: GET when body and form are NULL, else POST
 * of `body` (JSON) or the multipart `form`. `key`: a bearer token. With
 * rc, curl's result is put there (a connection the server closed
 * unanswered is not a failure of the test); without, it must be CURLE_OK. */
static resp request_rc(int port, const char *path, const char *body,
                       curl_mime *(*form)(CURL *, void *), void *form_ud,
                       const char *key, CURLcode *out_rc)
{
    resp r = {0};
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *hs = NULL;
    char auth[256];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hs = curl_slist_append(hs, auth);
    }
    curl_mime *mime = NULL;
    if (body) {
        hs = curl_slist_append(hs, "Content-Type: application/json");
        if (g_chunked)
            hs = curl_slist_append(hs, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
    } else if (form) {
        mime = form(c, form_ud);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    CURLcode rc = curl_easy_perform(c);
    if (out_rc)
        *out_rc = rc;
    else
        ck_assert_msg(rc == CURLE_OK, "%s: %s", path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_mime_free(mime);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    if (!r.body)
        r.body = strdup("");
    return r;
}

static resp request(int port, const char *path, const char *body,
                    curl_mime *(*form)(CURL *, void *), void *form_ud,
                    const char *key)
{
    return request_rc(port, path, body, form, form_ud, key, NULL);
}

static json_t *json_of(const resp *r)
{
    json_t *o = json_loads(r->body, 0, NULL);
    ck_assert_msg(o != NULL, "not JSON: %s", r->body);
    return o;
}

/* A request that must answer `status` with an error of `code`. */
static void expect_error(int port, const char *path, const char *body,
                         const char *key, long status, const char *code)
{
    resp r = request(port, path, body, NULL, NULL, key);
    ck_assert_msg(r.status == status, "%s %s: %ld, not %ld: %s", path,
                  body ? body : "", r.status, status, r.body);
    json_t *o = json_of(&r);
    const char *got = json_string_value(
        json_object_get(json_object_get(o, "error"), "code"));
    ck_assert_msg(got && strcmp(got, code) == 0, "%s: code %s, not %s", path,
                  got ? got : "(none)", code);
    ck_assert_ptr_nonnull(json_string_value(
        json_object_get(json_object_get(o, "error"), "message")));
    json_decref(o);
    free(r.body);
}

/* ---- the ZeroMQ client's answers ---- */

static json_t *zcall(const char *ep, const char *header, const vit_blob *b,
                     int n, float **rows, size_t *n_rows)
{
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 20000;
    vit_client *c;
    vit_error err = {{0}};
    ck_assert_int_eq(vit_client_new(ep, &o, &c, &err), VIT_OK);
    vit_reply r;
    ck_assert_msg(vit_client_call(c, header, b, n, &r, &err) == VIT_OK, "%s",
                  err.msg);
    json_t *o2 = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(o2);
    if (rows) {
        ck_assert_int_eq(r.n_data, 1);
        *n_rows = r.data[0].size / 4;
        *rows = malloc(r.data[0].size);
        memcpy(*rows, r.data[0].data, r.data[0].size);
    }
    vit_reply_free(&r);
    vit_client_free(c);
    return o2;
}

/* The ZeroMQ client's normalized embeddings of "a cat" and "a photo of a
 * dog.", what the embeddings tests send over HTTP. */
static void two_text_rows(const char *ep, float **rows, size_t *n)
{
    json_decref(zcall(ep,
                      "{\"op\":\"embed_text\",\"normalize\":true,"
                      "\"texts\":[\"a cat\",\"a photo of a dog.\"]}",
                      NULL, 0, rows, n));
}

/* The HTTP embeddings `data` against float32 rows, bit for bit. */
static void same_rows(json_t *data, const float *rows, size_t n)
{
    size_t k = 0, i;
    json_t *d;
    json_array_foreach(data, i, d)
    {
        ck_assert_int_eq(json_integer_value(json_object_get(d, "index")),
                         (json_int_t)i);
        json_t *e = json_object_get(d, "embedding"), *x;
        size_t j;
        json_array_foreach(e, j, x)
        {
            ck_assert_uint_lt(k, n);
            float got = (float)json_number_value(x);
            ck_assert_msg(memcmp(&got, &rows[k], 4) == 0,
                          "row %zu, %zu: %.9g over HTTP, %.9g over ZeroMQ", i,
                          j, (double)got, (double)rows[k]);
            k++;
        }
    }
    ck_assert_uint_eq(k, n);
}

static char *data_uri(const char *path, const char *type)
{
    size_t n;
    unsigned char *b = tu_read(path, &n);
    ck_assert_ptr_nonnull(b);
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t hl = strlen(type) + 13;
    char *s = malloc(hl + (n + 2) / 3 * 4 + 1), *o = s;
    o += sprintf(o, "data:%s;base64,", type);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? b[i + 1] << 8 : 0) |
                     (i + 2 < n ? b[i + 2] : 0);
        *o++ = t[v >> 18 & 63];
        *o++ = t[v >> 12 & 63];
        *o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? t[v & 63] : '=';
    }
    *o = '\0';
    free(b);
    return s;
}

static vit_blob file_blob(const char *path)
{
    size_t n;
    unsigned char *b = tu_read(path, &n);
    ck_assert_ptr_nonnull(b);
    return (vit_blob){b, n};
}

/* A form of the two fixture images and the fields in ud (pairs, NULL
 * ended). */
static curl_mime *two_images(CURL *c, void *ud)
{
    curl_mime *m = curl_mime_init(c);
    const char *files[] = {GRADIENT, NOISE};
    for (int i = 0; i < 2; i++) {
        curl_mimepart *p = curl_mime_addpart(m);
        curl_mime_name(p, "images");
        curl_mime_filedata(p, files[i]);
    }
    for (const char *const *kv = ud; kv && kv[0]; kv += 2) {
        curl_mimepart *p = curl_mime_addpart(m);
        curl_mime_name(p, kv[0]);
        curl_mime_data(p, kv[1], CURL_ZERO_TERMINATED);
    }
    return m;
}

/* ---- tests ---- */

START_TEST(http_routes_match_the_zeromq_client)
{
    fix f;
    fix_start(&f, TOK, NULL, NULL);
    int port = f.port;

    resp r = request(port, "/health", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    free(r.body);
    r = request(port, "/ready", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    free(r.body);

    /* /v1/models from info */
    json_t *info = zcall(f.ep, "{\"op\":\"info\"}", NULL, 0, NULL, NULL);
    r = request(port, "/v1/models", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *o = json_of(&r);
    json_t *m = json_array_get(json_object_get(o, "data"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(o, "object")), "list");
    ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "clip_tok");
    ck_assert_str_eq(json_string_value(json_object_get(m, "architecture")),
                     "CLIPModel");
    ck_assert_int_eq(
        json_integer_value(json_object_get(m, "embedding_dim")),
        json_integer_value(
            json_object_get(json_object_get(info, "model"), "embed_dim")));
    ck_assert_str_eq(json_string_value(json_object_get(m, "precision")),
                     "fp32");
    json_decref(o);
    json_decref(info);
    free(r.body);

    /* text embeddings, a string and a list */
    float *rows;
    size_t n;
    two_text_rows(f.ep, &rows, &n);
    r = request(port, "/v1/embeddings",
                "{\"input\":[\"a cat\",\"a photo of a dog.\"],"
                "\"model\":\"clip_tok\"}",
                NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    ck_assert_str_eq(json_string_value(json_object_get(o, "model")),
                     "clip_tok");
    ck_assert_int_eq(json_array_size(json_object_get(o, "data")), 2);
    same_rows(json_object_get(o, "data"), rows, n);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(o, "usage"), "total_tokens")),
                     0);
    json_decref(o);
    free(r.body);
    r = request(port, "/v1/embeddings", "{\"input\":\"a cat\"}", NULL, NULL,
                NULL);
    o = json_of(&r);
    same_rows(json_object_get(o, "data"), rows, n / 2);
    json_decref(o);
    free(r.body);
    free(rows);

    /* image embeddings: a data: URI and bare base64, and a form */
    vit_blob img[2] = {file_blob(GRADIENT), file_blob(NOISE)};
    json_decref(zcall(f.ep, "{\"op\":\"embed_image\",\"normalize\":true}",
                      img, 2, &rows, &n));
    char *u1 = data_uri(GRADIENT, "image/jpeg"), *u2 = data_uri(NOISE, "");
    char *body = malloc(strlen(u1) + strlen(u2) + 100);
    sprintf(body, "{\"input\":[\"%s\",\"%s\"],\"modality\":\"image\"}", u1,
            strchr(u2, ',') + 1);
    r = request(port, "/v1/embeddings", body, NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    same_rows(json_object_get(o, "data"), rows, n);
    json_decref(o);
    free(r.body);
    r = request(port, "/v1/embeddings", NULL, two_images, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    same_rows(json_object_get(o, "data"), rows, n);
    json_decref(o);
    free(r.body);
    free(rows);

    /* zero-shot classify, JSON and form */
    json_t *want = zcall(f.ep,
                         "{\"op\":\"classify\",\"top_k\":2,\"labels\":"
                         "[\"cat\",\"dog\",\"car\"],\"template\":\"a {}.\"}",
                         img, 2, NULL, NULL);
    sprintf(body,
            "{\"images\":[\"%s\",\"%s\"],\"top_k\":2,\"labels\":[\"cat\","
            "\"dog\",\"car\"],\"template\":\"a {}.\"}",
            u1, u2);
    r = request(port, "/v1/classify", body, NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    ck_assert_msg(json_equal(json_object_get(o, "results"),
                             json_object_get(want, "results")),
                  "%s", r.body);
    json_decref(o);
    free(r.body);
    const char *kv[] = {"top_k", "2", "labels", "cat", "labels", "dog",
                        "labels", "car", "template", "a {}.", NULL};
    r = request(port, "/v1/classify", NULL, two_images, kv, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    ck_assert(json_equal(json_object_get(o, "results"),
                         json_object_get(want, "results")));
    json_decref(o);
    json_decref(want);
    free(r.body);

    /* match */
    want = zcall(f.ep, "{\"op\":\"match\",\"texts\":[\"red\",\"blue\"]}", img,
                 2, NULL, NULL);
    sprintf(body, "{\"images\":[\"%s\",\"%s\"],\"texts\":[\"red\",\"blue\"]}",
            u1, u2);
    r = request(port, "/v1/match", body, NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    for (size_t i = 0; i < 2; i++) {
        json_t *w = json_array_get(json_object_get(want, "results"), i);
        json_t *g = json_array_get(json_object_get(o, "results"), i);
        ck_assert(json_equal(json_object_get(g, "scores"),
                             json_object_get(w, "probs")));
        ck_assert(json_equal(json_object_get(g, "logits"),
                             json_object_get(w, "logits")));
    }
    json_decref(o);
    json_decref(want);
    free(r.body);

    /* /metrics: the worker's Prometheus text */
    r = request(port, "/metrics", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.type, "text/plain"));
    ck_assert_ptr_nonnull(strstr(r.body, "vit_requests_total{"));
    free(r.body);

    /* errors */
    expect_error(port, "/nope", NULL, NULL, 404, "not_found");
    expect_error(port, "/v1/classify", NULL, NULL, 405, "method_not_allowed");
    expect_error(port, "/v1/embeddings", "{\"input\":", NULL, 400,
                 "bad_request");
    expect_error(port, "/v1/embeddings", "[1]", NULL, 400, "bad_request");
    expect_error(port, "/v1/embeddings", "{}", NULL, 400, "missing_field");
    expect_error(port, "/v1/embeddings",
                 "{\"input\":[\"AAAA\"],\"modality\":\"image\"}", NULL, 400,
                 "bad_image");
    expect_error(port, "/v1/embeddings",
                 "{\"input\":[\"https://example.com/a.png\"],"
                 "\"modality\":\"image\"}",
                 NULL, 400, "bad_image");
    expect_error(port, "/v1/embeddings", "{\"input\":\"x\",\"model\":\"no\"}",
                 NULL, 404, "unknown_service");
    sprintf(body, "{\"images\":[\"%s\"]}", u1);
    expect_error(port, "/v1/classify", body, NULL, 422, "no_head");
    sprintf(body, "{\"images\":[\"%s\"],\"top_k\":\"x\",\"labels\":[\"a\"]}",
            u1);
    expect_error(port, "/v1/classify", body, NULL, 400, "bad_request");
    expect_error(port, "/v1/search", "{\"text\":\"x\"}", NULL, 422,
                 "no_index");
    free(body);
    free(u1);
    free(u2);
    free((void *)img[0].data);
    free((void *)img[1].data);
    fix_stop(&f);
}
END_TEST

START_TEST(http_classify_with_a_head)
{
    fix f;
    fix_start(&f, TINY, NULL, NULL);
    vit_blob img[2] = {file_blob(GRADIENT), file_blob(NOISE)};
    json_t *want = zcall(f.ep, "{\"op\":\"classify\",\"top_k\":3}", img, 2,
                         NULL, NULL);
    const char *kv[] = {"top_k", "3", NULL};
    resp r = request(f.port, "/v1/classify", NULL, two_images, kv, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    json_t *o = json_of(&r);
    ck_assert(json_equal(json_object_get(o, "results"),
                         json_object_get(want, "results")));
    json_t *l = json_array_get(
        json_object_get(json_array_get(json_object_get(o, "results"), 0),
                        "labels"),
        0);
    ck_assert_ptr_nonnull(json_object_get(l, "id"));
    ck_assert_ptr_nonnull(json_object_get(l, "label"));
    ck_assert_ptr_nonnull(json_object_get(l, "score"));
    json_decref(o);
    json_decref(want);
    free(r.body);
    /* a text route on a model without a text tower */
    expect_error(f.port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, 422,
                 "no_text_tower");
    free((void *)img[0].data);
    free((void *)img[1].data);
    fix_stop(&f);
}
END_TEST

START_TEST(http_api_key_and_body_limit)
{
    char *saved = tu_env_save("VIT_API_KEY");
    setenv("VIT_API_KEY", "s3cret-key", 1);
    const char *extra[] = {"--max-body-bytes", "4096", NULL};
    fix f;
    fix_start(&f, TOK, NULL, extra);
    tu_env_restore("VIT_API_KEY", saved);
    resp r = request(f.port, "/health", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    expect_error(f.port, "/ready", NULL, NULL, 401, "unauthorized");
    expect_error(f.port, "/v1/models", NULL, "s3cret-kez", 401,
                 "unauthorized");
    expect_error(f.port, "/v1/embeddings", "{\"input\":\"x\"}", "s3cret", 401,
                 "unauthorized");
    r = request(f.port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, NULL,
                "s3cret-key");
    ck_assert_msg(r.status == 200, "%s", r.body);
    free(r.body);
    /* past the limit: 413, told by Content-Length or found while read */
    char *big = malloc(8192);
    memset(big, ' ', 8191);
    big[0] = '{';
    memcpy(big + 8189, "}", 2);
    expect_error(f.port, "/v1/embeddings", big, "s3cret-key", 413,
                 "too_large");
    g_chunked = 1;  /* no Content-Length: found while read */
    expect_error(f.port, "/v1/embeddings", big, "s3cret-key", 413,
                 "too_large");
    r = request(f.port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, NULL,
                "s3cret-key");
    g_chunked = 0;
    ck_assert_msg(r.status == 200, "%s", r.body);
    free(r.body);
    free(big);
    r = request(f.port, "/v1/embeddings", NULL, two_images, NULL,
                "s3cret-key");
    ck_assert_int_eq(r.status, 413);
    free(r.body);
    stop_gw(&f);

    /* the key from a file */
    char path[700];
    snprintf(path, sizeof path, "%s/key", f.dir);
    ck_assert_int_eq(tu_write(path, "filekey\n", 8), 0);
    const char *extra2[] = {"--api-key-file", path, NULL};
    start_gw(&f, f.ep, extra2);
    expect_error(f.port, "/ready", NULL, "s3cret-key", 401, "unauthorized");
    r = request(f.port, "/ready", NULL, NULL, NULL, "filekey");
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    fix_stop(&f);
}
END_TEST

typedef struct {
    int port;
    const float *rows;
    size_t n;
    int reps;
    int ok;
} conc;

static void *conc_main(void *p)
{
    conc *c = p;
    for (int i = 0; i < c->reps; i++) {
        resp r = request(c->port, "/v1/embeddings",
                         "{\"input\":[\"a cat\",\"a photo of a dog.\"]}", NULL,
                         NULL, NULL);
        json_t *o = json_loads(r.body, 0, NULL);
        size_t k = 0, j;
        json_t *d;
        int same = r.status == 200 && o;
        json_array_foreach(json_object_get(o, "data"), j, d)
        {
            size_t q;
            json_t *x;
            json_array_foreach(json_object_get(d, "embedding"), q, x)
            {
                float g = (float)json_number_value(x);
                same &= k < c->n && memcmp(&g, &c->rows[k], 4) == 0;
                k++;
            }
        }
        c->ok += same && k == c->n;
        json_decref(o);
        free(r.body);
    }
    return NULL;
}

START_TEST(http_concurrent_requests_and_a_drain)
{
    fix f;
    fix_start(&f, TOK, NULL, NULL);
    float *rows;
    size_t n;
    two_text_rows(f.ep, &rows, &n);
    enum { T = 8 };
    pthread_t th[T];
    conc c[T];
    for (int i = 0; i < T; i++) {
        c[i] = (conc){f.port, rows, n, 5, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(c[i].ok, 5);
    }
    /* A request in flight when SIGTERM comes is answered before the
     * gateway exits: the worker stopped holds it until after the signal. */
    kill(f.worker, SIGSTOP);
    c[0] = (conc){f.port, rows, n, 1, 0};
    ck_assert_int_eq(pthread_create(&th[0], NULL, conc_main, &c[0]), 0);
    sleep_ms(300);
    kill(f.gw, SIGTERM);
    sleep_ms(300);
    ck_assert_int_eq(waitpid(f.gw, NULL, WNOHANG), 0);  /* still draining */
    kill(f.worker, SIGCONT);
    pthread_join(th[0], NULL);
    ck_assert_int_eq(c[0].ok, 1);
    free(rows);
    fix_stop(&f);
}
END_TEST

START_TEST(http_no_service)
{
    /* Nothing at the endpoint: not ready (503), work times out (504). */
    fix f = {0};
    f.dir = tu_tmpdir();
    char ep[700];
    snprintf(ep, sizeof ep, "ipc://%s/none.sock", f.dir);
    const char *extra[] = {"--timeout", "300", NULL};
    start_gw(&f, ep, extra);
    expect_error(f.port, "/ready", NULL, NULL, 503, "not_ready");
    resp r = request(f.port, "/ready", NULL, NULL, NULL, NULL);
    ck_assert_str_eq(r.retry_after, "1");
    free(r.body);
    expect_error(f.port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, 504,
                 "timeout");
    fix_stop(&f);
}
END_TEST

typedef struct {
    int port;
    resp r;
} one_req;

/* One embedding request. On a loaded machine the server may not yet have
 * seen the earlier requests' connections close, and at its limit of four
 * it closes a new one unanswered, as it should: that one is sent again. */
static void *one_main(void *p)
{
    one_req *o = p;
    for (int attempt = 0; attempt < 5; attempt++) {
        CURLcode rc;
        o->r = request_rc(o->port, "/v1/embeddings", "{\"input\":\"a cat\"}",
                          NULL, NULL, NULL, &rc);
        if (rc == CURLE_OK)
            break;
        ck_assert_msg(rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING,
                      "/v1/embeddings: %s", curl_easy_strerror(rc));
        free(o->r.body);
        o->r = (resp){0};
        sleep_ms(200);
    }
    return NULL;
}

START_TEST(http_statuses_and_limits)
{
    /* A worker whose queue holds one request, kept 400 ms for a batch. */
    fix f = {0};
    f.dir = tu_tmpdir();
    snprintf(f.ep, sizeof f.ep, "ipc://%s/w.sock", f.dir);
    const char *wx[] = {"--max-queue", "1", "--max-delay-ms", "400",
                        "--batch-wait", "full", NULL};
    f.worker = tu_serve_start_args(TOK, f.dir, f.ep, NULL, wx);
    const char *gx[] = {"--max-connections", "4", "--connection-timeout",
                        "1", "--timeout", "5000", NULL};
    start_gw(&f, f.ep, gx);

    expect_error(f.port, "/v2/nothing", NULL, NULL, 404, "not_found");
    resp r = request(f.port, "/v1/embeddings", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "POST");
    free(r.body);
    r = request(f.port, "/health", "{}", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.allow, "GET, HEAD");
    free(r.body);
    /* Its deadline passes while it waits for a batch: 504. */
    expect_error(f.port, "/v1/embeddings",
                 "{\"input\":\"x\",\"deadline_ms\":50}", NULL, 504,
                 "deadline_exceeded");

    /* Three at once: one is queued, the others find the queue full. */
    enum { T = 3 };
    pthread_t th[T];
    one_req q[T];
    for (int i = 0; i < T; i++) {
        q[i].port = f.port;
        ck_assert_int_eq(pthread_create(&th[i], NULL, one_main, &q[i]), 0);
    }
    int ok = 0, over = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += q[i].r.status == 200;
        if (q[i].r.status == 429) {
            over++;
            ck_assert_str_eq(q[i].r.retry_after, "1");
            ck_assert_ptr_nonnull(strstr(q[i].r.body, "\"overloaded\""));
        }
        free(q[i].r.body);
    }
    printf("http: 3 at once on a queue of 1: %d ok, %d 429\n", ok, over);
    ck_assert_int_ge(ok, 1);
    ck_assert_int_ge(over, 1);
    ck_assert_int_eq(ok + over, T);

    /* Four idle connections take every place: a fifth is closed
     * unanswered (or, when a place is being freed, waits for it); a second
     * later the idle ones are timed out and there is room again.
     * libmicrohttpd counts a closed connection until its own thread next
     * wakes to clean it up, so one of the four may itself be refused for
     * connections that are already gone (and a place be free again by the
     * time the fifth comes): such a try proves nothing and is made again,
     * up to five times, each after a pause for that clean-up. */
    int refused = 0, tries_held = 0;
    for (int attempt = 0; attempt < 5 && !refused; attempt++) {
        sleep_ms(300);
        int fds[4];
        for (int i = 0; i < 4; i++)
            fds[i] = tu_tcp_connect(f.port);
        sleep_ms(200);
        int open4 = 1;
        for (int i = 0; i < 4; i++) {
            struct pollfd pf = {.fd = fds[i], .events = POLLIN};
            open4 &= poll(&pf, 1, 0) == 0;  /* not closed by it */
        }
        if (open4) {
            tries_held++;
            CURL *c = curl_easy_init();
            char url[64];
            snprintf(url, sizeof url, "http://127.0.0.1:%d/health", f.port);
            curl_easy_setopt(c, CURLOPT_URL, url);
            curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
            resp fifth = {0};
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &fifth);
            double t0 = now_ms();
            CURLcode cc = curl_easy_perform(c);
            double waited = now_ms() - t0;
            curl_easy_cleanup(c);
            free(fifth.body);
            printf("http: a fifth connection of 4: %s after %.0f ms\n",
                   cc == CURLE_OK ? "answered" : curl_easy_strerror(cc),
                   waited);
            refused = cc != CURLE_OK || waited > 500;
        } else {
            printf("http: one of 4 idle connections was refused for "
                   "connections not yet cleaned up; again\n");
        }
        for (int i = 0; i < 4; i++) {
            char b;
            ck_assert_int_eq(recv(fds[i], &b, 1, 0), 0);  /* closed by it */
            close(fds[i]);
        }
    }
    ck_assert_msg(tries_held > 0, "in each of 5 tries, one of 4 idle connections "
                            "was refused");
    ck_assert_msg(refused, "a fifth connection was answered at once, in "
                           "each of %d tries that held four", tries_held);

    /* A worker draining refuses new work: 503, try again. A worker of its
     * own, which keeps a request 3 s for a batch: stopped once it holds
     * one (its queue depth, in the metrics it answers at once), it answers
     * the next with 503 while it finishes the first. (Stopped with nothing
     * in hand it would exit at once, and with a shorter wait it could be
     * done before the next came, on a loaded machine.) */
    kill(f.worker, SIGTERM);
    waitpid(f.worker, NULL, 0);
    const char *dx[] = {"--max-delay-ms", "3000", "--batch-wait", "full",
                        NULL};
    f.worker = tu_serve_start_args(TOK, f.dir, f.ep, NULL, dx);
    q[0].port = f.port;
    ck_assert_int_eq(pthread_create(&th[0], NULL, one_main, &q[0]), 0);
    int held = 0;
    for (int i = 0; i < 100 && !held; i++) {
        r = request(f.port, "/metrics", NULL, NULL, NULL, NULL);
        const char *d = r.status == 200 ? strstr(r.body, "vit_queue_depth{")
                                        : NULL;
        held = d && strstr(d, "} 1\n") == strchr(d, '}');
        free(r.body);
        if (!held)
            sleep_ms(20);
    }
    ck_assert_msg(held, "the worker never held the request");
    kill(f.worker, SIGTERM);
    sleep_ms(50);
    r = request(f.port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, NULL,
                NULL);
    ck_assert_msg(r.status == 503 && strstr(r.body, "shutting_down"),
                  "%ld %s", r.status, r.body);
    ck_assert_str_eq(r.retry_after, "1");
    free(r.body);
    pthread_join(th[0], NULL);
    ck_assert_int_eq(q[0].r.status, 200);
    free(q[0].r.body);
    waitpid(f.worker, NULL, 0);
    f.worker = 0;
    fix_stop(&f);
}
END_TEST

/* The search results over HTTP against the ZeroMQ client's. */
static void same_search(int port, const char *body, json_t *want)
{
    resp r = request(port, "/v1/search", body, NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    json_t *o = json_of(&r);
    json_t *got = json_object_get(o, "results");
    json_t *w = json_array_get(json_object_get(want, "results"), 0);
    ck_assert_uint_gt(json_array_size(w), 0);
    ck_assert_uint_eq(json_array_size(got), json_array_size(w));
    for (size_t i = 0; i < json_array_size(w); i++) {
        json_t *g = json_array_get(got, i), *e = json_array_get(w, i);
        ck_assert_int_eq(json_integer_value(json_object_get(g, "rank")),
                         (json_int_t)i + 1);
        ck_assert(json_equal(json_object_get(g, "score"),
                             json_object_get(e, "score")));
        ck_assert(json_equal(json_object_get(g, "path"),
                             json_object_get(e, "id")));
        ck_assert(json_equal(json_object_get(g, "id"),
                             json_object_get(e, "rowid")));
    }
    json_decref(o);
    free(r.body);
}

START_TEST(http_search_an_index)
{
    char *dir = tu_tmpdir(), index[700];
    snprintf(index, sizeof index, "%s/photos.vidx", dir);
    fix f;
    fix_start(&f, TOK, index, NULL);
    vit_blob img[2] = {file_blob(GRADIENT), file_blob(NOISE)};
    json_decref(zcall(f.ep,
                      "{\"op\":\"index_add\",\"ids\":[\"a/gradient.jpg\","
                      "\"b/noise.png\"]}",
                      img, 2, NULL, NULL));
    json_t *want = zcall(f.ep,
                         "{\"op\":\"search_text\",\"k\":2,\"texts\":"
                         "[\"a red sky\"]}",
                         NULL, 0, NULL, NULL);
    same_search(f.port, "{\"text\":\"a red sky\",\"k\":2}", want);
    json_decref(want);
    want = zcall(f.ep,
                 "{\"op\":\"search_image\",\"k\":5,\"prefix\":\"b/\"}",
                 img + 1, 1, NULL, NULL);
    char *u = data_uri(NOISE, "image/png");
    char *body = malloc(strlen(u) + 64);
    sprintf(body, "{\"image\":\"%s\",\"k\":5,\"prefix\":\"b/\"}", u);
    same_search(f.port, body, want);
    json_decref(want);
    expect_error(f.port, "/v1/search", "{\"k\":2}", NULL, 400,
                 "bad_request");
    expect_error(f.port, "/v1/search", "{\"text\":\"x\",\"k\":0}", NULL,
                 400, "bad_request");
    free(body);
    free(u);
    free((void *)img[0].data);
    free((void *)img[1].data);
    fix_stop(&f);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Whether the PNG at `path` has more than one colour. */
static int png_not_blank(const char *path)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return 0;
    im.format = PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(im);
    unsigned char *px = malloc(n);
    int ok = px && png_image_finish_read(&im, NULL, px, 0, NULL);
    int differ = 0;
    for (size_t i = 3; ok && i < n && !differ; i++)
        differ = px[i] != px[i % 3];
    free(px);
    return differ;
}

START_TEST(http_search_page)
{
    ck_assert_msg(tu_have_program("chromium"),
                  "Debian's chromium is needed for this test (sh .ci/deps "
                  "installs it)");
    /* Two files indexed by `vit index add`, one item added over the
     * protocol (not a file). */
    char *dir = tu_tmpdir();
    char index[700], imgs[700], a[800], b[800];
    snprintf(index, sizeof index, "%s/photos.vidx", dir);
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    snprintf(a, sizeof a, "%s/gradient.jpg", imgs);
    snprintf(b, sizeof b, "%s/noise.png", imgs);
    ck_assert_int_eq(tu_copy(GRADIENT, a), 0);
    ck_assert_int_eq(tu_copy(NOISE, b), 0);
    tu_run_result rr;
    tu_run(&rr, "index", "add", "--model", TOK, "--index", index, imgs,
           NULL);
    ck_assert_msg(rr.code == 0, "%s", rr.err);
    tu_run_free(&rr);
    fix f;
    fix_start(&f, TOK, index, NULL);
    vit_blob img = file_blob(NOISE);
    json_decref(zcall(f.ep, "{\"op\":\"index_add\",\"ids\":[\"not/a/file\"]}",
                      &img, 1, NULL, NULL));
    free((void *)img.data);

    resp r = request(f.port, "/", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(r.body, "<script>"));
    ck_assert_ptr_null(strstr(r.body, "http:"));  /* nothing external */
    ck_assert_ptr_null(strstr(r.body, "https:"));
    ck_assert_ptr_null(strstr(r.body, "<img>"));
    free(r.body);
    /* Files of the index, byte for byte; nothing else. */
    char path[1000];
    char *esc = curl_easy_escape(NULL, a, 0);
    snprintf(path, sizeof path, "/v1/image?id=%s", esc);
    curl_free(esc);
    r = request(f.port, path, NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.type, "image/jpeg");
    size_t n;
    unsigned char *want = tu_read(GRADIENT, &n);
    ck_assert(r.n == n && memcmp(r.body, want, n) == 0);
    free(want);
    free(r.body);
    expect_error(f.port, "/v1/image?id=%2Fetc%2Fpasswd", NULL, NULL, 404,
                 "not_found");
    expect_error(f.port, "/v1/image?id=not%2Fa%2Ffile", NULL, NULL, 404,
                 "not_found");
    expect_error(f.port, "/v1/image", NULL, NULL, 400, "bad_request");

    /* The page in headless Chromium, a text query in its address. */
    char out[800], shot[800], profile[800], url[200], shotarg[900];
    snprintf(out, sizeof out, "%s/dom.html", dir);
    snprintf(shot, sizeof shot, "%s/page.png", dir);
    snprintf(shotarg, sizeof shotarg, "--screenshot=%s", shot);
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile", dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/#q=a%%20red%%20sky",
             f.port);
    char *argv[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-first-run", "--disable-extensions", profile,
                    "--virtual-time-budget=5000", "--dump-dom", url, NULL};
    ck_assert_int_eq(tu_run_bounded(argv, out, 90), 0);
    char *dom = (char *)tu_read(out, &n);
    ck_assert_ptr_nonnull(dom);
    dom = realloc(dom, n + 1);
    dom[n] = '\0';
    int hits = 0;
    for (const char *p = dom; (p = strstr(p, "class=\"hit\"")); p++)
        hits++;
    int blobs = 0;
    for (const char *p = dom; (p = strstr(p, "src=\"blob:")); p++)
        blobs++;
    printf("http: the search page shows %d hits, %d images\n", hits, blobs);
    ck_assert_msg(hits == 3, "%d hits in the page: %s", hits, dom);
    ck_assert_int_eq(blobs, 2);  /* the item that is no file has none */
    ck_assert_ptr_nonnull(strstr(dom, "gradient.jpg"));
    free(dom);
    char *argv2[] = {"chromium", "--headless", "--no-sandbox",
                     "--disable-gpu", "--no-first-run",
                     "--disable-extensions", profile,
                     "--virtual-time-budget=5000", "--window-size=800,600",
                     shotarg, url, NULL};
    ck_assert_int_eq(tu_run_bounded(argv2, out, 90), 0);
    ck_assert_msg(png_not_blank(shot), "the screenshot is blank");
    fix_stop(&f);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(http_in_the_serving_process)
{
    /* vit serve --http: the same gateway, to the worker's own endpoint */
    char *dir = tu_tmpdir(), ep[700], log[700];
    snprintf(ep, sizeof ep, "ipc://%s/w.sock", dir);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    const char *extra[] = {"--http", "127.0.0.1:0", NULL};
    pid_t pid = tu_serve_start_args(TOK, dir, ep, NULL, extra);
    int port = wait_port(log, pid);
    ck_assert_int_gt(port, 0);
    resp r = request(port, "/ready", NULL, NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    free(r.body);
    float *rows;
    size_t n;
    json_decref(zcall(ep,
                      "{\"op\":\"embed_text\",\"normalize\":true,"
                      "\"texts\":[\"a cat\"]}",
                      NULL, 0, &rows, &n));
    r = request(port, "/v1/embeddings", "{\"input\":\"a cat\"}", NULL,
                NULL, NULL);
    json_t *o = json_of(&r);
    same_rows(json_object_get(o, "data"), rows, n);
    json_decref(o);
    free(r.body);
    free(rows);
    ck_assert_int_eq(tu_serve_stop(pid), 0);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static void kill_wait(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

START_TEST(http_behind_a_broker)
{
    /* The same gateway to a broker: /v1/models lists each model with a
     * live worker, "model" routes to it. */
    fix f = {0};
    f.dir = tu_tmpdir();
    char front[700], back[700], log[700];
    snprintf(front, sizeof front, "ipc://%s/front.sock", f.dir);
    snprintf(back, sizeof back, "ipc://%s/back.sock", f.dir);
    snprintf(log, sizeof log, "%s/broker.log", f.dir);
    const char *b[] = {"broker", "--frontend", front, "--backend", back,
                       "--heartbeat-ms", "100", NULL};
    pid_t broker = tu_spawn(b, log);
    const char *w1[] = {"serve", "--model", TOK, "--connect", back,
                        "--heartbeat-ms", "100", NULL};
    const char *w2[] = {"serve", "--model", TINY, "--connect", back,
                        "--heartbeat-ms", "100", NULL};
    pid_t p1 = tu_spawn(w1, log), p2 = tu_spawn(w2, log);
    start_gw(&f, front, NULL);
    json_t *o = NULL;
    for (int i = 0; i < 400; i++) {
        resp r = request(f.port, "/v1/models", NULL, NULL, NULL, NULL);
        json_decref(o);
        o = r.status == 200 ? json_of(&r) : NULL;
        free(r.body);
        if (json_array_size(json_object_get(o, "data")) == 2)
            break;
        sleep_ms(25);
    }
    json_t *d = json_object_get(o, "data");
    ck_assert_msg(json_array_size(d) == 2, "the models did not show");
    int tok = strcmp(json_string_value(json_object_get(
                         json_array_get(d, 0), "id")), "clip_tok") == 0;
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(d, tok ? 1 : 0), "id")),
                     "vit_tiny");
    json_decref(o);
    resp r = request(f.port, "/v1/embeddings",
                     "{\"input\":\"a cat\",\"model\":\"clip_tok\"}", NULL,
                     NULL, NULL);
    ck_assert_msg(r.status == 200, "%s", r.body);
    o = json_of(&r);
    ck_assert_str_eq(json_string_value(json_object_get(o, "model")),
                     "clip_tok");
    json_decref(o);
    free(r.body);
    expect_error(f.port, "/v1/embeddings",
                 "{\"input\":\"a cat\",\"model\":\"vit_tiny\"}", NULL, 422,
                 "no_text_tower");
    stop_gw(&f);
    kill_wait(p1);
    kill_wait(p2);
    kill_wait(broker);
    tu_rmrf(f.dir);
    free(f.dir);
}
END_TEST

Suite *http_suite(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("http");
    TCase *t = tcase_create("gateway");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, http_routes_match_the_zeromq_client);
    tcase_add_test(t, http_classify_with_a_head);
    tcase_add_test(t, http_api_key_and_body_limit);
    tcase_add_test(t, http_concurrent_requests_and_a_drain);
    tcase_add_test(t, http_no_service);
    tcase_add_test(t, http_search_an_index);
    tcase_add_test(t, http_in_the_serving_process);
    tcase_add_test(t, http_behind_a_broker);
    tcase_add_test(t, http_statuses_and_limits);
    tcase_add_test(t, http_search_page);
    suite_add_tcase(s, t);
    return s;
}
