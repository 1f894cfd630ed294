/*
 * The batch driver behind `vit classify` and the other image commands
 * (cli/batch.c), through the built binary: however many threads decode
 * ahead of the model (VIT_DECODE_THREADS; 0 decodes in turn with it), the
 * output is byte for byte that of decoding in turn, in input order, with
 * the failed inputs reported in input order, across batch boundaries, a
 * stacked .npy that spans several batches, and a failure after the last
 * image.
 */
#include "testutil.h"
#include "vit/vit.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL FIXTURES "/vit_tiny"

static char *g_tmp;

static void setup(void) { g_tmp = tu_tmpdir(); }

static void teardown(void)
{
    unsetenv("VIT_DECODE_THREADS");
    tu_rmrf(g_tmp);
    free(g_tmp);
}

static const char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_tmp, name);
    return buf;
}

/* A (count, 3, 32, 32) float32 .npy of the reference pixels, repeated. */
static void write_stack(const char *path, int count)
{
    vit_error err;
    vit_array a;
    ck_assert_msg(vit_npy_read(MODEL "/ref_pixels.npy", &a, &err) == VIT_OK,
                  "%s", err.msg);
    size_t per = 3 * 32 * 32, have = (size_t)a.shape[0];
    char header[128];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': "
                       "(%d, 3, 32, 32), }",
                       count);
    /* Magic, version, length, then the dict padded to 64 with a newline. */
    int total = ((10 + len + 1 + 63) / 64) * 64;
    size_t size = (size_t)total + (size_t)count * per * 4;
    unsigned char *buf = calloc(1, size);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((total - 10) & 0xff);
    buf[9] = (unsigned char)((total - 10) >> 8);
    memset(buf + 10, ' ', (size_t)total - 10);
    memcpy(buf + 10, header, (size_t)len);
    buf[total - 1] = '\n';
    for (int i = 0; i < count; i++)
        memcpy(buf + total + (size_t)i * per * 4,
               a.data + (size_t)(i % (int)have) * per, per * 4);
    ck_assert_int_eq(tu_write(path, buf, size), 0);
    free(buf);
    vit_array_free(&a);
}

START_TEST(test_decode_threads_same_output)
{
    char p_bad[512], p_stack[512], p_miss1[512], p_miss2[512];
    tmp_path(p_bad, sizeof p_bad, "bad.jpg");
    tmp_path(p_stack, sizeof p_stack, "stack.npy");
    tmp_path(p_miss1, sizeof p_miss1, "missing.jpg");
    tmp_path(p_miss2, sizeof p_miss2, "missing.png");
    ck_assert_int_eq(tu_write(p_bad, "not a JPEG\n", 11), 0);
    write_stack(p_stack, 5);
    const char *gradient = FIXTURES "/cli/gradient.jpg",
               *noise = FIXTURES "/cli/noise.png",
               *photo = FIXTURES "/cli/photo.jpg",
               *ref = MODEL "/ref_pixels.npy";
    /* What each result line names, in order. */
    const char *want[] = {gradient, noise, "stack.npy[0]", "stack.npy[1]",
                          "stack.npy[2]", "stack.npy[3]", "stack.npy[4]",
                          photo, gradient, noise, "ref_pixels.npy[0]",
                          "ref_pixels.npy[1]", "ref_pixels.npy[2]"};
    const char *settings[] = {"0", "1", "2", "5"};
    const char *batches[] = {"1", "2", "3", "4", "16"};
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        char *out0 = NULL, *err0 = NULL;
        for (size_t si = 0; si < sizeof settings / sizeof *settings; si++) {
            setenv("VIT_DECODE_THREADS", settings[si], 1);
            tu_run_result r;
            tu_run(&r, "classify", "--model", MODEL, "--format", "jsonl",
                   "--logits", "--batch", batches[bi], gradient, p_bad, noise,
                   p_stack, p_miss1, photo, gradient, noise, ref, p_miss2,
                   NULL);
            ck_assert_msg(r.code == 1, "exit %d: %s", r.code, r.err);
            /* Results in input order. */
            const char *line = r.out;
            for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
                ck_assert_msg(line && *line, "batch %s, %s threads: %zu "
                              "results:\n%s", batches[bi], settings[si], i,
                              r.out);
                json_t *o = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
                ck_assert_ptr_nonnull(o);
                const char *path =
                    json_string_value(json_object_get(o, "path"));
                size_t lp = strlen(path), lw = strlen(want[i]);
                ck_assert_msg(lp >= lw && !strcmp(path + lp - lw, want[i]),
                              "result %zu is %s, not %s", i, path, want[i]);
                json_decref(o);
                line = strchr(line, '\n');
                line = line ? line + 1 : NULL;
            }
            ck_assert_msg(line && !*line, "more results: %s", line);
            /* Failures in input order, each once. */
            const char *e1 = strstr(r.err, p_bad), *e2 = strstr(r.err, p_miss1),
                       *e3 = strstr(r.err, p_miss2);
            ck_assert_msg(e1 && e2 && e3 && e1 < e2 && e2 < e3, "%s", r.err);
            ck_assert_ptr_null(strstr(e1 + 1, p_bad));
            /* Byte for byte what decoding in turn gives. */
            if (si == 0) {
                out0 = strdup(r.out);
                err0 = strdup(r.err);
            } else {
                ck_assert_str_eq(r.out, out0);
                ck_assert_str_eq(r.err, err0);
            }
            tu_run_free(&r);
        }
        free(out0);
        free(err0);
    }
}
END_TEST

/* Nothing to do, or only failures: no batch is run, every failure is
 * told, whatever the number of decode threads. */
START_TEST(test_decode_threads_no_images)
{
    char p_miss[512];
    tmp_path(p_miss, sizeof p_miss, "missing.jpg");
    const char *settings[] = {"0", "3"};
    for (size_t si = 0; si < 2; si++) {
        setenv("VIT_DECODE_THREADS", settings[si], 1);
        tu_run_result r;
        tu_run(&r, "classify", "--model", MODEL, g_tmp, NULL);
        ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
        ck_assert_str_eq(r.out, "");
        ck_assert_str_eq(r.err, "");
        tu_run_free(&r);
        tu_run(&r, "classify", "--model", MODEL, p_miss, p_miss, NULL);
        ck_assert_int_eq(r.code, 1);
        ck_assert_str_eq(r.out, "");
        const char *a = strstr(r.err, p_miss);
        ck_assert_msg(a && strstr(a + 1, p_miss), "%s", r.err);
        tu_run_free(&r);
    }
}
END_TEST

Suite *batch_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("decode threads");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_decode_threads_same_output);
    tcase_add_test(tc, test_decode_threads_no_images);
    suite_add_tcase(s, tc);
    return s;
}
