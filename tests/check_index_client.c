/*
 * `vit client ... search | index-add | index-remove | index-stats` against
 * a worker serving an index (vit serve --index) over ipc:// in a temporary
 * directory: searches print exactly what `vit index search` prints on the
 * same index and queries (text and jsonl, text and image queries, a
 * prefix), index-stats what `vit index stats` prints; images added and
 * removed over the wire (in requests of at most --batch, a bad image
 * reported in its place) are seen by the local commands; a worker without
 * an index, or no worker at all, is a clear message and exit status 1.
 * Workers die with the test process (PR_SET_PDEATHSIG) and are stopped and
 * reaped at the end of each test.
 */
#define _GNU_SOURCE
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service/client.h"
#include "testutil.h"

#define TOK FIXTURES "/clip_tok"
#define TIMEOUT "20000"

/* n distinct noise PNGs of 40 x 40, dir/imgNN.png from `first`. */
static void noise_pngs(const char *dir, int first, int n, uint64_t seed)
{
    for (int i = first; i < first + n; i++) {
        char path[1024];
        ck_assert_int_lt(snprintf(path, sizeof path, "%s/img%02d.png", dir, i),
                         (int)sizeof path);
        tu_noise_png(path, 40, 40, seed + (uint64_t)i * 7919);
    }
}

/* Runs `vit index search --index INDEX ARGS...` or `vit client --connect
 * EP search ARGS...` (ep non-NULL). */
static void search(tu_run_result *r, const char *ep, const char *index,
                   const char *const *args)
{
    const char *v[40];
    int n = 0;
    if (ep) {
        v[n++] = "client";
        v[n++] = "--connect";
        v[n++] = ep;
        v[n++] = "--timeout";
        v[n++] = TIMEOUT;
        v[n++] = "search";
    } else {
        v[n++] = "index";
        v[n++] = "search";
        v[n++] = "--index";
        v[n++] = index;
    }
    for (int i = 0; args[i]; i++) {
        ck_assert_int_lt(n, 38);
        v[n++] = args[i];
    }
    v[n] = NULL;
    tu_run_argv(r, v);
}

static int count_str(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

/* Two outputs of `--format jsonl` searches: the same queries, and for
 * each the same ranks, paths and ids, with scores within 1e-6. */
static int same_results(const char *a, const char *b)
{
    json_error_t e;
    int ok = 1;
    while (ok && *a && *b) {
        json_t *x = json_loadb(a, strcspn(a, "\n"), 0, &e);
        json_t *y = json_loadb(b, strcspn(b, "\n"), 0, &e);
        json_t *rx = json_object_get(x, "results");
        json_t *ry = json_object_get(y, "results");
        const char *kx = json_object_get(x, "text") ? "text" : "image";
        ok = x && y && json_equal(json_object_get(x, kx),
                                  json_object_get(y, kx)) &&
             json_array_size(rx) == json_array_size(ry) &&
             json_array_size(rx) > 0;
        for (size_t i = 0; ok && i < json_array_size(rx); i++) {
            json_t *hx = json_array_get(rx, i), *hy = json_array_get(ry, i);
            ok = json_equal(json_object_get(hx, "path"),
                            json_object_get(hy, "path")) &&
                 json_equal(json_object_get(hx, "id"),
                            json_object_get(hy, "id")) &&
                 json_equal(json_object_get(hx, "rank"),
                            json_object_get(hy, "rank")) &&
                 fabs(json_number_value(json_object_get(hx, "score")) -
                      json_number_value(json_object_get(hy, "score"))) <
                     1e-6;
        }
        json_decref(x);
        json_decref(y);
        a += strcspn(a, "\n");
        b += strcspn(b, "\n");
        a += *a == '\n';
        b += *b == '\n';
    }
    return ok && !*a && !*b;
}

typedef struct {
    char dir[512], imgs[600], sub[640], index[600], ep[600];
} fx;

static void fx_new(fx *f)
{
    char *d = tu_tmpdir();
    ck_assert_ptr_nonnull(d);
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
    snprintf(f->imgs, sizeof f->imgs, "%s/imgs", f->dir);
    snprintf(f->sub, sizeof f->sub, "%s/sub", f->imgs);
    snprintf(f->index, sizeof f->index, "%s/photos.vidx", f->dir);
    snprintf(f->ep, sizeof f->ep, "ipc://%s/w", f->dir);
    ck_assert_int_eq(mkdir(f->imgs, 0755), 0);
    ck_assert_int_eq(mkdir(f->sub, 0755), 0);
    noise_pngs(f->imgs, 0, 8, 42);
    noise_pngs(f->sub, 20, 3, 99);
    /* A file name that is not UTF-8 (Latin-1 "café"): its id crosses the
     * wire as {"base64": ...}. */
    char from[700], to[700];
    snprintf(from, sizeof from, "%s/img07.png", f->imgs);
    snprintf(to, sizeof to, "%s/caf\xe9-07.png", f->imgs);
    ck_assert_int_eq(rename(from, to), 0);
}

START_TEST(client_search_and_stats_match_local)
{
    fx f;
    fx_new(&f);
    tu_run_result r, l;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);

    char img2[700], img5[700];
    snprintf(img2, sizeof img2, "%s/img02.png", f.imgs);
    snprintf(img5, sizeof img5, "%s/img05.png", f.imgs);
    const char *q1[] = {"--text", "a photo of a cat", "-k", "5", NULL};
    const char *q2[] = {"--text", "a photo of a cat", "--image", img2, "-k",
                        "4", "--format", "jsonl", NULL};
    const char *q3[] = {"--text", "the number 7", "--prefix", f.sub,
                        "--format", "jsonl", NULL};
    const char *q4[] = {"--image", img5, NULL};
    const char *q5[] = {"--format", "jsonl", "--image", img2, "--text",
                        "a dog", "--prefix", f.sub, NULL};
    const char *q6[] = {"--text", "a photo of a cat", "--text",
                        "the number 7", "--text", "a dog", "-k", "4",
                        "--format", "jsonl", NULL};
    const char *q7[] = {"-k", "3", "--image", img2, "--image", img5, NULL};
    /* Every item, the one whose name is not UTF-8 among them. */
    const char *q8[] = {"--text", "a photo of a cat", "-k", "11", NULL};
    const char *q9[] = {"--text", "a photo of a cat", "-k", "11",
                        "--format", "jsonl", NULL};
    const char *const *qs[] = {q1, q2, q3, q4, q5, q6, q7, q8, q9};
    /* Texts and images mixed are searched in one batch locally, in a
     * request per kind over the service: the same items, scores equal to
     * float32 rounding. Everything else is byte for byte the same. */
    const int mixed[] = {0, 1, 0, 0, 1, 0, 0, 0, 0};
    enum { NQ = sizeof qs / sizeof *qs };
    char *want[NQ];
    for (int i = 0; i < NQ; i++) {
        search(&l, NULL, f.index, qs[i]);
        ck_assert_msg(l.code == 0, "%s", l.err);
        want[i] = strdup(l.out);
        tu_run_free(&l);
    }
    ck_assert_int_eq(count_str(want[0], "\n  "), 5);
    ck_assert_int_eq(count_str(want[2], "\"rank\""), 3);  /* sub/ only */
    ck_assert_int_eq(count_str(want[3], "\n  "), 10);
    ck_assert_int_eq(count_str(want[7], "\n  "), 11);
    /* text output escapes the byte that is not UTF-8 */
    ck_assert_ptr_nonnull(strstr(want[7], "caf\\xe9-07.png"));

    pid_t pid = tu_serve_start(TOK, f.dir, f.ep, f.index);
    for (int i = 0; i < NQ; i++) {
        search(&r, f.ep, NULL, qs[i]);
        ck_assert_msg(r.code == 0, "query %d: %s", i, r.err);
        ck_assert_msg(mixed[i] ? same_results(r.out, want[i])
                               : strcmp(r.out, want[i]) == 0,
                      "query %d: over the service\n%s\nlocally\n%s", i, r.out,
                      want[i]);
        tu_run_free(&r);
        free(want[i]);
    }
    printf("client search == index search on %d query sets\n", (int)NQ);

    /* Stats, text and jsonl, while the worker serves the index. */
    const char *fmts[] = {"text", "jsonl"};
    for (int i = 0; i < 2; i++) {
        tu_run(&l, "index", "stats", "--index", f.index, "--format", fmts[i],
               NULL);
        ck_assert_msg(l.code == 0, "%s", l.err);
        tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
               "index-stats", "--format", fmts[i], NULL);
        ck_assert_msg(r.code == 0, "%s", r.err);
        ck_assert_msg(strcmp(r.out, l.out) == 0,
                      "over the service\n%s\nlocally\n%s", r.out, l.out);
        tu_run_free(&l);
        tu_run_free(&r);
    }
    ck_assert_int_eq(tu_serve_stop(pid), 0);

    /* A worker holding the index in fp16 or int8 re-scores its
     * candidates in fp32 from the store, as the command in that precision
     * does (before, from a second fp32 copy of every vector, which made
     * those modes take more memory than fp32): the same bytes. */
    const char *precs[] = {"fp16", "int8"};
    for (int p = 0; p < 2; p++) {
        const char *extra[] = {"--index-precision", precs[p], NULL};
        pid = tu_serve_start_args(TOK, f.dir, f.ep, f.index, extra);
        for (int i = 0; i < NQ; i++) {
            if (mixed[i])
                continue;
            const char *la[32];
            int n = 0;
            for (; qs[i][n]; n++)
                la[n] = qs[i][n];
            la[n++] = "--precision";
            la[n++] = precs[p];
            la[n] = NULL;
            search(&l, NULL, f.index, la);
            search(&r, f.ep, NULL, qs[i]);
            ck_assert_msg(r.code == 0 && l.code == 0, "%s%s", r.err, l.err);
            ck_assert_msg(strcmp(r.out, l.out) == 0,
                          "query %d, worker in %s\n%s\nlocally\n%s", i,
                          precs[p], r.out, l.out);
            tu_run_free(&r);
            tu_run_free(&l);
        }
        ck_assert_int_eq(tu_serve_stop(pid), 0);
    }
    printf("client search == index search with the worker in fp16, int8\n");
    tu_rmrf(f.dir);
}
END_TEST

START_TEST(client_add_remove_over_the_wire)
{
    fx f;
    fx_new(&f);
    tu_run_result r, l;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    char more[700], one[800], bad[800], good[2][800], real[4096];
    snprintf(more, sizeof more, "%s/more", f.dir);
    ck_assert_int_eq(mkdir(more, 0755), 0);
    noise_pngs(more, 30, 5, 7);
    pid_t pid = tu_serve_start(TOK, f.dir, f.ep, f.index);

    /* A directory, in requests of 2: one line per image once committed. */
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-add", "--batch", "2", "--format", "jsonl", more, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"added\""), 5);
    ck_assert_ptr_nonnull(realpath(more, real));
    ck_assert_msg(strstr(r.out, real), "%s", r.out);
    tu_run_free(&r);
    /* Again, as text: replaced, not added twice. */
    snprintf(one, sizeof one, "%s/img30.png", more);
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-add", one, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    char want[1200];
    snprintf(want, sizeof want, "added 1, failed 0; 16 items in %s\n",
             f.index);
    ck_assert_str_eq(r.out, want);
    tu_run_free(&r);

    /* A file that is no image, between two that are: it is reported in
     * its place and the others are added. */
    snprintf(bad, sizeof bad, "%s/junk.png", more);
    ck_assert_int_eq(tu_write(bad, "not a png", 9), 0);
    snprintf(good[0], sizeof good[0], "%s/img20.png", f.sub);
    snprintf(good[1], sizeof good[1], "%s/img31.png", more);
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-add", good[0], bad, good[1], NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "junk.png"), "%s", r.err);
    ck_assert_msg(strstr(r.out, "added 2, failed 1; 16 items"), "%s", r.out);
    tu_run_free(&r);

    /* What the worker committed, the local command finds too, and the
     * same: each added image finds itself first at cosine 1. */
    const char *q[] = {"--image", good[1], "-k", "3", "--format", "jsonl",
                       NULL};
    search(&l, NULL, f.index, q);
    ck_assert_msg(l.code == 0, "%s", l.err);
    search(&r, f.ep, NULL, q);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_str_eq(r.out, l.out);
    json_t *j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *top = json_array_get(json_object_get(j, "results"), 0);
    ck_assert_msg(strstr(json_string_value(json_object_get(top, "path")),
                         "more/img31.png"), "%s", r.out);
    ck_assert(fabs(json_number_value(json_object_get(top, "score")) - 1.0) <
              1e-5);
    json_decref(j);
    tu_run_free(&l);
    tu_run_free(&r);

    /* Remove a file, a directory (its image files), and one that is not
     * there (exit 1). */
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-remove", one, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    snprintf(want, sizeof want, "removed 1 item from %s\n", f.index);
    ck_assert_str_eq(r.out, want);
    tu_run_free(&r);
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-remove", "--format", "jsonl", more, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "{\"removed\": 4}\n");
    tu_run_free(&r);
    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-remove", "/no/such/file.png", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "/no/such/file.png: not in the index"), "%s",
                  r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "removed 0 items"));
    tu_run_free(&r);

    tu_run(&r, "client", "--connect", f.ep, "--timeout", TIMEOUT,
           "index-stats", "--format", "jsonl", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "\"items\": 11,"), "%s", r.out);
    tu_run(&l, "index", "stats", "--index", f.index, "--format", "jsonl",
           NULL);
    ck_assert_str_eq(r.out, l.out);
    tu_run_free(&l);
    tu_run_free(&r);
    ck_assert_int_eq(tu_serve_stop(pid), 0);
    tu_rmrf(f.dir);
}
END_TEST

START_TEST(client_index_errors)
{
    fx f;
    fx_new(&f);
    tu_run_result r;
    /* No worker at all: no reply, said, exit 1. */
    char none[700];
    snprintf(none, sizeof none, "ipc://%s/none", f.dir);
    tu_run(&r, "client", "--connect", none, "--timeout", "200", "--retries",
           "0", "index-stats", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "vit client: "));
    tu_run_free(&r);

    /* A worker without --index. */
    pid_t pid = tu_serve_start(TOK, f.dir, f.ep, NULL);
    char img[700];
    snprintf(img, sizeof img, "%s/img01.png", f.imgs);
    const char *cmds[][4] = {
        {"search", "--text", "a cat", NULL},
        {"search", "--image", img, NULL},
        {"index-stats", NULL, NULL, NULL},
        {"index-add", f.imgs, NULL, NULL},
        {"index-remove", f.imgs, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        const char *v[12] = {"client", "--connect", f.ep, "--timeout",
                             TIMEOUT};
        int n = 5;
        for (int k = 0; k < 4 && cmds[i][k]; k++)
            v[n++] = cmds[i][k];
        v[n] = NULL;
        tu_run_argv(&r, v);
        ck_assert_msg(r.code == 1, "%s: %d %s", cmds[i][0], r.code, r.err);
        ck_assert_msg(strstr(r.err, "serves no index") &&
                          strstr(r.err, "(no_index)"),
                      "%s: %s", cmds[i][0], r.err);
        ck_assert_msg(!strstr(r.out, "added") && !strstr(r.out, "removed"),
                      "%s", r.out);
        tu_run_free(&r);
    }
    /* Usage errors: 2, and nothing sent. */
    tu_run(&r, "client", "--connect", f.ep, "search", NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    tu_run(&r, "client", "--connect", f.ep, "search", "--text", "a", "-k",
           "1001", NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    tu_run(&r, "client", "--connect", f.ep, "index-add", NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    ck_assert_int_eq(tu_serve_stop(pid), 0);
    tu_rmrf(f.dir);
}
END_TEST

Suite *index_client_suite(void)
{
    Suite *s = suite_create("index_client");
    TCase *t = tcase_create("client");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, client_search_and_stats_match_local);
    tcase_add_test(t, client_add_remove_over_the_wire);
    tcase_add_test(t, client_index_errors);
    suite_add_tcase(s, t);
    return s;
}
