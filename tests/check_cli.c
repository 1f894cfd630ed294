/*
 * Tests of the `vit` command as a user runs it: the built binary (VIT_BIN,
 * set by `make test`; build/vit by default) is started with fork + exec, its
 * stdout and stderr captured, and its exit status, output formats and error
 * reports checked. Numbers are checked against the transformers reference in
 * tests/fixtures/vit_tiny (ref_pixels.npy in, ref_logits.npy out) and, for
 * decoded images, against the library called directly. Every test works in
 * its own temporary directory, removed afterwards.
 *
 * tests/fixtures/cli/ holds small images made with Pillow (photo.jpg, a
 * larger one, by tests/gen_fixtures.py); the first two so:
 *   r = numpy.random.default_rng(0)
 *   Image.fromarray(r.integers(0, 256, (30, 40, 3), dtype=numpy.uint8))
 *        .save("noise.png")
 *   y, x = numpy.mgrid[0:48, 0:48]
 *   Image.fromarray(numpy.stack([x * 5, y * 5, (x + y) * 2], -1)
 *        .astype(numpy.uint8)).save("gradient.jpg", quality=90)
 */
#define _XOPEN_SOURCE 700 /* posix_openpt, nftw */

#include "testutil.h"
#include "vit/vit.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODEL "tests/fixtures/vit_tiny"
#define REF_PIXELS MODEL "/ref_pixels.npy"
#define REF_LOGITS MODEL "/ref_logits.npy"
#define NOISE_PNG "tests/fixtures/cli/noise.png"
#define GRADIENT_JPG "tests/fixtures/cli/gradient.jpg"
#define TOL 1e-4

/* ---- running the command ---- */

/* The runner lives in testutil.c; these names keep the tests short. */
typedef tu_run_result run_result;
#define run tu_run
#define run_argv tu_run_argv
#define run_argv_fd tu_run_argv_fd
#define run_free tu_run_free
#define vit_bin tu_vit_bin

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The lines of `s` (modified in place); returns how many. */
static int split_lines(char *s, char **lines, int max)
{
    int n = 0;
    while (*s && n < max) {
        lines[n++] = s;
        char *nl = strchr(s, '\n');
        if (!nl)
            break;
        *nl = '\0';
        s = nl + 1;
    }
    return n;
}

/* ---- a temporary directory per test ---- */

static char g_tmp[64];

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void tmp_remove(void)
{
    if (g_tmp[0]) {
        nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        g_tmp[0] = '\0';
    }
}

static void tmp_setup(void)
{
    static int registered;
    if (!registered) {
        /* A failed assertion in a forked test exits without the teardown;
         * exit handlers still run. */
        atexit(tmp_remove);
        registered = 1;
    }
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/vit_cli_XXXXXX",
             base && *base && strlen(base) < 40 ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static void tmp_teardown(void)
{
    tmp_remove();
}

/* g_tmp/rel; the result is static, one of a few rotating buffers. */
static const char *tmp_path(const char *rel)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", g_tmp, rel);
    return b;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void copy_file(const char *src, const char *dst)
{
    FILE *f = fopen(src, "rb");
    ck_assert_msg(f != NULL, "%s: %s", src, strerror(errno));
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    ck_assert_msg(feof(f), "%s is larger than the copy buffer", src);
    fclose(f);
    write_file(dst, buf, n);
}

/* A float32 .npy of zeros with the given shape. */
static void write_npy(const char *path, const int *shape, int ndim)
{
    char dims[128] = "";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        size_t o = strlen(dims);
        snprintf(dims + o, sizeof dims - o, "%d,%s", shape[i],
                 i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1)
        dims[strlen(dims) - 1] = '\0';  /* (3, 4) but (3,) */
    char hdr[256];
    int len = snprintf(hdr, sizeof hdr,
                       "{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (%s), }", dims);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)(len + pad + 1);
    size_t size = 10 + hlen + count * 4;
    unsigned char *b = calloc(1, size);
    ck_assert_ptr_nonnull(b);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + 10, hdr, (size_t)len);
    memset(b + 10 + len, ' ', (size_t)pad);
    b[10 + hlen - 1] = '\n';
    write_file(path, b, size);
    free(b);
}

/* ---- reference numbers ---- */

static double rel_diff(const float *a, const float *b, int n)
{
    double maxd = 0, maxv = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        maxd = d > maxd ? d : maxd;
        maxv = fabs((double)b[i]) > maxv ? fabs((double)b[i]) : maxv;
    }
    return maxv > 0 ? maxd / maxv : maxd;
}

/* The `logits` array of a JSON line into out[n]. */
static void json_floats(json_t *arr, float *out, int n)
{
    ck_assert_msg(json_is_array(arr), "logits is not an array");
    ck_assert_int_eq((int)json_array_size(arr), n);
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, (size_t)i);
        ck_assert_msg(json_is_real(v), "logit %d is not a JSON real", i);
        out[i] = (float)json_real_value(v);
    }
}

/* Checks one jsonl result against reference logits `ref` (num_labels L):
 * the path, the logits within TOL, the top-k ids in reference order (ties
 * within TOL may swap) and the scores against the reference softmax. */
static void check_result(json_t *obj, const char *path, const float *ref,
                         int L, int k)
{
    ck_assert_msg(json_is_object(obj), "not a JSON object");
    ck_assert_str_eq(json_string_value(json_object_get(obj, "path")), path);

    float *logits = malloc((size_t)L * sizeof *logits);
    ck_assert_ptr_nonnull(logits);
    json_floats(json_object_get(obj, "logits"), logits, L);
    double d = rel_diff(logits, ref, L);
    printf("cli %s: logits max rel diff %.3g\n", path, d);
    ck_assert_msg(d <= TOL, "%s: logits differ by %g (relative)", path, d);
    free(logits);

    double maxv = 0, sum = 0, maxabs = 0;
    for (int i = 0; i < L; i++) {
        maxv = i == 0 || ref[i] > maxv ? ref[i] : maxv;
        maxabs = fabs(ref[i]) > maxabs ? fabs(ref[i]) : maxabs;
    }
    for (int i = 0; i < L; i++)
        sum += exp(ref[i] - maxv);

    json_t *labels = json_object_get(obj, "labels");
    ck_assert(json_is_array(labels));
    ck_assert_int_eq((int)json_array_size(labels), k < L ? k : L);
    int used[4096] = {0};
    ck_assert_int_le(L, 4096);
    for (int r = 0; r < (int)json_array_size(labels); r++) {
        /* the r-th largest reference logit not yet taken */
        int best = -1;
        for (int i = 0; i < L; i++)
            if (!used[i] && (best < 0 || ref[i] > ref[best]))
                best = i;
        json_t *e = json_array_get(labels, (size_t)r);
        int id = (int)json_integer_value(json_object_get(e, "id"));
        ck_assert_msg(id >= 0 && id < L && !used[id], "bad id %d", id);
        ck_assert_msg(id == best || fabs(ref[id] - ref[best]) <= TOL * maxabs,
                      "%s rank %d: id %d, reference says %d", path, r, id,
                      best);
        used[id] = 1;
        double want = exp(ref[id] - maxv) / sum;
        double score = json_real_value(json_object_get(e, "score"));
        ck_assert_msg(fabs(score - want) <= TOL, "%s: score %g, want %g",
                      path, score, want);
        ck_assert(json_is_string(json_object_get(e, "label")));
    }
}

static void read_npy(const char *path, vit_array *a)
{
    vit_error err = {{0}};
    ck_assert_msg(vit_npy_read(path, a, &err) == VIT_OK, "%s", err.msg);
}

/* ---- help, version, usage ---- */

START_TEST(test_version)
{
    run_result r;
    run(&r, "--version", NULL);
    ck_assert_int_eq(r.code, 0);
    /* The version, then the CPU path and the features it was chosen by. */
    ck_assert_msg(strncmp(r.out, "vit 0.1.0\ncpu: ", 15) == 0, "%s", r.out);
    const char *path = r.out + 15;
    ck_assert_msg(!strncmp(path, "generic (", 9) || !strncmp(path, "avx2 (", 6) ||
                      !strncmp(path, "avx512 (", 8) || !strncmp(path, "amx (", 5),
                  "%s", r.out);
    ck_assert_str_eq(r.err, "");
    run_free(&r);
}
END_TEST

/* VIT_ISA caps the path, and a value that names none is an error that
 * stops the model from loading, saying what the values are. */
START_TEST(test_vit_isa)
{
    char *saved = tu_env_save("VIT_ISA");
    setenv("VIT_ISA", "generic", 1);
    run_result r;
    run(&r, "--version", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_msg(strstr(r.out, "cpu: generic ("), "%s", r.out);
    run_free(&r);
    setenv("VIT_ISA", "sse9", 1);
    run(&r, "--version", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "VIT_ISA=sse9 is not a path"), "%s", r.err);
    run_free(&r);
    run(&r, "classify", "--model", MODEL, REF_PIXELS, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "generic, avx2, avx512 and amx"), "%s", r.err);
    run_free(&r);
    tu_env_restore("VIT_ISA", saved);
}
END_TEST

START_TEST(test_help)
{
    static const char *const flags[] = {"--help", "-h"};
    run_result r;
    run(&r, flags[_i], NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    ck_assert_ptr_nonnull(strstr(r.out, "classify"));
    ck_assert_ptr_nonnull(strstr(r.out, "--version"));
    /* Every subcommand DESIGN.md names now exists and is offered. */
    static const char *const service[] = {"serve", "broker", "client",
                                          "embed", "match",  "bench",
                                          "index"};
    for (size_t i = 0; i < sizeof service / sizeof *service; i++)
        ck_assert_msg(strstr(r.out, service[i]), "help omits '%s'",
                      service[i]);
    run_free(&r);
}
END_TEST

START_TEST(test_classify_help)
{
    static const char *const flags[] = {"--help", "-h"};
    static const char *const words[] = {
        "--model", "-m", "--top-k", "-k", "--format", "-f", "--logits",
        "--batch", "-b", "--help", "text", "jsonl", "csv", ".npy", "PATH"};
    run_result r;
    /* Help needs no --model and wins over other options. */
    run(&r, "classify", "--top-k", "3", flags[_i], NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        ck_assert_msg(strstr(r.out, words[i]), "help lacks '%s'", words[i]);
    run_free(&r);
}
END_TEST

/* Each row: the arguments of a usage error, which must exit 2 with the
 * usage line on stderr and nothing on stdout, before any model is loaded
 * (the model directory here does not exist). */
static const char *const usage_cases[][8] = {
    {NULL},
    {"frobnicate", NULL},
    {"--frobnicate", NULL},
    {"classify", NULL},
    {"classify", REF_PIXELS, NULL},
    {"classify", "--model", "/nonexistent", NULL},
    {"classify", "--model", NULL},
    {"classify", "--model", "/nonexistent", "--top-k", "0", "x", NULL},
    {"classify", "--model", "/nonexistent", "--top-k", "-1", "x", NULL},
    {"classify", "--model", "/nonexistent", "--top-k", "abc", "x", NULL},
    {"classify", "--model", "/nonexistent", "--top-k", "3x", "x", NULL},
    {"classify", "--model", "/nonexistent", "--top-k", "", "x", NULL},
    {"classify", "--model", "/nonexistent", "-k", "99999999999", "x", NULL},
    {"classify", "--model", "/nonexistent", "--format", "xml", "x", NULL},
    {"classify", "--model", "/nonexistent", "--batch", "0", "x", NULL},
    {"classify", "--model", "/nonexistent", "--batch", "100000", "x", NULL},
    {"classify", "--model", "/nonexistent", "--bogus", "x", NULL},
    {"classify", "--model", "/nonexistent", "-z", "x", NULL},
    {"classify", "--model", "/nonexistent", "--logits=1", "x", NULL},
    {"classify", "--model", "/nonexistent", "--logits", "--format", "csv",
     "x", NULL},
    {"classify", "--model", "/nonexistent", "x", "--top-k", NULL},
};
#define N_USAGE_CASES (int)(sizeof usage_cases / sizeof *usage_cases)

START_TEST(test_usage_error)
{
    run_result r;
    run_argv(&r, usage_cases[_i]);
    ck_assert_msg(r.code == 2, "case %d: exit %d, stderr: %s", _i, r.code,
                  r.err);
    ck_assert_msg(strstr(r.err, "usage: vit"), "case %d: stderr: %s", _i,
                  r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
}
END_TEST

/* ---- model errors ---- */

START_TEST(test_model_missing)
{
    run_result r;
    run(&r, "classify", "--model", "/nonexistent/model", REF_PIXELS, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strncmp(r.err, "vit: /nonexistent/model: ", 25) == 0,
                  "stderr: %s", r.err);
    ck_assert_int_eq(count_lines(r.err), 1);
    run_free(&r);
}
END_TEST

START_TEST(test_model_without_head)
{
    run_result r;
    run(&r, "classify", "--model", "tests/fixtures/vit_model", REF_PIXELS,
        NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strncmp(r.err, "vit: tests/fixtures/vit_model: ", 31) == 0,
                  "stderr: %s", r.err);
    run_free(&r);
}
END_TEST

/* ---- numbers against the reference ---- */

/* ref_pixels.npy through the command, with the default batch and batches
 * that split the array, against ref_logits.npy. */
START_TEST(test_ref_logits_jsonl)
{
    static const char *const batches[] = {NULL, "1", "2"};
    vit_array px, ref;
    read_npy(REF_PIXELS, &px);
    read_npy(REF_LOGITS, &ref);
    ck_assert_int_eq(px.ndim, 4);
    ck_assert_int_eq(ref.ndim, 2);
    int N = (int)px.shape[0], L = (int)ref.shape[1];
    ck_assert_int_eq((int)ref.shape[0], N);

    run_result r;
    const char *args[16] = {"classify", "--format", "jsonl", "--logits",
                            "--top-k", "3", "--model", MODEL, REF_PIXELS};
    if (batches[_i]) {
        args[9] = "--batch";
        args[10] = batches[_i];
    }
    run_argv(&r, args);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.err, "");
    char *lines[64];
    ck_assert_int_eq(count_lines(r.out), N);
    ck_assert_int_eq(split_lines(r.out, lines, 64), N);
    for (int i = 0; i < N; i++) {
        json_error_t jerr;
        json_t *obj = json_loads(lines[i], 0, &jerr);
        ck_assert_msg(obj != NULL, "line %d: %s", i, jerr.text);
        char path[256];
        snprintf(path, sizeof path, "%s[%d]", REF_PIXELS, i);
        check_result(obj, path, ref.data + (size_t)i * L, L, 3);
        json_decref(obj);
    }
    run_free(&r);
    vit_array_free(&px);
    vit_array_free(&ref);
}
END_TEST

/* The jsonl layout the README promises, byte for byte where it can be:
 * keys in order, ", " and ": " separators, quotes in labels escaped, no
 * logits unless asked, every label when --top-k exceeds their number. */
START_TEST(test_jsonl_layout)
{
    run_result r;
    run(&r, "classify", "-f", "jsonl", "-k", "50", "-m", MODEL, REF_PIXELS,
        NULL);
    ck_assert_int_eq(r.code, 0);
    const char *want = "{\"path\": \"" REF_PIXELS "[0]\", \"labels\": "
                       "[{\"id\": ";
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "got: %.120s",
                  r.out);
    ck_assert_ptr_nonnull(strstr(r.out, "\"label\": \"nine, the \\\"last\\\" "
                                        "digit\", \"score\": "));
    ck_assert_ptr_null(strstr(r.out, "logits"));
    char *lines[8];
    int n = split_lines(r.out, lines, 8);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < n; i++) {
        json_t *obj = json_loads(lines[i], 0, NULL);
        ck_assert_ptr_nonnull(obj);
        ck_assert_int_eq((int)json_object_size(obj), 2);
        json_t *labels = json_object_get(obj, "labels");
        ck_assert_int_eq((int)json_array_size(labels), 10);
        double prev = 2, sum = 0;
        for (size_t j = 0; j < 10; j++) {
            json_t *e = json_array_get(labels, j);
            ck_assert_int_eq((int)json_object_size(e), 3);
            double s = json_real_value(json_object_get(e, "score"));
            ck_assert(s <= prev);
            prev = s;
            sum += s;
        }
        ck_assert(fabs(sum - 1) < 1e-5);
        json_decref(obj);
    }
    run_free(&r);
}
END_TEST

/* Decoded images through the command give what the library gives when
 * called directly: the command only moves pixels and results. */
START_TEST(test_images_match_library)
{
    static const char *const files[] = {GRADIENT_JPG, NOISE_PNG,
                                        "tests/fixtures/cli/photo.jpg"};
    vit_error err = {{0}};
    vit_model *m;
    ck_assert_msg(vit_model_load(MODEL, NULL, &m, &err) == VIT_OK, "%s",
                  err.msg);
    vit_state *s;
    ck_assert_msg(vit_state_new(m, &s, &err) == VIT_OK, "%s", err.msg);
    vit_model_info info;
    vit_model_get_info(m, &info);
    int L = info.num_labels;
    size_t chw = (size_t)info.channels * info.image_h * info.image_w;
    float *px = malloc(chw * sizeof *px);
    float *ref = malloc((size_t)L * sizeof *ref);
    vit_prediction top[1];

    run_result r;
    /* The directory, not the files: it is walked in name order. */
    run(&r, "classify", "--format", "jsonl", "--logits", "--model", MODEL,
        "tests/fixtures/cli", NULL);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    char *lines[8];
    ck_assert_int_eq(split_lines(r.out, lines, 8), 3);
    for (int i = 0; i < 3; i++) {
        vit_image img;
        ck_assert_msg(vit_image_read(files[i], NULL, &img, &err) == VIT_OK,
                      "%s", err.msg);
        ck_assert_msg(vit_preprocess(m, &img, 1, px, &err) == VIT_OK, "%s",
                      err.msg);
        vit_image_free(&img);
        ck_assert_msg(vit_classify_pixels(s, px, 1, 1, top, ref, &err) ==
                          VIT_OK, "%s", err.msg);
        json_t *obj = json_loads(lines[i], 0, NULL);
        ck_assert_ptr_nonnull(obj);
        check_result(obj, files[i], ref, L, 5);
        json_decref(obj);
    }
    run_free(&r);
    free(px);
    free(ref);
    vit_state_free(s);
    vit_model_free(m);
}
END_TEST

/* ---- formats ---- */

START_TEST(test_text_format)
{
    run_result r;
    run(&r, "classify", "--model", MODEL, "--top-k", "2", REF_PIXELS, NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_str_eq(r.err, "");
    char *lines[16];
    ck_assert_int_eq(split_lines(r.out, lines, 16), 9);
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s[%d]", REF_PIXELS, i);
        ck_assert_str_eq(lines[3 * i], path);
        for (int j = 1; j <= 2; j++) {
            double score;
            int id, used = 0;
            const char *l = lines[3 * i + j];
            ck_assert_msg(sscanf(l, "  %lf  %n", &score, &used) == 1 && used,
                          "line: %s", l);
            ck_assert(score >= 0 && score <= 1);
            const char *paren = strrchr(l, '(');
            ck_assert_msg(paren && sscanf(paren, "(%d)", &id) == 1, "%s", l);
            ck_assert(id >= 0 && id < 10);
        }
    }
    run_free(&r);
}
END_TEST

/* Parses one CSV record of RFC 4180 text at *s into fields; returns the
 * number of fields and advances *s past the record's line break. */
static int csv_record(const char **s, char fields[][128], int max)
{
    int n = 0;
    const char *p = *s;
    for (;;) {
        char *f = fields[n];
        size_t o = 0;
        if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++) {
                if (*p == '"')
                    p++;
                if (o < 127)
                    f[o++] = *p;
            }
            ck_assert_int_eq(*p, '"');
            p++;
        } else {
            for (; *p && *p != ',' && *p != '\n'; p++)
                if (o < 127)
                    f[o++] = *p;
        }
        f[o] = '\0';
        n++;
        if (*p != ',' || n == max)
            break;
        p++;
    }
    ck_assert_int_eq(*p, '\n');
    *s = p + 1;
    return n;
}

START_TEST(test_csv_format)
{
    /* A path with a comma and a quote, to see it quoted. */
    const char *odd = tmp_path("a,\"b\".npy");
    copy_file(REF_PIXELS, odd);
    vit_array ref;
    read_npy(REF_LOGITS, &ref);

    run_result r;
    run(&r, "classify", "--format", "csv", "-k", "10", "--model", MODEL, odd,
        NULL);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_int_eq(count_lines(r.out), 1 + 3 * 10);
    const char *p = r.out;
    char f[8][128];
    ck_assert_int_eq(csv_record(&p, f, 8), 5);
    ck_assert_str_eq(f[0], "path");
    ck_assert_str_eq(f[1], "rank");
    ck_assert_str_eq(f[2], "id");
    ck_assert_str_eq(f[3], "label");
    ck_assert_str_eq(f[4], "score");
    ck_assert_msg(strstr(r.out, "a,\"\"b\"\".npy[0]\",1,"), "%s", r.out);
    ck_assert_ptr_nonnull(strstr(r.out, ",9,\"nine, the \"\"last\"\" digit\","));
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s[%d]", odd, i);
        double prev = 2;
        for (int rank = 1; rank <= 10; rank++) {
            ck_assert_int_eq(csv_record(&p, f, 8), 5);
            ck_assert_str_eq(f[0], path);
            ck_assert_int_eq(atoi(f[1]), rank);
            int id = atoi(f[2]);
            ck_assert(id >= 0 && id < 10);
            if (id == 9)
                ck_assert_str_eq(f[3], "nine, the \"last\" digit");
            double score = strtod(f[4], NULL);
            ck_assert(score <= prev);
            prev = score;
            if (rank == 1) {
                const float *l = ref.data + i * 10;
                int best = 0;
                for (int j = 1; j < 10; j++)
                    best = l[j] > l[best] ? j : best;
                ck_assert_int_eq(id, best);
            }
        }
    }
    ck_assert_str_eq(p, "");
    run_free(&r);
    vit_array_free(&ref);
}
END_TEST

/* ---- inputs ---- */

/* A directory with one good image, a garbage bad.jpg and a text file: the
 * walk takes only the image (by content, not by name) and says how many
 * files it skipped; named explicitly, the other two are errors reported as
 * `vit: PATH: reason`, and the good input is still printed. */
START_TEST(test_bad_inputs)
{
    copy_file(NOISE_PNG, tmp_path("good.png"));
    write_file(tmp_path("bad.jpg"), "this is not a JPEG\n", 19);
    write_file(tmp_path("notes.txt"), "hello\n", 6);

    run_result r;
    run(&r, "classify", "--format", "jsonl", "--model", MODEL, g_tmp, NULL);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.err, "vit: skipped 2 files that are not images\n");
    ck_assert_int_eq(count_lines(r.out), 1);
    ck_assert_ptr_nonnull(strstr(r.out, tmp_path("good.png")));
    run_free(&r);

    run(&r, "classify", "--format", "jsonl", "--model", MODEL,
        tmp_path("bad.jpg"), tmp_path("good.png"), tmp_path("notes.txt"),
        tmp_path("missing.png"), NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_int_eq(count_lines(r.out), 1);
    ck_assert_ptr_nonnull(strstr(r.out, tmp_path("good.png")));
    ck_assert_int_eq(count_lines(r.err), 3);
    char want[600];
    const char *bad[] = {"bad.jpg", "notes.txt", "missing.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "vit: %s: ", tmp_path(bad[i]));
        char *at = strstr(r.err, want);
        ck_assert_msg(at && (at == r.err || at[-1] == '\n'), "want '%s' in: %s",
                      want, r.err);
        /* a reason follows, and the path is not repeated in it */
        const char *reason = at + strlen(want);
        ck_assert(*reason && *reason != '\n');
        ck_assert_msg(strncmp(reason, tmp_path(bad[i]),
                              strlen(tmp_path(bad[i]))) != 0, "%s", r.err);
    }
    ck_assert_ptr_nonnull(strstr(r.err, "No such file or directory"));
    ck_assert_ptr_null(strchr(r.err, '\r'));  /* not a terminal: no progress */
    run_free(&r);
}
END_TEST

/* A JPEG whose frame header (SOF0) states w x h, the rest of a small one:
 * what matters is what the limits make of the header. */
static void jpeg_stating(const char *path, unsigned w, unsigned h)
{
    size_t n;
    unsigned char *b = tu_read("tests/fixtures/images/jpg_420.jpg", &n);
    ck_assert_ptr_nonnull(b);
    size_t i = 2;
    while (i + 9 < n && !(b[i] == 0xff && b[i + 1] == 0xc0))
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    ck_assert_msg(i + 9 < n, "no SOF0");
    b[i + 5] = (unsigned char)(h >> 8), b[i + 6] = (unsigned char)h;
    b[i + 7] = (unsigned char)(w >> 8), b[i + 8] = (unsigned char)w;
    write_file(path, b, n);
    free(b);
}

/* Pillow's limits by default: a 108-megapixel phone photo is read (the
 * file's scan is a small image's, so libjpeg, as under Pillow, gives the
 * rest of the frame flat), one past Pillow's 178,956,970 pixels is
 * refused naming the limit, and --max-pixels sets it. */
START_TEST(test_max_pixels)
{
    jpeg_stating(tmp_path("phone.jpg"), 12000, 9000);
    jpeg_stating(tmp_path("huge.jpg"), 20000, 10000);
    run_result r;
    run(&r, "classify", "--model", MODEL, tmp_path("phone.jpg"), NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    run_free(&r);
    run(&r, "classify", "--model", MODEL, tmp_path("huge.jpg"), NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "image is 20000x10000 = 200000000 pixels, "
                                "more than the 178956970-pixel limit"),
                  "%s", r.err);
    run_free(&r);
    run(&r, "embed", "--model", MODEL, "--max-pixels", "100000000",
        tmp_path("phone.jpg"), NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "more than the 100000000-pixel limit"), "%s",
                  r.err);
    run_free(&r);
    run(&r, "classify", "--model", MODEL, "--max-pixels", "0",
        tmp_path("phone.jpg"), NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    run_free(&r);
    run(&r, "classify", "--model", MODEL, "--max-pixels", "-5", NOISE_PNG,
        NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(strstr(r.err, "--max-pixels is a number from 0"), "%s",
                  r.err);
    run_free(&r);
}
END_TEST

/* ---- images named by URL, data: URL or "-" ---- */

/* A one-connection-at-a-time HTTP/1.0 server on 127.0.0.1, in a child
 * process: /noise.png is the fixture, /moved redirects to it, anything
 * else is 404. Returns its pid; *port is where it listens. */
static pid_t http_server(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(s, 16), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    size_t n;
    unsigned char *png = tu_read(NOISE_PNG, &n);
    ck_assert_ptr_nonnull(png);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0)
                continue;
            char req[2048] = "";
            ssize_t k = read(c, req, sizeof req - 1);
            (void)k;
            char head[256];
            if (strncmp(req, "GET /noise.png ", 15) == 0) {
                int h = snprintf(head, sizeof head,
                                 "HTTP/1.0 200 OK\r\nContent-Type: image/png"
                                 "\r\nContent-Length: %zu\r\n\r\n", n);
                if (write(c, head, (size_t)h) < 0 || write(c, png, n) < 0)
                    _exit(1);
            } else if (strncmp(req, "GET /moved ", 11) == 0) {
                const char *m = "HTTP/1.0 302 Found\r\nLocation: /noise.png"
                                "\r\nContent-Length: 0\r\n\r\n";
                if (write(c, m, strlen(m)) < 0)
                    _exit(1);
            } else {
                const char *m = "HTTP/1.0 404 Not Found\r\nContent-Length: 9"
                                "\r\n\r\nnot found";
                if (write(c, m, strlen(m)) < 0)
                    _exit(1);
            }
            close(c);
        }
    }
    close(s);
    free(png);
    return pid;
}

/* The jsonl line's "labels" part, which must not depend on where the
 * bytes came from. */
static const char *labels_of(const char *line)
{
    const char *l = strstr(line, "\"labels\"");
    ck_assert_msg(l, "%s", line);
    return l;
}

START_TEST(test_remote_inputs)
{
    run_result r;
    run(&r, "classify", "--model", MODEL, "--format", "jsonl", NOISE_PNG,
        NULL);
    ck_assert_int_eq(r.code, 0);
    char want[4096];
    snprintf(want, sizeof want, "%s", labels_of(r.out));
    want[strcspn(want, "\n")] = '\0';
    run_free(&r);

    int port;
    pid_t srv = http_server(&port);
    char ok[128], moved[128], missing[128], refused[128];
    snprintf(ok, sizeof ok, "http://127.0.0.1:%d/noise.png", port);
    snprintf(moved, sizeof moved, "http://127.0.0.1:%d/moved", port);
    snprintf(missing, sizeof missing, "http://127.0.0.1:%d/gone.png", port);
    /* A port nobody listens on: the server's own, once it is gone, is
     * unsure; port 1 is never served here. */
    snprintf(refused, sizeof refused, "http://127.0.0.1:1/x.png");
    run(&r, "classify", "--model", MODEL, "--format", "jsonl", ok, moved,
        missing, refused, NULL);
    ck_assert_int_eq(r.code, 1);
    char *lines[8];
    char *out = strdup(r.out);
    ck_assert_int_eq(split_lines(out, lines, 8), 2);
    for (int i = 0; i < 2; i++)
        ck_assert_str_eq(labels_of(lines[i]), want);
    ck_assert_ptr_nonnull(strstr(lines[0], ok));
    ck_assert_ptr_nonnull(strstr(lines[1], moved));
    free(out);
    ck_assert_msg(strstr(r.err, "the server answered HTTP 404"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "127.0.0.1:1/x.png: "), "%s", r.err);
    run_free(&r);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);

    /* A data: URL, base64 and percent-encoded garbage. */
    size_t n;
    unsigned char *png = tu_read(NOISE_PNG, &n);
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t dl = 32 + (n + 2) / 3 * 4;
    char *data = malloc(dl + 1);
    size_t o = (size_t)snprintf(data, dl, "data:image/png;base64,");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)png[i] << 16 |
                     (i + 1 < n ? (uint32_t)png[i + 1] << 8 : 0) |
                     (i + 2 < n ? png[i + 2] : 0);
        data[o++] = b64[v >> 18 & 63];
        data[o++] = b64[v >> 12 & 63];
        data[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        data[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    data[o] = '\0';
    free(png);
    run(&r, "classify", "--model", MODEL, "--format", "jsonl", data,
        "data:text/plain,hello%20world", NULL);
    ck_assert_int_eq(r.code, 1);
    r.out[strcspn(r.out, "\n")] = '\0';
    ck_assert_str_eq(labels_of(r.out), want);
    ck_assert_msg(strstr(r.err, "not a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC/AVIF image"),
                  "%s", r.err);
    run_free(&r);
    free(data);

    /* "-": one image from standard input; a second "-" is an error. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' classify --model %s --format jsonl - - < %s > %s 2> %s",
             tu_vit_bin(), MODEL, NOISE_PNG, tmp_path("out"),
             tmp_path("err"));
    int st = system(cmd);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *so = (char *)tu_read(tmp_path("out"), &n);
    char *se = (char *)tu_read(tmp_path("err"), &n);
    ck_assert_ptr_nonnull(so);
    so[strcspn(so, "\n")] = '\0';
    ck_assert_str_eq(labels_of(so), want);
    ck_assert_msg(strstr(se, "vit: -: standard input holds one image, and "
                             "it was read already"),
                  "%s", se);
    free(so);
    free(se);
}
END_TEST

/* The walk recurses, sorts by name, skips dot-names and non-images, takes
 * .npy files, survives a symbolic link back to its root, and batches across
 * files without changing the order or the numbers. */
START_TEST(test_directory_walk)
{
    ck_assert_int_eq(mkdir(tmp_path("a"), 0755), 0);
    ck_assert_int_eq(mkdir(tmp_path("a/.git"), 0755), 0);
    copy_file(GRADIENT_JPG, tmp_path("a/z.jpg"));
    copy_file(NOISE_PNG, tmp_path("a/.hidden.png"));
    copy_file(NOISE_PNG, tmp_path("a/.git/x.png"));
    copy_file(NOISE_PNG, tmp_path("b.png"));
    copy_file(REF_PIXELS, tmp_path("c.npy"));
    copy_file(GRADIENT_JPG, tmp_path("B.jpg"));  /* 'B' < 'a' in byte order */
    write_file(tmp_path("readme.txt"), "x", 1);
    ck_assert_int_eq(symlink("..", tmp_path("a/loop")), 0);

    vit_array ref;
    read_npy(REF_LOGITS, &ref);
    const char *want[] = {"B.jpg", "a/z.jpg", "b.png", "c.npy[0]",
                          "c.npy[1]", "c.npy[2]"};
    run_result r;
    run(&r, "classify", "--format", "jsonl", "--logits", "--batch", "2",
        "--model", MODEL, g_tmp, NULL);
    ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
    ck_assert_str_eq(r.err, "vit: skipped 1 file that is not an image\n");
    char *lines[16];
    ck_assert_int_eq(split_lines(r.out, lines, 16), 6);
    for (int i = 0; i < 6; i++) {
        json_t *obj = json_loads(lines[i], 0, NULL);
        ck_assert_ptr_nonnull(obj);
        const char *path = json_string_value(json_object_get(obj, "path"));
        ck_assert_str_eq(path, tmp_path(want[i]));
        if (i >= 3)
            check_result(obj, path, ref.data + (i - 3) * 10, 10, 5);
        json_decref(obj);
    }
    run_free(&r);
    vit_array_free(&ref);
}
END_TEST

/* A .npy of the wrong shape is an error naming what was expected and what
 * came, and does not stop the other inputs. */
START_TEST(test_npy_wrong_shape)
{
    const int shape[] = {3, 16, 16};
    write_npy(tmp_path("small.npy"), shape, 3);
    const int one[] = {3, 32, 32};
    write_npy(tmp_path("one.npy"), one, 3);

    run_result r;
    run(&r, "classify", "--format", "jsonl", "--model", MODEL,
        tmp_path("small.npy"), tmp_path("one.npy"), REF_PIXELS, NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_int_eq(count_lines(r.out), 4);
    /* a (3,H,W) array is one image, shown under the file's own name */
    char want[600];
    snprintf(want, sizeof want, "{\"path\": \"%s\", ", tmp_path("one.npy"));
    ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    snprintf(want, sizeof want, "vit: %s: ", tmp_path("small.npy"));
    ck_assert_msg(strncmp(r.err, want, strlen(want)) == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "(3,16,16)"));
    ck_assert_ptr_nonnull(strstr(r.err, "(3,32,32)"));
    ck_assert_int_eq(count_lines(r.err), 1);
    run_free(&r);
}
END_TEST

/* File names are bytes; JSON text is UTF-8. A name that is not valid UTF-8
 * still gives a line that parses. */
START_TEST(test_non_utf8_path)
{
    copy_file(NOISE_PNG, tmp_path("x\xff.png"));
    run_result r;
    run(&r, "classify", "--format", "jsonl", "--model", MODEL, g_tmp, NULL);
    ck_assert_int_eq(r.code, 0);
    json_error_t jerr;
    json_t *obj = json_loads(r.out, 0, &jerr);
    ck_assert_msg(obj != NULL, "%s: %s", jerr.text, r.out);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(obj, "path")),
                                 "x\xef\xbf\xbd.png"));
    json_decref(obj);
    run_free(&r);
}
END_TEST

/* ---- progress ---- */

/* With stderr on a terminal and more than one batch, a progress line is
 * drawn with carriage returns and erased at the end; stdout is unchanged. */
START_TEST(test_progress_on_tty)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);

    run_result r;
    const char *args[] = {"classify", "--format", "jsonl", "--batch", "1",
                          "--model", MODEL, REF_PIXELS, NULL};
    run_argv_fd(&r, args, slave);
    close(slave);
    ck_assert_int_eq(r.code, 0);
    ck_assert_int_eq(count_lines(r.out), 3);
    ck_assert_ptr_null(strchr(r.out, '\r'));

    char tty[4096];
    size_t n = 0;
    ssize_t got;
    /* After the child is gone, reading the master gives the rest and then
     * EIO. */
    while (n < sizeof tty - 1 &&
           (got = read(master, tty + n, sizeof tty - 1 - n)) > 0)
        n += (size_t)got;
    tty[n] = '\0';
    close(master);
    ck_assert_msg(strstr(tty, "\r[1/3] ") && strstr(tty, "\r[3/3] "),
                  "terminal got: %s", tty);
    ck_assert_ptr_nonnull(strstr(tty, " img/s"));
    ck_assert_msg(n >= 4 && strcmp(tty + n - 4, "\r\033[K") == 0,
                  "the line is not erased at the end");
    run_free(&r);
}
END_TEST

/* The local commands and `vit client` parse with one spec per operation:
 * the same bad arguments get the same usage error from both (after their
 * names), so the two cannot drift apart. Each case: the local command's
 * words, then the client command's, then the arguments both get. */
static const char *const shared_cases[][12] = {
    {"classify", "classify", "-k", "0", "p.png"},
    {"classify", "classify", "-f", "xml", "p.png"},
    {"classify", "classify", "-b", "5000", "p.png"},
    {"classify", "classify", "--labels", "l", "--template", "x", "p.png"},
    {"classify", "classify", "--template", "{}", "p.png"},
    {"classify", "classify", "--logits", "-f", "csv", "p.png"},
    {"classify", "classify", "--logits=1", "p.png"},
    {"classify", "classify", "--bogus", "p.png"},
    {"classify", "classify", "-k", "5"},
    {"embed", "embed", "-f", "csv", "-t", "a"},
    {"embed", "embed", "-t", "a", "-i", "p.png"},
    {"embed", "embed", "--no-normalize"},
    {"match", "match", "-f", "csv", "-t", "a", "p.png"},
    {"match", "match", "p.png"},
    {"match", "match", "-t", "a"},
    {"index search", "search", "-k", "0", "-t", "a"},
    {"index search", "search", "-t", "a", "extra"},
    {"index search", "search", "-f", "csv", "-t", "a"},
    {"index search", "search", "-i"},
    {"index add", "index-add", "-b", "0", "p.png"},
    {"index add", "index-add", "--format", "xml", "p.png"},
    {"index add", "index-add"},
};
#define N_SHARED_CASES (int)(sizeof shared_cases / sizeof *shared_cases)

/* The message of a usage error: its first line after "PREFIX: ". */
static char *usage_message(const tu_run_result *r, const char *prefix)
{
    size_t n = strlen(prefix);
    ck_assert_msg(r->code == 2 && strncmp(r->err, prefix, n) == 0 &&
                      strncmp(r->err + n, ": ", 2) == 0,
                  "want a usage error from '%s', got %d: %s", prefix,
                  r->code, r->err);
    const char *m = r->err + n + 2;
    return strndup(m, strcspn(m, "\n"));
}

START_TEST(test_client_shares_specs)
{
    const char *const *c = shared_cases[_i];
    const char *local[24], *remote[24];
    int nl = 0, nr = 0;
    /* The local one is given what the server would have. */
    if (strcmp(c[0], "index search") == 0 || strcmp(c[0], "index add") == 0) {
        local[nl++] = "index";
        local[nl++] = c[0] + 6;
        local[nl++] = "--index";
        local[nl++] = "i.vidx";
    } else {
        local[nl++] = c[0];
    }
    if (strcmp(c[0], "index search") != 0) {
        local[nl++] = "--model";
        local[nl++] = MODEL;
    }
    remote[nr++] = "client";
    remote[nr++] = "--connect";
    remote[nr++] = "ipc:///nonexistent/vit-check-cli";
    remote[nr++] = c[1];
    for (int i = 2; c[i]; i++)
        local[nl++] = remote[nr++] = c[i];
    local[nl] = remote[nr] = NULL;
    tu_run_result a, b;
    run_argv(&a, local);
    run_argv(&b, remote);
    char lp[64], rp[64];
    snprintf(lp, sizeof lp, "vit %s", c[0]);
    snprintf(rp, sizeof rp, "vit client: %s", c[1]);
    char *ma = usage_message(&a, lp), *mb = usage_message(&b, rp);
    ck_assert_str_eq(mb, ma);
    free(ma);
    free(mb);
    run_free(&a);
    run_free(&b);
}
END_TEST

/* Over the service the local backend's options are unknown, and a bound
 * the server sets says so. */
START_TEST(test_client_remote_options)
{
    static const char *const cases[][3] = {
        {"--model", "m", "unknown option '--model'"},
        {"--precision", "int8", "unknown option '--precision'"},
        {"--threads", "2", "unknown option '--threads'"},
        {"-k", "1001", "--top-k is at most 1000 over the service"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r;
        run(&r, "client", "--connect", "ipc:///nonexistent/vit-check-cli",
            "classify", cases[i][0], cases[i][1], "p.png", NULL);
        ck_assert_int_eq(r.code, 2);
        ck_assert_msg(strstr(r.err, cases[i][2]), "want '%s' in: %s",
                      cases[i][2], r.err);
        run_free(&r);
    }
    /* The same values are fine locally (then the model is missing). */
    run_result r;
    run(&r, "classify", "--model", "/nonexistent", "-k", "1001",
        "--precision", "int8", "--threads", "2", "p.png", NULL);
    ck_assert_int_eq(r.code, 1);
    run_free(&r);
}
END_TEST

Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");

    TCase *tc = tcase_create("usage");
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_vit_isa);
    tcase_add_loop_test(tc, test_help, 0, 2);
    tcase_add_loop_test(tc, test_classify_help, 0, 2);
    tcase_add_loop_test(tc, test_usage_error, 0, N_USAGE_CASES);
    tcase_add_loop_test(tc, test_client_shares_specs, 0, N_SHARED_CASES);
    tcase_add_test(tc, test_client_remote_options);
    suite_add_tcase(s, tc);

    tc = tcase_create("classify");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_model_missing);
    tcase_add_test(tc, test_model_without_head);
    tcase_add_loop_test(tc, test_ref_logits_jsonl, 0, 3);
    tcase_add_test(tc, test_jsonl_layout);
    tcase_add_test(tc, test_images_match_library);
    tcase_add_test(tc, test_text_format);
    tcase_add_test(tc, test_csv_format);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_max_pixels);
    tcase_add_test(tc, test_remote_inputs);
    tcase_add_test(tc, test_directory_walk);
    tcase_add_test(tc, test_npy_wrong_shape);
    tcase_add_test(tc, test_non_utf8_path);
    tcase_add_test(tc, test_progress_on_tty);
    suite_add_tcase(s, tc);
    return s;
}
