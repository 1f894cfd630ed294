/*
 * What only an index in PostgreSQL does, on the throwaway server of
 * tests/pgtest.c (the store's shared behaviour runs in check_index.c's
 * "postgresql" case, the SQLite bodies against it): exact search gives the
 * SQLite index's results (the same command, the same output); the HNSW
 * index, its recall in stats, and exact search beside it; several writers
 * at once, each committed batch seen at once by another connection's
 * search, no item lost or doubled; two `vit serve` workers on one index;
 * and a server that goes away in the middle of an add, then comes back.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "index/index.h"
#include "pgtest.h"
#include "service/client.h"
#include "testutil.h"

#define TOK FIXTURES "/clip_tok"
#define DIM 24

static uint64_t rng = 88172645463325252ull;

static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1p-53 * 2 - 1);
}

static void random_unit(float *v, int d)
{
    double n = 0;
    for (int i = 0; i < d; i++)
        v[i] = rnd(), n += (double)v[i] * v[i];
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

static idx_model fake_model(void)
{
    idx_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fake");
    snprintf(m.architecture, sizeof m.architecture, "CLIPModel");
    snprintf(m.fingerprint, sizeof m.fingerprint, "cc33");
    snprintf(m.id, sizeof m.id, "fake/CLIPModel@cc33");
    snprintf(m.dir, sizeof m.dir, "/nonexistent/fake");
    m.dim = DIM;
    return m;
}

/* n random unit vectors put as "/v/NNNNN" in batches of 100. */
static void fill(idx_store *s, int n, float *vecs)
{
    idx_error err;
    idx_model m = fake_model();
    ck_assert_int_eq(idx_store_check_model(s, &m, 1, &err), IDX_OK);
    for (int i = 0; i < n; i++) {
        if (i % 100 == 0)
            ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
        random_unit(vecs + (size_t)i * DIM, DIM);
        char key[32];
        snprintf(key, sizeof key, "/v/%05d", i);
        idx_item it = {.path = key, .size = -1};
        int64_t id;
        ck_assert_msg(idx_store_put(s, &it, vecs + (size_t)i * DIM, &id, NULL,
                                    &err) == IDX_OK, "%s", err.msg);
        if (i % 100 == 99 || i == n - 1)
            ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);
    }
}

/* Exact search on the server is the matrix's search: the same ids, keys
 * and scores to the bit, with and without a prefix; HNSW's recall, which
 * stats measures, and its search; --ann refused for a file. */
START_TEST(pg_exact_is_the_matrix_and_hnsw_recall)
{
    char *uri = tu_pg_new_db();
    idx_store *s;
    idx_error err;
    ck_assert_int_eq(idx_store_open(uri, IDX_OPEN_WRITE, &s, &err), IDX_OK);
    /* No HNSW index before a model. */
    ck_assert_int_eq(idx_store_set_ann(s, IDX_ANN_HNSW, &err), IDX_E_ARG);
    enum { N = 3000, NQ = 12, K = 10 };
    float *vecs = malloc((size_t)N * DIM * sizeof *vecs), q[NQ * DIM];
    fill(s, N, vecs);
    for (int i = 0; i < NQ * DIM; i += DIM)
        random_unit(q + i, DIM);
    idx_matrix *m;
    ck_assert_int_eq(idx_store_load(s, IDX_FP32, 0, &m, &err), IDX_OK);
    ck_assert_uint_eq(idx_matrix_rows(m), N);
    const char *prefixes[2] = {NULL, "/v/01"};
    for (int p = 0; p < 2; p++) {
        idx_search_opts o = idx_search_opts_default();
        o.k = K;
        o.prefix = prefixes[p];
        o.ann = IDX_ANN_EXACT;
        for (int i = 0; i < NQ; i++) {
            idx_hit want[K], got[K];
            ck_assert_int_eq(idx_matrix_search(m, q + i * DIM, 1, &o, want,
                                               &err), IDX_OK);
            ck_assert_int_eq(idx_store_search(s, NULL, q + i * DIM, 1, &o,
                                              got, &err), IDX_OK);
            for (int j = 0; j < K; j++) {
                ck_assert_int_eq(got[j].id, want[j].id);
                ck_assert_str_eq(got[j].key, want[j].key);
                ck_assert_msg(got[j].score == want[j].score, "%.9g %.9g",
                              got[j].score, want[j].score);
                if (prefixes[p])
                    ck_assert(strncmp(got[j].key, "/v/01", 5) == 0);
            }
            idx_hits_free(want, K);
            idx_hits_free(got, K);
        }
    }
    /* HNSW asked for before it is built. */
    idx_search_opts o = idx_search_opts_default();
    o.k = K;
    o.ann = IDX_ANN_HNSW;
    idx_hit h[K];
    ck_assert_int_eq(idx_store_search(s, NULL, q, 1, &o, h, &err), IDX_E_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "--ann hnsw"));
    ck_assert_int_eq(idx_store_set_ann(s, IDX_ANN_HNSW, &err), IDX_OK);
    idx_stats st;
    ck_assert_int_eq(idx_store_stats(s, &st, &err), IDX_OK);
    ck_assert_str_eq(st.ann, "hnsw");
    ck_assert_int_eq(st.recall_queries, 20);
    printf("pg: HNSW recall@10 on %d vectors: %.3f\n", N, st.recall);
    ck_assert_msg(st.recall >= 0.9 && st.recall <= 1.0, "%g", st.recall);
    /* Through HNSW (the default now it is built): k hits, found by the
     * index, scored by the matrix; mostly the exact ones. */
    int same = 0;
    for (int i = 0; i < NQ; i++) {
        idx_hit want[K];
        o.ann = IDX_ANN_DEFAULT;
        ck_assert_int_eq(idx_store_search(s, NULL, q + i * DIM, 1, &o, h,
                                          &err), IDX_OK);
        o.ann = IDX_ANN_EXACT;
        ck_assert_int_eq(idx_matrix_search(m, q + i * DIM, 1, &o, want, &err),
                         IDX_OK);
        for (int j = 0; j < K; j++) {
            ck_assert_int_ge(h[j].id, 1);
            for (int t = 0; t < K; t++)
                same += h[j].id == want[t].id;
        }
        idx_hits_free(want, K);
        idx_hits_free(h, K);
    }
    ck_assert_int_ge(same, NQ * K * 9 / 10);
    /* Dropped: exact again, and stats says none. */
    ck_assert_int_eq(idx_store_set_ann(s, IDX_ANN_EXACT, &err), IDX_OK);
    ck_assert_int_eq(idx_store_stats(s, &st, &err), IDX_OK);
    ck_assert_str_eq(st.ann, "");
    idx_matrix_free(m);
    idx_store_close(s);
    free(vecs);
    free(uri);

    /* A file has no approximate index. */
    char *dir = tu_tmpdir(), path[700];
    snprintf(path, sizeof path, "%s/a.vidx", dir);
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_WRITE, &s, &err), IDX_OK);
    ck_assert_int_eq(idx_store_set_ann(s, IDX_ANN_HNSW, &err), IDX_E_ARG);
    ck_assert_int_eq(idx_store_shared(s), 0);
    idx_store_close(s);
    tu_run_result r;
    tu_run(&r, "index", "search", "--index", path, "--text", "x", "--ann",
           "hnsw", NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "--ann is for an index in "
                                        "PostgreSQL"));
    tu_run_free(&r);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The same images added to a file and to PostgreSQL: every search prints
 * the same lines, and the stats the same counts; `--ann hnsw` on a small
 * index finds the same; stats prints its recall. */
START_TEST(pg_same_output_as_sqlite)
{
    char *dir = tu_tmpdir(), imgs[700], file[700], sub[700];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(sub, sizeof sub, "%s/imgs/sub", dir);
    snprintf(file, sizeof file, "%s/photos.vidx", dir);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    uint64_t st = 5;
    for (int i = 0; i < 14; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/img%02d.png", i < 10 ? imgs : sub, i);
        st = tu_noise_png(p, 40, 40, st + (uint64_t)i * 7919);
    }
    char *uri = tu_pg_new_db();
    const char *where[2] = {file, uri};
    tu_run_result r[2];
    for (int w = 0; w < 2; w++) {
        tu_run(&r[w], "index", "add", "--model", TOK, "--index", where[w],
               "--batch", "4", imgs, NULL);
        ck_assert_msg(r[w].code == 0, "%s", r[w].err);
        ck_assert_ptr_nonnull(strstr(r[w].out, "added 14, updated 0"));
        tu_run_free(&r[w]);
    }
    char img[800], pre[800];
    snprintf(img, sizeof img, "%s/img03.png", imgs);
    snprintf(pre, sizeof pre, "%s/", sub);
    const char *queries[][8] = {
        {"--text", "a photo of a cat", "-k", "5", NULL},
        {"--text", "noise", "--text", "digits", "-k", "14", NULL},
        {"--image", img, "-k", "3", "--format", "jsonl", NULL},
        {"--text", "a dog", "--prefix", pre, "-k", "10", NULL},
    };
    for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++) {
        for (int w = 0; w < 2; w++) {
            const char *args[16] = {"index", "search", "--index", where[w]};
            int a = 4;
            for (int j = 0; queries[qi][j]; j++)
                args[a++] = queries[qi][j];
            args[a] = NULL;
            tu_run_argv(&r[w], args);
            ck_assert_msg(r[w].code == 0, "%s", r[w].err);
        }
        ck_assert_str_eq(r[0].out, r[1].out);
        tu_run_free(&r[0]);
        tu_run_free(&r[1]);
    }
    /* The HNSW index on the PostgreSQL one: at 14 items it finds them all,
     * and stats says how well it did. */
    tu_run(&r[1], "index", "add", "--model", TOK, "--index", uri, "--ann",
           "hnsw", imgs, NULL);
    ck_assert_msg(r[1].code == 0, "%s", r[1].err);
    ck_assert_ptr_nonnull(strstr(r[1].out, "unchanged 14"));
    tu_run_free(&r[1]);
    tu_run(&r[0], "index", "search", "--index", file, "--text", "a cat", "-k",
           "5", NULL);
    tu_run(&r[1], "index", "search", "--index", uri, "--text", "a cat", "-k",
           "5", "--ann", "hnsw", NULL);
    ck_assert_msg(r[1].code == 0, "%s", r[1].err);
    ck_assert_str_eq(r[0].out, r[1].out);
    tu_run_free(&r[0]);
    tu_run_free(&r[1]);
    tu_run(&r[1], "index", "stats", "--index", uri, NULL);
    ck_assert_msg(strstr(r[1].out, "items    14 (14 files)") &&
                      strstr(r[1].out, "ann      hnsw, recall@10 1.000 "
                                       "against exact search (14 queries)"),
                  "%s", r[1].out);
    tu_run_free(&r[1]);
    tu_run(&r[1], "index", "stats", "--index", uri, "--format", "jsonl",
           NULL);
    json_t *j = json_loads(r[1].out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "ann")), "hnsw");
    ck_assert(json_real_value(json_object_get(j, "recall_at_10")) == 1.0);
    json_decref(j);
    tu_run_free(&r[1]);
    free(uri);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

#define WRITERS 4
#define PER_WRITER 120  /* half its own keys, half shared by all */

/* Writer w: batches of 10, every key written committed and found at once
 * by another connection's exact search, at cosine 1. Exits 0 when all is
 * well. */
static int writer(const char *uri, int w)
{
    idx_store *s, *rd;
    idx_error err;
    if (idx_store_open(uri, IDX_OPEN_WRITE, &s, &err) != IDX_OK ||
        idx_store_open(uri, IDX_OPEN_READ, &rd, &err) != IDX_OK) {
        fprintf(stderr, "writer %d: %s\n", w, err.msg);
        return 1;
    }
    idx_model m = fake_model();
    if (idx_store_check_model(s, &m, 1, &err) != IDX_OK) {
        fprintf(stderr, "writer %d: %s\n", w, err.msg);
        return 1;
    }
    rng ^= (uint64_t)(w + 1) * 0x9E3779B97F4A7C15ull;
    float v[10][DIM];
    char key[10][32];
    for (int b = 0; b < PER_WRITER / 10; b++) {
        if (idx_store_begin(s, &err) != IDX_OK)
            goto fail;
        for (int i = 0; i < 10; i++) {
            int n = b * 10 + i;
            if (n % 2)
                snprintf(key[i], sizeof key[i], "shared-%03d", n / 2);
            else
                snprintf(key[i], sizeof key[i], "w%d-%03d", w, n / 2);
            random_unit(v[i], DIM);
            idx_item it = {.path = key[i], .size = -1};
            int64_t id;
            if (idx_store_put(s, &it, v[i], &id, NULL, &err) != IDX_OK)
                goto fail;
        }
        if (idx_store_commit(s, &err) != IDX_OK)
            goto fail;
        for (int i = 0; i < 10; i += 2) {
            idx_search_opts o = idx_search_opts_default();
            o.k = 1;
            o.ann = IDX_ANN_EXACT;
            o.prefix = key[i];
            idx_hit h;
            if (idx_store_search(rd, NULL, v[i], 1, &o, &h, &err) != IDX_OK)
                goto fail;
            int ok = h.id >= 0 && strcmp(h.key, key[i]) == 0 &&
                     fabsf(h.score - 1) < 1e-5f;
            idx_hits_free(&h, 1);
            if (!ok) {
                fprintf(stderr, "writer %d: %s committed, not found\n", w,
                        key[i]);
                return 1;
            }
        }
    }
    idx_store_close(rd);
    idx_store_close(s);
    return 0;
fail:
    fprintf(stderr, "writer %d: %s\n", w, err.msg);
    return 1;
}

/* Several writers at once, each committing batches that share half their
 * keys with the others': one item per key in the end, each with a vector
 * one of the writers put under it, every write seen by another
 * connection's search as soon as it was committed. */
START_TEST(pg_concurrent_writers)
{
    char *uri = tu_pg_new_db();
    pid_t pid[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pid[w] = fork();
        ck_assert_int_ge(pid[w], 0);
        if (pid[w] == 0)
            _exit(writer(uri, w));
    }
    for (int w = 0; w < WRITERS; w++) {
        int status;
        ck_assert_int_eq(waitpid(pid[w], &status, 0), pid[w]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "writer %d failed", w);
    }
    idx_store *s;
    idx_error err;
    ck_assert_int_eq(idx_store_open(uri, IDX_OPEN_READ, &s, &err), IDX_OK);
    idx_stats st;
    ck_assert_int_eq(idx_store_stats(s, &st, &err), IDX_OK);
    ck_assert_int_eq(st.items, WRITERS * PER_WRITER / 2 + PER_WRITER / 2);
    idx_matrix *m;
    ck_assert_int_eq(idx_store_load(s, IDX_FP32, 0, &m, &err), IDX_OK);
    ck_assert_uint_eq(idx_matrix_rows(m), (size_t)st.items);
    idx_matrix_free(m);
    idx_store_close(s);
    free(uri);
}
END_TEST

/* Two workers serving one index: what one adds, the other finds and
 * counts at once. */
START_TEST(pg_two_workers)
{
    char *dir = tu_tmpdir(), ep[2][700];
    char *uri = tu_pg_new_db();
    vit_client *c[2];
    pid_t pid[2];
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 20000;
    for (int w = 0; w < 2; w++) {
        snprintf(ep[w], sizeof ep[w], "ipc://%s/w%d", dir, w);
        pid[w] = tu_serve_start(TOK, dir, ep[w], uri);
        vit_error err;
        ck_assert_int_eq(vit_client_new(ep[w], &o, &c[w], &err), VIT_OK);
    }
    float v[3][DIM];
    for (int i = 0; i < 3; i++)
        random_unit(v[i], DIM);
    vit_blob b = {v, sizeof v};
    json_t *j = tu_call(c[0], "{\"op\":\"index_add\",\"embeddings\":true,"
                           "\"ids\":[\"a\",\"b\",\"c\"],\"metadata\":"
                           "[{\"n\":1},null,null]}", &b, 1);
    ck_assert_msg(json_integer_value(json_object_get(j, "added")) == 3, "%s",
                  json_dumps(j, 0));
    json_decref(j);
    j = tu_call(c[1], "{\"op\":\"index_add\",\"embeddings\":true,"
                   "\"ids\":[\"d\"]}", &(vit_blob){v[1], sizeof v[1]}, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "items")), 4);
    json_decref(j);
    j = tu_call(c[1], "{\"op\":\"index_stats\"}", NULL, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "index"), "items")), 4);
    json_decref(j);
    /* Worker 1 searches worker 0's items, and finds "a" with the metadata
     * worker 0 stored. */
    j = tu_call(c[1], "{\"op\":\"search_text\",\"texts\":[\"x\"],\"k\":10}",
             NULL, 0);
    ck_assert_int_eq(json_array_size(json_array_get(json_object_get(j,
                                                                    "results"),
                                                    0)), 4);
    json_decref(j);
    tu_run_result r;
    tu_run(&r, "index", "stats", "--index", uri, NULL);
    ck_assert_msg(strstr(r.out, "items    4 (0 files)"), "%s", r.out);
    tu_run_free(&r);
    j = tu_call(c[1], "{\"op\":\"index_get\",\"ids\":[\"a\"]}", NULL, 0);
    json_t *item = json_array_get(json_object_get(j, "items"), 0);
    ck_assert_msg(json_integer_value(json_object_get(
                      json_object_get(item, "metadata"), "n")) == 1,
                  "%s", json_dumps(j, 0));
    json_decref(j);
    for (int w = 0; w < 2; w++) {
        vit_client_free(c[w]);
        ck_assert_int_eq(tu_serve_stop(pid[w]), 0);
    }
    free(uri);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The server stopped in the middle of an add: the add fails saying so,
 * what it committed stays, and the same add once the server is back does
 * the rest. */
START_TEST(pg_server_goes_away)
{
    char *dir = tu_tmpdir(), imgs[700], out[700];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    ck_assert_int_eq(mkdir(imgs, 0755), 0);
    enum { N = 300 };
    uint64_t st = 11;
    for (int i = 0; i < N; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/img%03d.png", imgs, i);
        st = tu_noise_png(p, 40, 40, st + (uint64_t)i * 104729);
    }
    char *uri = tu_pg_new_db();
    char errf[700];
    snprintf(errf, sizeof errf, "%s/err", dir);
    pid_t pid = tu_fork_out(out);
    if (pid == 0) {
        FILE *e = freopen(errf, "w", stderr);
        (void)e;
        execl(tu_vit_bin(), tu_vit_bin(), "index", "add", "--format",
              "jsonl", "--batch", "1", "--model", TOK, "--index", uri, imgs,
              (char *)NULL);
        _exit(127);
    }
    /* Once 20 batches are committed. */
    for (int tries = 0; tries < 20000; tries++) {
        size_t n = 0;
        char *t = (char *)tu_read(out, &n);
        int lines = 0;
        for (size_t i = 0; t && i < n; i++)
            lines += t[i] == '\n';
        free(t);
        if (lines >= 20)
            break;
        usleep(1000);
    }
    ck_assert_int_eq(tu_pg_stop(), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    size_t n = 0;
    char *e = (char *)tu_read(errf, &n);
    e = realloc(e, n + 1);
    e[n] = '\0';
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
                  "status %d: %s", status, e);
    ck_assert_msg(strstr(e, "the connection to the server was lost") ||
                      strstr(e, "cannot connect to the server"),
                  "%s", e);
    /* Its first line; each file not added after it is one more. */
    printf("pg: the add when the server went away: %.*s\n",
           (int)strcspn(e, "\n"), e);
    free(e);
    ck_assert_int_eq(tu_pg_start(), 0);
    /* Everything reported committed is there; the rerun adds the rest. */
    char *text = (char *)tu_read(out, &n);
    int reported = 0;
    for (size_t i = 0; i < n; i++)
        reported += text[i] == '\n';
    free(text);
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", uri, imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    char want[64];
    snprintf(want, sizeof want, "; %d items in", N);
    ck_assert_msg(strstr(r.out, want), "%s", r.out);
    int added = -1;
    ck_assert_int_eq(sscanf(r.out, "added %d", &added), 1);
    ck_assert_msg(added <= N - reported, "added %d, %d were committed before",
                  added, reported);
    tu_run_free(&r);
    free(uri);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* No server needed: which names are PostgreSQL's, and a password in the
 * URI refused before anything connects; an unreachable server said
 * plainly. */
START_TEST(pg_uri_refusals)
{
    ck_assert(idx_store_is_pg("postgresql://h/db"));
    ck_assert(idx_store_is_pg("postgres://h/db"));
    ck_assert(!idx_store_is_pg("postgresql.vidx"));
    ck_assert(!idx_store_is_pg("/tmp/postgresql://x"));
    const char *secret[] = {"postgresql://u:pw@127.0.0.1/db",
                            "postgres://127.0.0.1/db?sslmode=off&password=pw",
                            "postgresql://:pw@127.0.0.1:5/db"};
    idx_store *s;
    idx_error err;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(idx_store_open(secret[i], IDX_OPEN_READ, &s, &err),
                         IDX_E_ARG);
        ck_assert_ptr_nonnull(strstr(err.msg, "PGPASSWORD"));
        ck_assert_ptr_null(strstr(err.msg, "pw"));
    }
    tu_run_result r;
    tu_run(&r, "index", "stats", "--index", "postgresql://u:pw@127.0.0.1/db",
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "PGPASSWORD"));
    tu_run_free(&r);
    /* Port 1: nothing listens. */
    ck_assert_int_eq(idx_store_open("postgresql://u@127.0.0.1:1/db",
                                    IDX_OPEN_WRITE, &s, &err),
                     IDX_E_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot connect to the server"));
}
END_TEST

Suite *index_pg_suite(void)
{
    Suite *s = suite_create("index_pg");
    TCase *u = tcase_create("uri");
    tcase_add_test(u, pg_uri_refusals);
    suite_add_tcase(s, u);
    char why[512];
    if (!tu_pg_available(why, sizeof why)) {
        fprintf(stderr, "index_pg: SKIPPED, no PostgreSQL: %s\n", why);
        return s;
    }
    TCase *t = tcase_create("postgresql");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, tu_pg_setup, tu_pg_teardown);
    tcase_add_test(t, pg_exact_is_the_matrix_and_hnsw_recall);
    tcase_add_test(t, pg_same_output_as_sqlite);
    tcase_add_test(t, pg_concurrent_writers);
    tcase_add_test(t, pg_two_workers);
    /* Only a server of the suite's own is stopped. */
    const char *own = getenv("VIT_PG_URI");
    if (own && *own)
        fprintf(stderr, "index_pg: SKIPPED pg_server_goes_away: it stops "
                "the server, and VIT_PG_URI names one of yours\n");
    else
        tcase_add_test(t, pg_server_goes_away);
    suite_add_tcase(s, t);
    return s;
}
