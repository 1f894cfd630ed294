/*
 * The embedding index (index/) and `vit index`: SHA-256 against FIPS
 * 180-4's examples; fp16 conversion; exact search on a synthetic index
 * against a brute-force fp64 reference (single queries and batches, fp32
 * identical, fp16 / int8 recall@10 >= 0.99 after re-ranking); adding,
 * replacing and removing rows; the store's round trip, model fingerprint
 * and refusal of another model; and the command end to end on
 * tests/fixtures/clip_tok: add, skip unchanged, moves and copies by content
 * hash, remove, stats, search by text and image, the prefix filter, a model
 * mismatch refused, `add` killed with SIGKILL at random moments then
 * checked and resumed, and the HTML page opened in headless Chromium.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
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

/* ---- SHA-256 ---- */

static void sha_hex(const void *p, size_t n, char out[65])
{
    idx_sha256 c;
    uint8_t h[32];
    idx_sha256_init(&c);
    idx_sha256_update(&c, p, n);
    idx_sha256_final(&c, h);
    idx_hex(out, h, 32);
}

START_TEST(sha256_known_answers)
{
    char h[65];
    sha_hex("", 0, h);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb924"
                        "27ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(two, strlen(two), h);
    ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039"
                        "a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a's, fed in uneven pieces across block boundaries. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    idx_sha256 c;
    uint8_t d[32];
    idx_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = 1000000 - off < step ? 1000000 - off : step;
        idx_sha256_update(&c, a + off, n);
        off += n;
        step = step * 3 % 997 + 1;
    }
    idx_sha256_final(&c, d);
    idx_hex(h, d, 32);
    ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67"
                        "f1809a48a497200e046d39ccc7112cd0");
    free(a);
}
END_TEST

START_TEST(fp16_conversion)
{
    ck_assert_uint_eq(idx_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(idx_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(idx_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(idx_f32_to_f16(65520.0f), 0x7c00);  /* rounds to inf */
    ck_assert_uint_eq(idx_f32_to_f16(5.9604645e-8f), 0x0001);
    ck_assert_uint_eq(idx_f32_to_f16(1e-9f), 0x0000);
    /* 1 + 2^-11 is halfway between 1 and the next half: to even (1). */
    ck_assert_uint_eq(idx_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    ck_assert_uint_eq(idx_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    /* Every half that is a number converts to float and back exactly. */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue;
        ck_assert_uint_eq(idx_f32_to_f16(idx_f16_to_f32((uint16_t)h)), h);
    }
}
END_TEST

/* ---- search against brute force ---- */

static uint64_t rng_state;

static double rnd_normal(void)
{
    /* xorshift64*, then Box-Muller. */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        u[i] = ((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-53;
    }
    return sqrt(-2 * log(u[0] + 1e-300)) * cos(2 * M_PI * u[1]);
}

/* n unit vectors of length d. */
static float *random_unit(size_t n, int d)
{
    float *v = malloc(n * (size_t)d * sizeof *v);
    for (size_t r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < d; i++) {
            double x = rnd_normal();
            v[r * d + i] = (float)x;
            ss += x * x;
        }
        for (int i = 0; i < d; i++)
            v[r * d + i] = (float)(v[r * d + i] / sqrt(ss));
    }
    return v;
}

typedef struct {
    double s;
    int64_t id;
} ref_hit;

static int by_ref(const void *pa, const void *pb)
{
    const ref_hit *a = pa, *b = pb;
    if (a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* The k best ids of each query in fp64, restricted to ids where allow(id). */
static int64_t *brute_force(const float *x, const int64_t *ids, size_t n,
                            int d, const float *q, int nq, int k,
                            double *gap)
{
    int64_t *out = malloc((size_t)nq * k * sizeof *out);
    ref_hit *all = malloc(n * sizeof *all);
    *gap = INFINITY;
    for (int j = 0; j < nq; j++) {
        for (size_t r = 0; r < n; r++) {
            double s = 0;
            for (int i = 0; i < d; i++)
                s += (double)x[r * d + i] * q[(size_t)j * d + i];
            all[r] = (ref_hit){s, ids[r]};
        }
        qsort(all, n, sizeof *all, by_ref);
        for (int i = 0; i < k; i++) {
            out[(size_t)j * k + i] = all[i].id;
            if (all[i].s - all[i + 1].s < *gap)
                *gap = all[i].s - all[i + 1].s;
        }
    }
    free(all);
    return out;
}

#define SYN_N 12000
#define SYN_D 512
#define SYN_Q 16
#define SYN_K 10

/* Searches m with the queries one at a time and all at once; returns the
 * ids (nq * k) of the batched search after checking the single ones give
 * the same. */
static int64_t *search_both(idx_matrix *m, const float *q, int nq,
                            idx_search_opts *o)
{
    int k = o->k;
    idx_hit *batch = calloc((size_t)nq * k, sizeof *batch);
    idx_hit one[64];
    idx_error err;
    ck_assert_msg(idx_matrix_search(m, q, nq, o, batch, &err) == IDX_OK,
                  "%s", err.msg);
    int64_t *ids = malloc((size_t)nq * k * sizeof *ids);
    int same = 0;
    for (int j = 0; j < nq; j++) {
        ck_assert_int_eq(idx_matrix_search(m, q + (size_t)j * SYN_D, 1, o,
                                           one, &err), IDX_OK);
        for (int i = 0; i < k; i++) {
            ids[(size_t)j * k + i] = batch[(size_t)j * k + i].id;
            same += one[i].id == batch[(size_t)j * k + i].id;
            char want[32];
            snprintf(want, sizeof want, "k%lld", (long long)one[i].id);
            ck_assert_str_eq(one[i].key, want);
        }
        idx_hits_free(one, (size_t)k);
    }
    /* Single (SIMD scan) and batched (sgemm) differ only in rounding. */
    ck_assert_int_ge(same, nq * k * 99 / 100);
    idx_hits_free(batch, (size_t)nq * k);
    free(batch);
    return ids;
}

static double recall(const int64_t *got, const int64_t *want, int nq, int k)
{
    int hit = 0;
    for (int j = 0; j < nq; j++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                hit += got[j * k + a] == want[j * k + b];
    return (double)hit / (nq * k);
}

START_TEST(search_matches_brute_force)
{
    rng_state = 0x9e3779b97f4a7c15ull;
    float *x = random_unit(SYN_N, SYN_D);
    float *q = random_unit(SYN_Q, SYN_D);
    /* Queries near some rows, so that the top results are clear winners
     * as in real retrieval, plus purely random ones. */
    for (int j = 0; j < SYN_Q / 2; j++)
        for (int i = 0; i < SYN_D; i++)
            q[j * SYN_D + i] = 0.5f * q[j * SYN_D + i] +
                               x[(size_t)(j * 997) * SYN_D + i];
    int64_t *ids = malloc(SYN_N * sizeof *ids);
    char **keys = malloc(SYN_N * sizeof *keys);
    for (int r = 0; r < SYN_N; r++) {
        ids[r] = 1000 + 3 * r;  /* ids unlike row numbers */
        keys[r] = malloc(32);
        snprintf(keys[r], 32, "k%lld", (long long)ids[r]);
    }
    double gap;
    int64_t *want = brute_force(x, ids, SYN_N, SYN_D, q, SYN_Q, SYN_K, &gap);
    printf("synthetic index %d x %d, %d queries: smallest fp64 gap in the "
           "top %d %.3g\n", SYN_N, SYN_D, SYN_Q, SYN_K, gap);

    idx_error err;
    for (int p = IDX_FP32; p <= IDX_INT8; p++) {
        idx_matrix *m;
        ck_assert_int_eq(idx_matrix_new(SYN_D, (idx_precision)p, 1, &m, &err),
                         IDX_OK);
        /* In pieces, as a store loads it. */
        for (int r = 0; r < SYN_N; r += 5000) {
            int n = SYN_N - r < 5000 ? SYN_N - r : 5000;
            ck_assert_int_eq(idx_matrix_add(m, n, ids + r, keys + r,
                                            x + (size_t)r * SYN_D, &err),
                             IDX_OK);
        }
        ck_assert_uint_eq(idx_matrix_rows(m), SYN_N);
        idx_search_opts o = idx_search_opts_default();
        o.k = SYN_K;
        /* Threads 1 and 2 with the SIMD kernels (where the CPU has
         * them), then the plain C ones (IDX_NO_SIMD=1). */
        for (int pass = 0; pass < 3; pass++) {
            int threads = pass == 0 ? 1 : 2;
            if (pass == 2)
                setenv("IDX_NO_SIMD", "1", 1);
            o.threads = threads;
            int64_t *got = search_both(m, q, SYN_Q, &o);
            double rc = recall(got, want, SYN_Q, SYN_K);
            printf("%s, %d thread(s)%s, re-ranked: recall@10 %.4f\n",
                   idx_precision_str((idx_precision)p), threads,
                   pass == 2 ? ", plain C" : "", rc);
            if (p == IDX_FP32)
                for (int i = 0; i < SYN_Q * SYN_K; i++)
                    ck_assert_int_eq(got[i], want[i]);
            else
                ck_assert(rc >= 0.99);
            free(got);
            unsetenv("IDX_NO_SIMD");
        }
        if (p != IDX_FP32) {
            /* Without re-ranking: the approximate scores alone. */
            idx_matrix *raw;
            ck_assert_int_eq(idx_matrix_new(SYN_D, (idx_precision)p, 0, &raw,
                                            &err), IDX_OK);
            ck_assert_int_eq(idx_matrix_add(raw, SYN_N, ids, keys, x, &err),
                             IDX_OK);
            o.threads = 0;
            int64_t *got = search_both(raw, q, SYN_Q, &o);
            printf("%s, no re-ranking: recall@10 %.4f\n",
                   idx_precision_str((idx_precision)p),
                   recall(got, want, SYN_Q, SYN_K));
            free(got);
            idx_matrix_free(raw);
        }
        idx_matrix_free(m);
    }
    for (int r = 0; r < SYN_N; r++)
        free(keys[r]);
    free(keys);
    free(ids);
    free(want);
    free(q);
    free(x);
}
END_TEST

/* Removing, replacing and filtering keep search exact over what is left. */
START_TEST(matrix_add_remove_replace_prefix)
{
    enum { N = 3000, D = 40, K = 7 };
    rng_state = 12345;
    float *x = random_unit(N, D);
    float *q = random_unit(4, D);
    int64_t ids[N];
    char *keys[N];
    for (int r = 0; r < N; r++) {
        ids[r] = r + 1;
        keys[r] = malloc(32);
        snprintf(keys[r], 32, "%s/%d.png", r % 3 ? "b" : "a", r + 1);
    }
    idx_error err;
    idx_matrix *m;
    ck_assert_int_eq(idx_matrix_new(D, IDX_FP32, 0, &m, &err), IDX_OK);
    ck_assert_int_eq(idx_matrix_add(m, N, ids, keys, x, &err), IDX_OK);
    /* Remove every fourth id (and one that is not there). */
    int64_t gone[N / 4 + 1];
    int ng = 0;
    for (int r = 0; r < N; r += 4)
        gone[ng++] = ids[r];
    gone[ng++] = 999999;
    ck_assert_uint_eq(idx_matrix_remove(m, gone, (size_t)ng), (size_t)ng - 1);
    ck_assert_uint_eq(idx_matrix_rows(m), N - (ng - 1));
    /* Replace row 1's vector by the first query: it must come first. */
    ck_assert_int_eq(idx_matrix_add(m, 1, &ids[1], &keys[1], q, &err),
                     IDX_OK);
    ck_assert_uint_eq(idx_matrix_rows(m), N - (ng - 1));
    memcpy(x + D, q, D * sizeof *x);

    /* The reference over what is left, with the prefix "a/". */
    float *lx = malloc(sizeof(float) * N * D);
    int64_t lid[N];
    size_t ln = 0;
    for (int r = 0; r < N; r++)
        if (r % 4 && r % 3 == 0) {
            memcpy(lx + ln * D, x + (size_t)r * D, D * sizeof *x);
            lid[ln++] = ids[r];
        }
    double gap;
    int64_t *want = brute_force(lx, lid, ln, D, q, 4, K, &gap);
    idx_search_opts o = idx_search_opts_default();
    o.k = K;
    o.prefix = "a/";
    idx_hit hits[4 * K];
    ck_assert_int_eq(idx_matrix_search(m, q, 4, &o, hits, &err), IDX_OK);
    for (int i = 0; i < 4 * K; i++) {
        ck_assert_int_eq(hits[i].id, want[i]);
        ck_assert(strncmp(hits[i].key, "a/", 2) == 0);
    }
    idx_hits_free(hits, 4 * K);
    /* k larger than what matches: the rest are id -1. */
    o.prefix = "a/4.png";
    o.k = 3;
    ck_assert_int_eq(idx_matrix_search(m, q, 1, &o, hits, &err), IDX_OK);
    ck_assert_int_eq(hits[0].id, 4);
    ck_assert_int_eq(hits[1].id, -1);
    ck_assert_ptr_null(hits[1].key);
    idx_hits_free(hits, 3);
    free(want);
    free(lx);
    idx_matrix_free(m);
    for (int r = 0; r < N; r++)
        free(keys[r]);
    free(x);
    free(q);
}
END_TEST

/* ---- the store ---- */

static idx_model fake_model(const char *fp, int dim)
{
    idx_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fake");
    snprintf(m.architecture, sizeof m.architecture, "CLIPModel");
    snprintf(m.fingerprint, sizeof m.fingerprint, "%s", fp);
    snprintf(m.id, sizeof m.id, "fake/CLIPModel@%.16s", fp);
    snprintf(m.dir, sizeof m.dir, "/nonexistent/fake");
    m.dim = dim;
    return m;
}

START_TEST(store_round_trip)
{
    char *dir = tu_tmpdir(), path[700];
    snprintf(path, sizeof path, "%s/a.vidx", dir);
    if (tu_pg_mode) {
        char *db = tu_pg_new_db();
        snprintf(path, sizeof path, "%s", db);
        free(db);
    }
    idx_error err;
    idx_store *s;
    /* Reading a file (a database) that has no index fails; writing
     * creates it. */
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_READ, &s, &err), IDX_E_IO);
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_WRITE, &s, &err), IDX_OK);
    idx_model m = fake_model("aa11", 4), got;
    int has = 1;
    ck_assert_int_eq(idx_store_model(s, &got, &has, &err), IDX_OK);
    ck_assert_int_eq(has, 0);
    ck_assert_int_eq(idx_store_check_model(s, &m, 1, &err), IDX_OK);
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    float v[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    const char *paths[3] = {"/p/a.png", "/p/b.png", "/q/c.png"};
    int64_t id[3];
    for (int i = 0; i < 3; i++) {
        idx_item it = {.path = (char *)paths[i], .has_hash = 1, .size = 10 + i,
                       .mtime_ns = 5, .meta = i == 2 ? "{\"tag\": 1}" : NULL};
        memset(it.hash, i, 32);
        int rep;
        ck_assert_int_eq(idx_store_put(s, &it, v[i], &id[i], &rep, &err),
                         IDX_OK);
        ck_assert_int_eq(rep, 0);
    }
    /* Metadata must be a JSON object. */
    idx_item bad = {.path = "/p/x.png", .meta = "[1, 2"};
    int64_t bid;
    ck_assert_int_eq(idx_store_put(s, &bad, v[0], &bid, NULL, &err),
                     IDX_E_ARG);
    ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);

    /* A rolled-back batch leaves nothing. */
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    idx_item gone = {.path = "/p/gone.png", .size = 1};
    ck_assert_int_eq(idx_store_put(s, &gone, v[0], &bid, NULL, &err), IDX_OK);
    idx_store_rollback(s);

    idx_item it;
    int found;
    ck_assert_int_eq(idx_store_get_path(s, "/p/gone.png", &it, &found, &err),
                     IDX_OK);
    ck_assert_int_eq(found, 0);
    uint8_t h[32];
    memset(h, 1, 32);
    ck_assert_int_eq(idx_store_get_hash(s, h, 0, &it, &found, &err), IDX_OK);
    ck_assert_int_eq(found, 1);
    ck_assert_str_eq(it.path, "/p/b.png");
    ck_assert_int_eq(it.size, 11);
    idx_item_free(&it);
    ck_assert_int_eq(idx_store_get_path(s, "/q/c.png", &it, &found, &err),
                     IDX_OK);
    ck_assert_str_eq(it.meta, "{\"tag\": 1}");
    idx_item_free(&it);

    /* A different model is refused, naming both. */
    idx_model other = fake_model("bb22", 4);
    ck_assert_int_eq(idx_store_check_model(s, &other, 1, &err), IDX_E_MODEL);
    ck_assert_ptr_nonnull(strstr(err.msg, "fake/CLIPModel@aa11"));
    ck_assert_ptr_nonnull(strstr(err.msg, "fake/CLIPModel@bb22"));
    other = fake_model("aa11", 8);
    ck_assert_int_eq(idx_store_check_model(s, &other, 1, &err), IDX_E_MODEL);

    /* Move, remove a directory, and the matrix loaded from what is left. */
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    ck_assert_int_eq(idx_store_move(s, id[0], "/q/a2.png", 10, 6, &err),
                     IDX_OK);
    int64_t *rm = NULL;
    size_t nrm = 0;
    ck_assert_int_eq(idx_store_remove(s, "/p/", 1, &rm, &nrm, &err), IDX_OK);
    ck_assert_uint_eq(nrm, 1);
    ck_assert_int_eq(rm[0], id[1]);
    ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);
    free(rm);
    float f[4];
    ck_assert_int_eq(idx_store_fetch(s, id[2], f), 0);
    ck_assert(f[2] == 1.0f);
    ck_assert_int_ne(idx_store_fetch(s, id[1], f), 0);
    idx_stats st;
    ck_assert_int_eq(idx_store_stats(s, &st, &err), IDX_OK);
    ck_assert_int_eq(st.items, 2);
    ck_assert_int_eq(st.dim, 4);
    ck_assert_int_eq(st.vector_bytes, 32);
    idx_matrix *mx;
    ck_assert_int_eq(idx_store_load(s, IDX_INT8, 0, &mx, &err), IDX_OK);
    ck_assert_uint_eq(idx_matrix_rows(mx), 2);
    idx_search_opts o = idx_search_opts_default();
    o.k = 1;
    o.fetch = idx_store_fetch;
    o.fetch_ud = s;
    idx_hit hit;
    ck_assert_int_eq(idx_matrix_search(mx, v[0], 1, &o, &hit, &err), IDX_OK);
    ck_assert_int_eq(hit.id, id[0]);
    ck_assert_str_eq(hit.key, "/q/a2.png");
    ck_assert(hit.score == 1.0f);
    idx_hits_free(&hit, 1);
    /* The same through the store: the matrix's, or the server's search. */
    ck_assert_int_eq(idx_store_search(s, mx, v[0], 1, &o, &hit, &err),
                     IDX_OK);
    ck_assert_int_eq(hit.id, id[0]);
    ck_assert_str_eq(hit.key, "/q/a2.png");
    ck_assert(hit.score == 1.0f);
    idx_hits_free(&hit, 1);
    ck_assert_int_eq(idx_store_shared(s), tu_pg_mode);
    idx_matrix_free(mx);
    idx_store_close(s);

    /* Read-only, it still answers; a file that is not an index is
     * refused. */
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_READ, &s, &err), IDX_OK);
    idx_store_close(s);
    if (tu_pg_mode) {
        tu_rmrf(dir);
        free(dir);
        return;
    }
    snprintf(path, sizeof path, "%s/not.vidx", dir);
    tu_write(path, "hello, this is not a database, not at all.........", 50);
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_WRITE, &s, &err),
                     IDX_E_FORMAT);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The best match of `q` in a fresh fp32 load of the store. */
static idx_hit best_of(idx_store *s, const float *q)
{
    idx_error err;
    idx_matrix *mx;
    ck_assert_int_eq(idx_store_load(s, IDX_FP32, 0, &mx, &err), IDX_OK);
    idx_search_opts o = idx_search_opts_default();
    o.k = 1;
    idx_hit hit;
    ck_assert_int_eq(idx_matrix_search(mx, q, 1, &o, &hit, &err), IDX_OK);
    free(hit.key);
    hit.key = NULL;
    idx_matrix_free(mx);
    return hit;
}

/* Loading writes the vector cache beside the index and the next load
 * reads it (a vector changed in the cache alone shows); a cache that no
 * longer matches — the index written since, ids that disagree with the
 * items, a cut file — is never used, and the load is the index's. */
START_TEST(store_vector_cache)
{
    char *dir = tu_tmpdir(), path[512], cache[600];
    snprintf(path, sizeof path, "%s/a.vidx", dir);
    snprintf(cache, sizeof cache, "%s-vectors", path);
    idx_error err;
    idx_store *s;
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_WRITE, &s, &err), IDX_OK);
    idx_model m = fake_model("aa11", 4);
    ck_assert_int_eq(idx_store_check_model(s, &m, 1, &err), IDX_OK);
    float v[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    const char *paths[3] = {"/p/a.png", "/p/b.png", "/p/c.png"};
    int64_t id[3];
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    for (int i = 0; i < 3; i++) {
        idx_item it = {.path = (char *)paths[i], .size = 1};
        ck_assert_int_eq(idx_store_put(s, &it, v[i], &id[i], NULL, &err),
                         IDX_OK);
    }
    ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);
    ck_assert_int_ne(access(cache, F_OK), 0);
    const float e3[4] = {0, 0, 0, 1};
    idx_hit h = best_of(s, e3);
    ck_assert(h.score == 0.0f);
    /* Header, 3 vectors, 3 ids. */
    size_t n;
    unsigned char *c = tu_read(cache, &n);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(n, 64 + 3 * (4 * 4 + 8));
    ck_assert(memcmp(c, "VITVEC01", 8) == 0);

    /* The cache alone changed: the load shows it, so it was read. */
    const float five[4] = {0, 0, 0, 5};
    memcpy(c + 64, five, sizeof five);
    ck_assert_int_eq(tu_write(cache, c, n), 0);
    h = best_of(s, e3);
    ck_assert_int_eq(h.id, id[0]);
    ck_assert(h.score == 5.0f);

    /* The index written since: the cache is stale and is not used. */
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    idx_item it = {.path = (char *)paths[1], .size = 1};
    ck_assert_int_eq(idx_store_put(s, &it, e3, &id[1], NULL, &err), IDX_OK);
    ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);
    h = best_of(s, e3);
    ck_assert_int_eq(h.id, id[1]);
    ck_assert(h.score == 1.0f);
    /* ... and was written anew, current: the same answer from it. */
    free(c);
    c = tu_read(cache, &n);
    ck_assert_uint_eq(n, 64 + 3 * (4 * 4 + 8));
    h = best_of(s, e3);
    ck_assert_int_eq(h.id, id[1]);

    /* Stamped current, but its ids are not the items': not used. */
    memcpy(c + 64, five, sizeof five);
    int64_t bad = 999;
    memcpy(c + 64 + 3 * 16 + 16, &bad, 8);
    ck_assert_int_eq(tu_write(cache, c, n), 0);
    h = best_of(s, e3);
    ck_assert_int_eq(h.id, id[1]);
    ck_assert(h.score == 1.0f);

    /* Cut short: not used. */
    memcpy(c + 64, five, sizeof five);
    ck_assert_int_eq(tu_write(cache, c, n - 8), 0);
    h = best_of(s, e3);
    ck_assert_int_eq(h.id, id[1]);
    ck_assert(h.score == 1.0f);

    /* A removal is a change like any other. */
    ck_assert_int_eq(tu_write(cache, c, n), 0); /* stale vector 0 again */
    ck_assert_int_eq(idx_store_begin(s, &err), IDX_OK);
    ck_assert_int_eq(idx_store_remove_id(s, id[1], &err), IDX_OK);
    ck_assert_int_eq(idx_store_commit(s, &err), IDX_OK);
    h = best_of(s, e3);
    ck_assert(h.score == 0.0f);
    free(c);
    idx_store_close(s);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(model_fingerprint)
{
    idx_error err;
    idx_model a, b;
    ck_assert_int_eq(idx_model_fingerprint(TOK, "CLIPModel", 32, &a, &err),
                     IDX_OK);
    ck_assert_int_eq(idx_model_fingerprint(TOK "/", "CLIPModel", 32, &b,
                                           &err), IDX_OK);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    ck_assert_str_eq(a.name, "clip_tok");
    ck_assert(strncmp(a.id, "clip_tok/CLIPModel@", 19) == 0);
    ck_assert_int_eq(idx_model_fingerprint(FIXTURES "/clip_tiny", "CLIPModel",
                                           32, &b, &err), IDX_OK);
    ck_assert_str_ne(a.fingerprint, b.fingerprint);
    /* A copy of the directory is the same model; one changed byte at the
     * end of the weights is not. */
    char *dir = tu_tmpdir(), p[512], q[512];
    const char *files[] = {"config.json", "preprocessor_config.json",
                           "model.safetensors", "vocab.json", "merges.txt"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, TOK "/%s", files[i]);
        snprintf(q, sizeof q, "%s/%s", dir, files[i]);
        if (access(p, R_OK) == 0)
            ck_assert_int_eq(tu_copy(p, q), 0);
    }
    ck_assert_int_eq(idx_model_fingerprint(dir, "CLIPModel", 32, &b, &err),
                     IDX_OK);
    ck_assert_str_eq(a.fingerprint, b.fingerprint);
    snprintf(q, sizeof q, "%s/model.safetensors", dir);
    size_t n;
    unsigned char *w = tu_read(q, &n);
    w[n - 1] ^= 1;
    tu_write(q, w, n);
    free(w);
    ck_assert_int_eq(idx_model_fingerprint(dir, "CLIPModel", 32, &b, &err),
                     IDX_OK);
    ck_assert_str_ne(a.fingerprint, b.fingerprint);
    ck_assert_int_eq(idx_model_fingerprint("/nonexistent", "CLIPModel", 32,
                                           &b, &err), IDX_E_IO);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ---- the command ---- */

/* n distinct noise PNGs of 40 x 40, dir/img00.png ... (rng_state carries
 * on from the last). */
static void make_pngs(const char *dir, int first, int n, uint64_t seed)
{
    for (int i = first; i < first + n; i++) {
        char path[1024];
        ck_assert_int_lt(snprintf(path, sizeof path, "%s/img%02d.png", dir, i),
                         (int)sizeof path);
        rng_state = tu_noise_png(path, 40, 40, seed + (uint64_t)i * 7919);
    }
}

static int count_str(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

typedef struct {
    char *dir, *imgs, *index;
} cli_fx;

static void cli_fx_new(cli_fx *f, int n)
{
    f->dir = tu_tmpdir();
    ck_assert_ptr_nonnull(f->dir);
    f->imgs = malloc(600);
    f->index = malloc(600);
    snprintf(f->imgs, 600, "%s/imgs", f->dir);
    snprintf(f->index, 600, "%s/photos.vidx", f->dir);
    if (tu_pg_mode) {
        free(f->index);
        f->index = tu_pg_new_db();
    }
    ck_assert_int_eq(mkdir(f->imgs, 0755), 0);
    make_pngs(f->imgs, 0, n, 42);
}

static void cli_fx_free(cli_fx *f)
{
    tu_rmrf(f->dir);
    free(f->dir);
    free(f->imgs);
    free(f->index);
}

/* `vit index add` of the fixture's images into its index, which must
 * succeed. */
static void index_add_ok(const cli_fx *f)
{
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f->index, f->imgs,
           NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
}

/* The JSON of search line `line` (0-based) of out. */
static json_t *jsonl_line(const char *out, int line)
{
    const char *p = out;
    for (int i = 0; i < line; i++) {
        p = strchr(p, '\n');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    const char *nl = strchr(p, '\n');
    ck_assert_ptr_nonnull(nl);
    json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(cli_add_skip_move_copy_remove)
{
    cli_fx f;
    cli_fx_new(&f, 6);
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, "--batch",
           "4", f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "added 6, updated 0, moved 0, copied 0, "
                                "unchanged 0, failed 0; 6 items"), "%s", r.out);
    tu_run_free(&r);
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_msg(strstr(r.out, "added 0, updated 0, moved 0, copied 0, "
                                "unchanged 6"), "%s", r.out);
    tu_run_free(&r);

    /* A move, a copy, a touch (same bytes, new mtime) and an edit. */
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/img00.png", f.imgs);
    snprintf(b, sizeof b, "%s/renamed.png", f.imgs);
    ck_assert_int_eq(rename(a, b), 0);
    snprintf(a, sizeof a, "%s/img01.png", f.imgs);
    snprintf(b, sizeof b, "%s/copy.png", f.imgs);
    ck_assert_int_eq(tu_copy(a, b), 0);
    snprintf(a, sizeof a, "%s/img02.png", f.imgs);
    struct timespec ts[2] = {{1000000, 0}, {1000000, 0}};
    ck_assert_int_eq(utimensat(AT_FDCWD, a, ts, 0), 0);
    make_pngs(f.imgs, 3, 1, 777);  /* img03.png, new content */
    tu_run(&r, "index", "add", "--format", "jsonl", "--model", TOK, "--index",
           f.index, f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    printf("%s", r.out);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"moved\""), 1);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"copied\""), 1);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"updated\""), 1);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"unchanged\""), 4);
    ck_assert_int_eq(count_str(r.out, "\"status\": \"added\""), 0);
    ck_assert_ptr_nonnull(strstr(r.out, "renamed.png\", \"status\": "
                                        "\"moved\", \"from\": \""));
    tu_run_free(&r);

    /* Each image finds itself first, at cosine 1: the vectors stored are
     * the image's own, moved and copied ones included. */
    const char *names[] = {"renamed.png", "copy.png", "img01.png",
                           "img03.png", "img05.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(a, sizeof a, "%s/%s", f.imgs, names[i]);
        tu_run(&r, "index", "search", "--index", f.index, "--image", a, "-k",
               "2", "--format", "jsonl", NULL);
        ck_assert_msg(r.code == 0, "%s", r.err);
        json_t *j = jsonl_line(r.out, 0);
        json_t *top = json_array_get(json_object_get(j, "results"), 0);
        const char *p = json_string_value(json_object_get(top, "path"));
        double sc = json_number_value(json_object_get(top, "score"));
        /* copy.png and img01.png are the same bytes: either may lead. */
        if (i == 1 || i == 2)
            ck_assert(strstr(p, "copy.png") || strstr(p, "img01.png"));
        else
            ck_assert_msg(strstr(p, names[i]), "%s for %s", p, names[i]);
        ck_assert_msg(fabs(sc - 1.0) < 1e-5, "score %g", sc);
        json_decref(j);
        tu_run_free(&r);
    }

    tu_run(&r, "index", "stats", "--index", f.index, "--format", "jsonl",
           NULL);
    ck_assert_int_eq(r.code, 0);
    json_t *st = jsonl_line(r.out, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "items")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "dim")), 24);
    ck_assert(strncmp(json_string_value(json_object_get(st, "model")),
                      "clip_tok/CLIPModel@", 19) == 0);
    json_decref(st);
    tu_run_free(&r);

    /* Remove one file by name, the gone ones with --missing, and a path
     * that is not there (exit 1). */
    snprintf(a, sizeof a, "%s/copy.png", f.imgs);
    tu_run(&r, "index", "remove", "--index", f.index, a, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "removed 1 item from "));
    tu_run_free(&r);
    snprintf(a, sizeof a, "%s/img04.png", f.imgs);
    ck_assert_int_eq(unlink(a), 0);
    tu_run(&r, "index", "remove", "--index", f.index, "--missing", NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "removed 1 item"));
    tu_run_free(&r);
    tu_run(&r, "index", "remove", "--index", f.index, "/no/such/file.png",
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "not in the index"));
    tu_run_free(&r);
    /* A whole directory. */
    tu_run(&r, "index", "remove", "--index", f.index, f.imgs, NULL);
    ck_assert_int_eq(r.code, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "removed 5 items"));
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

/* ---- a property: every file present is indexed exactly once ---- */

#define PROP_NAMES 8   /* file names the operations pick from */
#define PROP_POOL 5    /* distinct contents */
#define PROP_ROUNDS 20

static uint64_t prop_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

typedef struct {
    const char *dir;
    char **paths;
    int n, bad;
    char why[600];
} prop_items;

static int prop_item(void *ud, int64_t id, const char *path)
{
    prop_items *it = ud;
    (void)id;
    char **v = realloc(it->paths, (size_t)(it->n + 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    it->paths = v;
    it->paths[it->n++] = strdup(path);
    return 0;
}

/* After `vit index add DIR` and `vit index remove --missing`: the index's
 * paths are exactly DIR's files, each once, each item's hash that of its
 * file, and its vector the one its content embeds to. */
static void prop_check(const char *index, const char *dir, int round,
                       float pool_vec[PROP_POOL][64], uint8_t pool_hash[][32],
                       int dim)
{
    idx_store *s;
    idx_error err = {{0}};
    ck_assert_msg(idx_store_open(index, IDX_OPEN_READ, &s, &err) == IDX_OK,
                  "%s", err.msg);
    prop_items it = {.dir = dir};
    ck_assert(idx_store_each(s, prop_item, &it, &err) == IDX_OK);
    int files = 0;
    for (int i = 0; i < PROP_NAMES; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/f%d.png", dir, i);
        if (access(path, F_OK) != 0)
            continue;
        files++;
        int seen = 0;
        for (int j = 0; j < it.n; j++)
            seen += strcmp(it.paths[j], path) == 0;
        ck_assert_msg(seen == 1, "round %d: %s is indexed %d times", round,
                      path, seen);
        idx_item item;
        int found;
        ck_assert(idx_store_get_path(s, path, &item, &found, &err) == IDX_OK &&
                  found);
        uint8_t h[32];
        ck_assert(idx_sha256_file(path, h, &err) == IDX_OK);
        ck_assert_msg(memcmp(h, item.hash, 32) == 0,
                      "round %d: %s's recorded hash is another file's", round,
                      path);
        int c = 0;
        while (c < PROP_POOL && memcmp(pool_hash[c], h, 32) != 0)
            c++;
        ck_assert_int_lt(c, PROP_POOL);
        float v[64];
        ck_assert_int_eq(idx_store_fetch(s, item.id, v), 0);
        double dot = 0;
        for (int k = 0; k < dim; k++)
            dot += (double)v[k] * pool_vec[c][k];
        ck_assert_msg(dot > 0.9999, "round %d: %s's vector is not its "
                      "content's (cosine %.6f)", round, path, dot);
        idx_item_free(&item);
    }
    ck_assert_msg(it.n == files, "round %d: %d items for %d files", round,
                  it.n, files);
    for (int j = 0; j < it.n; j++)
        free(it.paths[j]);
    free(it.paths);
    idx_store_close(s);
}

/* Copies `src` to `dst` less its last `cut` bytes, or with `len` bytes at
 * `at` overwritten by garbage. */
static void damaged_copy(const char *src, const char *dst, long cut, long at,
                         long len)
{
    size_t n;
    unsigned char *b = tu_read(src, &n);
    ck_assert_ptr_nonnull(b);
    ck_assert((size_t)cut < n && (size_t)(at + len) <= n);
    for (long i = 0; i < len; i++)
        b[at + i] = (unsigned char)(0xa5 ^ i);
    ck_assert_int_eq(tu_write(dst, b, n - (size_t)cut), 0);
    free(b);
}

/* Every command on `index` fails, saying the file is damaged and how to
 * rebuild it; with `writes_only`, only add and remove (which check every
 * page first) must. */
static void refused_as_damaged(const char *index, const char *imgs,
                               int writes_only)
{
    const char *cmds[][12] = {
        {"index", "add", "--model", TOK, "--index", index, imgs, NULL},
        {"index", "remove", "--index", index, "--missing", NULL},
        {"index", "stats", "--index", index, NULL},
        {"index", "search", "--index", index, "--text", "a cat", NULL},
    };
    for (int i = 0; i < (writes_only ? 2 : 4); i++) {
        tu_run_result r;
        tu_run_argv(&r, cmds[i]);
        ck_assert_msg(r.code == 1, "%s %s: exit %d: %s", cmds[i][1], index,
                      r.code, r.err);
        ck_assert_msg(strstr(r.err, "damaged") || strstr(r.err, "malformed"),
                      "%s: %s", cmds[i][1], r.err);
        ck_assert_msg(strstr(r.err, "rebuild it"), "%s: %s", cmds[i][1],
                      r.err);
        tu_run_free(&r);
    }
}

/* An index file cut short (mid-page, or by whole pages) is refused by
 * every command; one with a damaged page inside, by add and remove, which
 * check every page before writing, and by whatever reads that page. */
START_TEST(cli_damaged_index_refused)
{
    cli_fx f;
    cli_fx_new(&f, 40);
    tu_run_result r;
    index_add_ok(&f);
    struct stat sb;
    ck_assert_int_eq(stat(f.index, &sb), 0);
    ck_assert_int_ge(sb.st_size, 8 * 4096);
    char cut[700];
    snprintf(cut, sizeof cut, "%s/cut.vidx", f.dir);
    damaged_copy(f.index, cut, 1000, 0, 0);
    refused_as_damaged(cut, f.imgs, 0);
    damaged_copy(f.index, cut, 2 * 4096, 0, 0);
    refused_as_damaged(cut, f.imgs, 0);
    damaged_copy(f.index, cut, 0, sb.st_size - 3 * 4096, 4096);
    refused_as_damaged(cut, f.imgs, 1);
    /* The intact file still serves. */
    tu_run(&r, "index", "stats", "--index", f.index, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

/* An index on read-only media (here a read-only bind mount, where the
 * system allows one) is searched and described; writing it is refused,
 * saying why. */
START_TEST(cli_read_only_index)
{
    cli_fx f;
    cli_fx_new(&f, 3);
    tu_run_result r;
    index_add_ok(&f);
    char ro[700], idx[760], cmd[1600];
    snprintf(ro, sizeof ro, "%s/ro", f.dir);
    snprintf(idx, sizeof idx, "%s/photos.vidx", ro);
    ck_assert_int_eq(mkdir(ro, 0755), 0);
    snprintf(cmd, sizeof cmd,
             "mount --bind '%s' '%s' 2>/dev/null && "
             "mount -o remount,ro,bind '%s' 2>/dev/null",
             f.dir, ro, ro);
    if (system(cmd) != 0) {
        printf("index: read-only media not tested: no read-only bind mount "
               "allowed here\n");
        snprintf(cmd, sizeof cmd, "umount '%s' 2>/dev/null", ro);
        ck_assert(system(cmd) >= 0);
        cli_fx_free(&f);
        return;
    }
    ck_assert_int_ne(access(ro, W_OK), 0);
    tu_run(&r, "index", "search", "--index", idx, "--text", "a cat", "-k",
           "1", NULL);
    int search_code = r.code;
    char *search_err = strdup(r.err);
    tu_run_free(&r);
    tu_run(&r, "index", "stats", "--index", idx, NULL);
    int stats_code = r.code;
    tu_run_free(&r);
    tu_run(&r, "index", "add", "--model", TOK, "--index", idx, f.imgs, NULL);
    int add_code = r.code;
    char *add_err = strdup(r.err);
    tu_run_free(&r);
    snprintf(cmd, sizeof cmd, "umount '%s'", ro);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(search_code == 0, "search: %s", search_err);
    ck_assert_int_eq(stats_code, 0);
    ck_assert_int_eq(add_code, 1);
    ck_assert_msg(strstr(add_err, "read-only"), "%s", add_err);
    free(search_err);
    free(add_err);
    cli_fx_free(&f);
}
END_TEST

/* Three adds create the same new index at once: each either adds or says
 * another process is writing; none fails on the half-made schema; the
 * files all end up indexed. */
START_TEST(cli_concurrent_create)
{
    cli_fx f;
    cli_fx_new(&f, 3);
    pid_t pid[3];
    char out[3][700];
    for (int i = 0; i < 3; i++) {
        snprintf(out[i], sizeof out[i], "%s/err%d", f.dir, i);
        fflush(NULL);
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            int fd = open(out[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 2);
            dup2(fd, 1);
            execl(tu_vit_bin(), "vit", "index", "add", "--model", TOK,
                  "--index", f.index, f.imgs, (char *)NULL);
            _exit(127);
        }
    }
    for (int i = 0; i < 3; i++) {
        int status;
        ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
        size_t n;
        char *text = (char *)tu_read(out[i], &n);
        ck_assert_ptr_nonnull(text);
        text = realloc(text, n + 1);
        text[n] = '\0';
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        ck_assert_msg(code == 0 || (code == 1 && strstr(text, "another "
                                                        "process is writing")),
                      "creator %d: exit %d: %s", i, code, text);
        ck_assert_msg(!strstr(text, "CREATE TABLE") && !strstr(text, "locked"),
                      "creator %d: %s", i, text);
        free(text);
    }
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
           "--format", "jsonl", f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_int_eq(count_str(r.out, "\"unchanged\""), 3);
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

/* A file renamed and copied before the next add, and two identical files
 * both renamed: each of the four new paths is indexed, none of the old. */
START_TEST(cli_add_move_and_copy_together)
{
    cli_fx f;
    cli_fx_new(&f, 2);
    char a[700], a2[700], b[700], b2[700], c[700], d[700];
    snprintf(a, sizeof a, "%s/img00.png", f.imgs);
    snprintf(a2, sizeof a2, "%s/twin.png", f.imgs);
    snprintf(b, sizeof b, "%s/b.png", f.imgs);
    snprintf(b2, sizeof b2, "%s/b2.png", f.imgs);
    snprintf(c, sizeof c, "%s/c.png", f.imgs);
    snprintf(d, sizeof d, "%s/img01.png", f.imgs);
    ck_assert_int_eq(tu_copy(a, a2), 0);
    tu_run_result r;
    index_add_ok(&f);
    ck_assert_int_eq(rename(a, b), 0);
    ck_assert_int_eq(rename(a2, b2), 0);
    ck_assert_int_eq(tu_copy(b, c), 0);
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
           "--format", "jsonl", f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert_int_eq(count_str(r.out, "\"moved\""), 2);
    ck_assert_int_eq(count_str(r.out, "\"copied\""), 1);
    tu_run_free(&r);
    idx_store *s;
    idx_error err = {{0}};
    ck_assert(idx_store_open(f.index, IDX_OPEN_READ, &s, &err) == IDX_OK);
    const char *want[] = {b, b2, c, d}, *gone[] = {a, a2};
    for (int i = 0; i < 4; i++) {
        idx_item it;
        int found;
        ck_assert(idx_store_get_path(s, want[i], &it, &found, &err) == IDX_OK);
        ck_assert_msg(found, "%s is not indexed", want[i]);
        idx_item_free(&it);
    }
    for (int i = 0; i < 2; i++) {
        idx_item it;
        int found;
        ck_assert(idx_store_get_path(s, gone[i], &it, &found, &err) == IDX_OK);
        ck_assert_msg(!found, "%s is still indexed", gone[i]);
    }
    idx_store_close(s);
    cli_fx_free(&f);
}
END_TEST

/* Random sequences of adds, renames (onto free or taken names), copies,
 * rewrites and deletes of a folder, each round followed by `vit index add`
 * and `vit index remove --missing`: every file present ends up indexed
 * exactly once, with its own vector. */
START_TEST(cli_add_property)
{
    cli_fx f;
    cli_fx_new(&f, 0);
    char pool[600];
    snprintf(pool, sizeof pool, "%s/pool", f.dir);
    ck_assert_int_eq(mkdir(pool, 0755), 0);
    make_pngs(pool, 0, PROP_POOL, 7);
    /* Each content's vector, embedded here by the library. */
    vit_model *m;
    vit_state *st;
    vit_error ve;
    ck_assert(vit_model_load(TOK, NULL, &m, &ve) == VIT_OK);
    ck_assert(vit_state_new(m, &st, &ve) == VIT_OK);
    vit_model_info info;
    vit_model_get_info(m, &info);
    ck_assert_int_le(info.embed_dim, 64);
    float vec[PROP_POOL][64];
    uint8_t hash[PROP_POOL][32];
    for (int c = 0; c < PROP_POOL; c++) {
        char path[700];
        snprintf(path, sizeof path, "%s/img%02d.png", pool, c);
        vit_image img;
        ck_assert(vit_image_read(path, vit_model_options(m), &img, &ve) ==
                  VIT_OK);
        ck_assert(vit_embed_images(st, &img, 1, vec[c], &ve) == VIT_OK);
        vit_l2_normalize(vec[c], 1, info.embed_dim);
        vit_image_free(&img);
        idx_error ie;
        ck_assert(idx_sha256_file(path, hash[c], &ie) == IDX_OK);
    }
    vit_state_free(st);
    vit_model_free(m);

    uint64_t rs = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < PROP_ROUNDS; round++) {
        int ops = 2 + (int)(prop_next(&rs) % 6);
        for (int o = 0; o < ops; o++) {
            char a[700], b[700], src[700];
            snprintf(a, sizeof a, "%s/f%d.png", f.imgs,
                     (int)(prop_next(&rs) % PROP_NAMES));
            snprintf(b, sizeof b, "%s/f%d.png", f.imgs,
                     (int)(prop_next(&rs) % PROP_NAMES));
            snprintf(src, sizeof src, "%s/img%02d.png", pool,
                     (int)(prop_next(&rs) % PROP_POOL));
            int have = access(a, F_OK) == 0;
            switch (prop_next(&rs) % 5) {
            case 0: /* a new file, or a rewrite */
            case 3:
                ck_assert_int_eq(tu_copy(src, a), 0);
                break;
            case 1: /* rename, perhaps over another file */
                if (have)
                    ck_assert_int_eq(rename(a, b), 0);
                break;
            case 2: /* copy */
                if (have && strcmp(a, b) != 0)
                    ck_assert_int_eq(tu_copy(a, b), 0);
                break;
            case 4: /* delete */
                if (have)
                    ck_assert_int_eq(unlink(a), 0);
                break;
            }
        }
        tu_run_result r;
        tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
               f.imgs, NULL);
        ck_assert_msg(r.code == 0, "round %d: %s", round, r.err);
        tu_run_free(&r);
        tu_run(&r, "index", "remove", "--index", f.index, "--missing", NULL);
        ck_assert_msg(r.code == 0, "round %d: %s", round, r.err);
        tu_run_free(&r);
        prop_check(f.index, f.imgs, round, vec, hash, info.embed_dim);
    }
    printf("index: %d rounds of random renames, copies, rewrites and "
           "deletes, every file indexed once with its vector\n",
           PROP_ROUNDS);
    cli_fx_free(&f);
}
END_TEST

START_TEST(cli_search_formats_prefix_precision)
{
    cli_fx f;
    cli_fx_new(&f, 8);
    char sub[700];
    snprintf(sub, sizeof sub, "%s/sub", f.imgs);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    make_pngs(sub, 20, 4, 99);
    tu_run_result r;
    index_add_ok(&f);

    /* Text: the default text output, then JSONL in each precision, which
     * after re-ranking agree exactly with fp32 on 12 items. */
    tu_run(&r, "index", "search", "--index", f.index, "--text",
           "a photo of a cat", "-k", "3", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    ck_assert(strncmp(r.out, "a photo of a cat\n  ", 19) == 0);
    ck_assert_int_eq(count_str(r.out, "\n  "), 3);
    tu_run_free(&r);
    char *first = NULL;
    const char *precs[] = {"fp32", "fp16", "int8"};
    for (int i = 0; i < 3; i++) {
        tu_run(&r, "index", "search", "--index", f.index, "--text",
               "a photo of a cat", "--text", "the number 7", "-k", "12",
               "--format", "jsonl", "--precision", precs[i], NULL);
        ck_assert_msg(r.code == 0, "%s", r.err);
        json_t *j = jsonl_line(r.out, 1);
        ck_assert_str_eq(json_string_value(json_object_get(j, "text")),
                         "the number 7");
        ck_assert_int_eq(json_array_size(json_object_get(j, "results")), 12);
        json_decref(j);
        /* The same items in the same order, scores equal but for the
         * rounding of sgemm (fp32, two queries) against the SIMD dot
         * product that re-ranks. */
        if (!first) {
            first = strdup(r.out);
        } else {
            for (int line = 0; line < 2; line++) {
                json_t *x = jsonl_line(r.out, line), *y = jsonl_line(first,
                                                                    line);
                json_t *rx = json_object_get(x, "results"),
                       *ry = json_object_get(y, "results");
                for (size_t h = 0; h < 12; h++) {
                    json_t *hx = json_array_get(rx, h),
                           *hy = json_array_get(ry, h);
                    ck_assert_str_eq(
                        json_string_value(json_object_get(hx, "path")),
                        json_string_value(json_object_get(hy, "path")));
                    ck_assert(fabs(json_number_value(json_object_get(
                                       hx, "score")) -
                                   json_number_value(json_object_get(
                                       hy, "score"))) < 1e-6);
                }
                json_decref(x);
                json_decref(y);
            }
        }
        tu_run_free(&r);
    }
    free(first);

    /* --prefix: only the subdirectory's four. */
    tu_run(&r, "index", "search", "--index", f.index, "--text", "a cat",
           "-k", "10", "--format", "jsonl", "--prefix", sub, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    json_t *j = jsonl_line(r.out, 0);
    json_t *res = json_object_get(j, "results");
    ck_assert_int_eq(json_array_size(res), 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert(strstr(json_string_value(json_object_get(
                             json_array_get(res, i), "path")),
                         "/imgs/sub/img2"));
    json_decref(j);
    tu_run_free(&r);

    /* Usage errors and a file that is not an index. */
    tu_run(&r, "index", "search", "--index", f.index, NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", f.index, "--text", "x",
           "--precision", "fp8", NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    tu_run(&r, "index", "frobnicate", NULL);
    ck_assert_int_eq(r.code, 2);
    tu_run_free(&r);
    tu_run(&r, "index", "add", "--index", f.index, f.imgs, NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "--model DIR is required"));
    tu_run_free(&r);
    tu_run(&r, "index", "stats", "--index", TOK "/config.json", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "not a vit index"));
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

START_TEST(cli_model_mismatch_refused)
{
    cli_fx f;
    cli_fx_new(&f, 3);
    tu_run_result r;
    index_add_ok(&f);
    /* Another CLIP, same architecture: its vectors mean something else. */
    make_pngs(f.imgs, 10, 1, 5);
    tu_run(&r, "index", "add", "--model", FIXTURES "/clip_tiny", "--index",
           f.index, f.imgs, NULL);
    ck_assert_int_eq(r.code, 1);
    printf("%s", r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "the index was built with model "
                                        "clip_tok/CLIPModel@"));
    ck_assert_ptr_nonnull(strstr(r.err, "not clip_tiny/CLIPModel@"));
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", f.index, "--model",
           FIXTURES "/clip_tiny", "--text", "a cat", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "the index was built with model"));
    tu_run_free(&r);
    /* Nothing was added by the refused run. */
    tu_run(&r, "index", "stats", "--index", f.index, "--format", "jsonl",
           NULL);
    ck_assert_ptr_nonnull(strstr(r.out, "\"items\": 3,"));
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

/* Every model indexes images and is searched by image: DINOv2 (no text
 * tower), whose text queries are refused with a clear error; SigLIP, by
 * text too. An indexed image finds itself first. */
START_TEST(cli_index_other_families)
{
    static const char *models[] = {FIXTURES "/hub/dinov2_small",
                                   FIXTURES "/siglip_tok"};
    cli_fx f;
    cli_fx_new(&f, 3);
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", models[_i], "--index", f.index,
           f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    char img[700];
    snprintf(img, sizeof img, "%s/img01.png", f.imgs);
    tu_run(&r, "index", "search", "--index", f.index, "--image", img, "-k",
           "3", "--format", "jsonl", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    json_t *j = jsonl_line(r.out, 0);
    json_t *hit = json_array_get(json_object_get(j, "results"), 0);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(hit, "path")), "img01.png"));
    ck_assert(json_real_value(json_object_get(hit, "score")) > 0.9999);
    json_decref(j);
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", f.index, "--text", "a cat",
           "--format", "jsonl", NULL);
    if (_i == 0) {
        ck_assert_int_eq(r.code, 1);
        ck_assert_msg(strstr(r.err, "Dinov2Model has no text tower; it "
                                    "embeds images only"),
                      "%s", r.err);
    } else {
        ck_assert_msg(r.code == 0, "%s", r.err);
        json_t *t = jsonl_line(r.out, 0);
        ck_assert_int_eq(json_array_size(json_object_get(t, "results")), 3);
        json_decref(t);
    }
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

/* An index records how its vectors were made — the model's precision and
 * the image processor — refuses an add made another way, and search
 * embeds its queries the same way: an indexed image finds itself at a
 * cosine of 1 (an fp32 query against bf16 vectors would not quite). */
START_TEST(cli_index_records_precision_and_preprocess)
{
    cli_fx f;
    cli_fx_new(&f, 3);
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
           "--precision", "bf16", f.imgs, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    make_pngs(f.imgs, 10, 1, 5);
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "made with --precision bf16, not fp32"), "%s",
                  r.err);
    tu_run_free(&r);
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
           "--precision", "bf16", "--preprocess", "torchvision", f.imgs,
           NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "made with --preprocess pil, not "
                                "torchvision"),
                  "%s", r.err);
    tu_run_free(&r);
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index,
           "--precision", "fp16", f.imgs, NULL);
    ck_assert_int_eq(r.code, 2);
    ck_assert_msg(strstr(r.err, "--precision is fp32, int8 or bf16"), "%s",
                  r.err);
    tu_run_free(&r);
    char img[700];
    snprintf(img, sizeof img, "%s/img01.png", f.imgs);
    tu_run(&r, "index", "search", "--index", f.index, "--image", img,
           "--format", "jsonl", "-k", "1", NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    const char *sc = strstr(r.out, "\"score\": ");
    ck_assert_msg(sc, "%s", r.out);
    double score = atof(sc + 9);
    ck_assert_msg(score > 0.9999995, "%s", r.out);
    tu_run_free(&r);
    tu_run(&r, "index", "stats", "--index", f.index, "--format", "jsonl",
           NULL);
    ck_assert_msg(strstr(r.out, "\"model_precision\": \"bf16\"") &&
                      strstr(r.out, "\"preprocess\": \"pil\""),
                  "%s", r.out);
    tu_run_free(&r);
    tu_run(&r, "index", "stats", "--index", f.index, NULL);
    ck_assert_msg(strstr(r.out, "made     bf16, pil image processor\n"), "%s",
                  r.out);
    tu_run_free(&r);
    tu_run(&r, "index", "search", "--index", f.index, "--image", img,
           "--preprocess", "torchvision", NULL);
    ck_assert_int_eq(r.code, 1);
    ck_assert_msg(strstr(r.err, "--preprocess pil"), "%s", r.err);
    tu_run_free(&r);
    /* A worker in another precision is refused the index. */
    char ep[800];
    snprintf(ep, sizeof ep, "ipc://%s/w", f.dir);
    tu_run(&r, "serve", "--model", TOK, "--bind", ep, "--index", f.index,
           NULL);
    ck_assert_int_ne(r.code, 0);
    ck_assert_msg(strstr(r.err, "made with --precision bf16, not fp32"), "%s",
                  r.err);
    tu_run_free(&r);
    cli_fx_free(&f);
}
END_TEST

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Starts `vit index add --format jsonl --batch 1` with stdout into the
 * file `out`; returns the pid. */
static pid_t start_add(const char *index, const char *imgs, const char *out)
{
    /* Emptied here, not only in the child: a run killed before the child
     * gets to open it must not leave the previous run's lines. */
    int empty = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(empty, 0);
    close(empty);
    pid_t pid = tu_fork_out(out);
    if (pid == 0) {
        execl(tu_vit_bin(), tu_vit_bin(), "index", "add", "--format", "jsonl",
              "--batch", "1", "--model", TOK, "--index", index, imgs,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* check_after_crash of an index in PostgreSQL: it opens, every item has
 * a vector of the model's dimension (the load checks each), and every path
 * `out` reported committed is there. */
static int check_after_crash_pg(const char *index, char *text)
{
    idx_store *s;
    idx_error err;
    if (idx_store_open(index, IDX_OPEN_READ, &s, &err) != IDX_OK) {
        /* Killed before the first commit made the index. */
        ck_assert_msg(strcmp(text, "") == 0, "%s", err.msg);
        free(text);
        return 0;
    }
    idx_stats st;
    ck_assert_int_eq(idx_store_stats_quick(s, &st, &err), IDX_OK);
    if (st.items) {
        idx_matrix *m;
        ck_assert_msg(idx_store_load(s, IDX_FP32, 0, &m, &err) == IDX_OK,
                      "%s", err.msg);
        ck_assert_int_eq((int64_t)idx_matrix_rows(m), st.items);
        ck_assert_int_eq(idx_matrix_dim(m), 24);
        idx_matrix_free(m);
    }
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j != NULL, "a torn line on stdout: %s", line);
        const char *p = json_string_value(json_object_get(j, "path"));
        idx_item it;
        int found = 0;
        ck_assert_int_eq(idx_store_get_path(s, p, &it, &found, &err), IDX_OK);
        ck_assert_msg(found, "%s was reported committed but is not in the "
                      "index", p);
        idx_item_free(&it);
        json_decref(j);
    }
    free(text);
    idx_store_close(s);
    return (int)st.items;
}

/* The index after a crash: it opens, passes integrity_check, has a vector
 * of the right size for every item, and holds every path `out` reported
 * committed. Returns the number of items. */
static int check_after_crash(const char *index, const char *out)
{
    size_t n = 0;
    char *text = (char *)tu_read(out, &n);
    text = realloc(text, n + 1);
    text[n] = '\0';
    if (tu_pg_mode)
        return check_after_crash_pg(index, text);
    struct stat sb;
    if (stat(index, &sb) != 0) {
        /* Killed before the file was made: nothing can have been said. */
        ck_assert_str_eq(text, "");
        free(text);
        return 0;
    }
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(index, &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q,
                                        NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    int items = -1;
    /* Tables may not exist yet if the kill came before the first commit
     * that created them; then nothing can have been reported either. */
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM items), "
                           "(SELECT count(*) FROM vectors), "
                           "(SELECT count(*) FROM vectors WHERE length(v) "
                           "!= 96), (SELECT count(*) FROM items i WHERE NOT "
                           "EXISTS (SELECT 1 FROM vectors v WHERE v.id = "
                           "i.id))",
                           -1, &q, NULL) == SQLITE_OK) {
        ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
        items = sqlite3_column_int(q, 0);
        ck_assert_int_eq(sqlite3_column_int(q, 1), items);
        ck_assert_int_eq(sqlite3_column_int(q, 2), 0);
        ck_assert_int_eq(sqlite3_column_int(q, 3), 0);
        sqlite3_finalize(q);
    } else {
        items = 0;
    }
    int reported = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j != NULL, "a torn line on stdout: %s", line);
        const char *p = json_string_value(json_object_get(j, "path"));
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM items "
                                                "WHERE path = ?1",
                                            -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_text(q, 1, p, -1, SQLITE_TRANSIENT);
        ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
        ck_assert_msg(sqlite3_column_int(q, 0) == 1,
                      "%s was reported committed but is not in the index", p);
        sqlite3_finalize(q);
        json_decref(j);
        reported++;
    }
    free(text);
    sqlite3_close(db);
    return items;
}

/* An empty index again: the file and its WAL removed, or a new
 * database. */
static void restart_index(cli_fx *f)
{
    if (tu_pg_mode) {
        free(f->index);
        f->index = tu_pg_new_db();
        return;
    }
    char wal[720], shm[720];
    snprintf(wal, sizeof wal, "%s-wal", f->index);
    snprintf(shm, sizeof shm, "%s-shm", f->index);
    unlink(f->index);
    unlink(wal);
    unlink(shm);
}

#define CRASH_IMAGES 32
#define CRASH_RUNS 24

START_TEST(cli_add_survives_sigkill)
{
    cli_fx f;
    cli_fx_new(&f, CRASH_IMAGES);
    char out[700];
    snprintf(out, sizeof out, "%s/out.jsonl", f.dir);
    /* How long a whole add takes here, to spread the kills over it. */
    double t0 = mono_s();
    int status;
    pid_t pid = start_add(f.index, f.imgs, out);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    double full = mono_s() - t0;
    ck_assert_int_eq(check_after_crash(f.index, out), CRASH_IMAGES);
    printf("a whole add of %d images, a batch each: %.3f s\n", CRASH_IMAGES,
           full);

    rng_state = 20240611;
    int killed = 0, finished = 0, fresh = 0, mid = 0;
    double deadline = mono_s() + 90;
    int prev = 0;
    restart_index(&f);
    /* At least CRASH_RUNS runs, and more while too few were killed or
     * left a partial index (a run that has little left to add may finish
     * before its kill comes; how many do depends on the machine's load). */
    for (int run = 0;
         (run < CRASH_RUNS || killed < 10 || mid < 5) && mono_s() < deadline;
         run++) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        double u = ((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-53;
        /* Loading the model takes a good part of a run: of the timed kills,
         * one in two anywhere, the rest in the second half. */
        if (run % 4 == 2)
            u = 0.5 + u / 2;
        int left = CRASH_IMAGES - prev, reaped = 0;
        pid = start_add(f.index, f.imgs, out);
        if (run % 2 && left > 2) {
            /* Half the runs: once m batches are reported committed (m at
             * random), then a random moment later, within the next few
             * batches. */
            int m = 1 + (int)(u * (left - 2));
            double until = mono_s() + 20;
            for (;;) {
                size_t nb = 0;
                char *t = (char *)tu_read(out, &nb);
                int lines = 0;
                for (size_t i = 0; t && i < nb; i++)
                    lines += t[i] == '\n';
                free(t);
                if (lines >= m || mono_s() > until)
                    break;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                    reaped = 1;
                    break;
                }
                struct timespec d = {0, 500000};
                nanosleep(&d, NULL);
            }
            struct timespec d = {0, (long)(u * 20e6)};
            nanosleep(&d, NULL);
        } else {
            /* The others at any moment of a whole run, loading included. */
            struct timespec d = {0, (long)(u * full * 1e9)};
            while (d.tv_nsec >= 1000000000)
                d.tv_sec++, d.tv_nsec -= 1000000000;
            nanosleep(&d, NULL);
        }
        if (!reaped) {
            kill(pid, SIGKILL);
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        }
        if (WIFSIGNALED(status))
            killed++;
        else
            finished++;
        int items = check_after_crash(f.index, out);
        ck_assert_int_ge(items, prev);  /* nothing committed is lost */
        mid += items > 0 && items < CRASH_IMAGES;
        if (items == CRASH_IMAGES) {
            /* Done: start again from nothing, so that later kills still
             * land in the middle of work. */
            restart_index(&f);
            fresh++;
            prev = 0;
        } else {
            prev = items;
        }
    }
    /* Resume: running add again completes the rest. */
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    printf("after the kills: %s", r.out);
    tu_run_free(&r);
    ck_assert_int_eq(check_after_crash(f.index, "/dev/null"), CRASH_IMAGES);
    printf("%d runs killed with SIGKILL, %d finished first, %d left a "
           "partial index, %d restarts from empty\n",
           killed, finished, mid, fresh);
    ck_assert_int_ge(killed + finished, 20);
    ck_assert_int_ge(killed, 10);
    ck_assert_int_ge(mid, 5);
    cli_fx_free(&f);
}
END_TEST

/* The page opened in headless Chromium: a script appended to a copy of it
 * counts the images that decoded (naturalWidth > 0). One deliberately
 * broken image is added too, to show the check can fail. */
START_TEST(cli_html_renders_in_chromium)
{
    ck_assert_msg(tu_have_program("chromium"),
                  "Debian's chromium is needed for this test (sh .ci/deps "
                  "installs it)");
    cli_fx f;
    cli_fx_new(&f, 5);
    /* A JPEG and an image query too. */
    char a[700], html[700], page[700], out[700], profile[700], url[800];
    snprintf(a, sizeof a, "%s/g.jpg", f.imgs);
    ck_assert_int_eq(tu_copy(FIXTURES "/cli/gradient.jpg", a), 0);
    snprintf(html, sizeof html, "%s/results.html", f.dir);
    tu_run_result r;
    index_add_ok(&f);
    tu_run(&r, "index", "search", "--index", f.index, "--text",
           "a photo of a <b>cat</b> & \"dog\"", "--image", a, "-k", "4",
           "--html", html, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    tu_run_free(&r);
    size_t n;
    char *doc = (char *)tu_read(html, &n);
    ck_assert_ptr_nonnull(doc);
    doc = realloc(doc, n + 1);
    doc[n] = '\0';
    /* 4 + 4 hits and the query image; escaped text; nothing external. */
    ck_assert_int_eq(count_str(doc, "<img "), 9);
    ck_assert_int_eq(count_str(doc, "src=\"data:image/png;base64,"), 9);
    ck_assert_ptr_nonnull(strstr(doc, "&lt;b&gt;cat&lt;/b&gt; &amp; "
                                      "&quot;dog&quot;"));
    ck_assert_ptr_null(strstr(doc, "http"));
    ck_assert_ptr_null(strstr(doc, "<script"));
    printf("results page: %zu bytes for 9 thumbnails\n", n);

    static const char check[] =
        "<img id=\"broken\" src=\"data:image/png;base64,iVBORw0KGgoAAAA\">"
        "<script>window.addEventListener('load', function () {"
        "var im = document.images, ok = 0;"
        "for (var i = 0; i < im.length; i++)"
        "  if (im[i].complete && im[i].naturalWidth > 0) ok++;"
        "var p = document.createElement('p'); p.id = 'vit-check';"
        "p.textContent = 'images=' + im.length + ' rendered=' + ok;"
        "document.body.appendChild(p);});</script>\n";
    snprintf(page, sizeof page, "%s/check.html", f.dir);
    FILE *pf = fopen(page, "w");
    ck_assert_ptr_nonnull(pf);
    fwrite(doc, 1, n, pf);
    fputs(check, pf);
    fclose(pf);
    free(doc);

    snprintf(out, sizeof out, "%s/dom.html", f.dir);
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile", f.dir);
    snprintf(url, sizeof url, "file://%s", page);
    char *argv[] = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-first-run", "--disable-extensions", profile,
                    "--virtual-time-budget=5000", "--dump-dom", url, NULL};
    double t0 = mono_s();
    int rc = tu_run_bounded(argv, out, 90);
    ck_assert_msg(rc == 0, "chromium exited %d", rc);
    char *dom = (char *)tu_read(out, &n);
    ck_assert_ptr_nonnull(dom);
    dom = realloc(dom, n + 1);
    dom[n] = '\0';
    const char *res = strstr(dom, "<p id=\"vit-check\">");
    if (res)
        res += strlen("<p id=\"vit-check\">");
    ck_assert_msg(res != NULL, "no result from the page's check");
    printf("chromium (%.1f s): %.*s\n", mono_s() - t0, 24, res);
    fflush(stdout);
    ck_assert(strncmp(res, "images=10 rendered=9<", 21) == 0);
    free(dom);
    cli_fx_free(&f);
}
END_TEST

/* Text search on the shipped CLIP model, whose held-out digits have known
 * classes: precision@10 of "a handwritten {digit}." over the ten
 * classes. */
START_TEST(shipped_model_precision_at_10)
{
    const char *model = "models/clip-digits", *held = "models/digits-heldout";
    char labels_path[256];
    snprintf(labels_path, sizeof labels_path, "%s/labels.csv", held);
    if (access(model, R_OK) != 0 || access(labels_path, R_OK) != 0) {
        printf("models/clip-digits is not shipped yet: precision@10 not "
               "measured\n");
        return;
    }
    char *dir = tu_tmpdir(), index[600];
    snprintf(index, sizeof index, "%s/digits.vidx", dir);
    tu_run_result r;
    tu_run(&r, "index", "add", "--model", model, "--index", index, "--batch",
           "64", held, NULL);
    ck_assert_msg(r.code == 0, "%s", r.err);
    printf("%s", r.out);
    tu_run_free(&r);
    size_t n;
    char *csv = (char *)tu_read(labels_path, &n);
    csv = realloc(csv, n + 1);
    csv[n] = '\0';
    static const char *const words[10] = {"zero", "one", "two", "three",
                                          "four", "five", "six", "seven",
                                          "eight", "nine"};
    const char *args[64] = {"index", "search", "--index", index, "-k", "10",
                            "--format", "jsonl"};
    int na = 8;
    char texts[10][64];
    for (int c = 0; c < 10; c++) {
        snprintf(texts[c], sizeof texts[c], "a handwritten %s.", words[c]);
        args[na++] = "--text";
        args[na++] = texts[c];
    }
    args[na] = NULL;
    tu_run_argv(&r, args);
    ck_assert_msg(r.code == 0, "%s", r.err);
    int right = 0;
    printf("precision@10 by class:");
    for (int c = 0; c < 10; c++) {
        json_t *j = jsonl_line(r.out, c);
        json_t *res = json_object_get(j, "results");
        ck_assert_int_eq(json_array_size(res), 10);
        int rc = 0;
        for (size_t i = 0; i < 10; i++) {
            const char *p = json_string_value(
                json_object_get(json_array_get(res, i), "path"));
            const char *base = strrchr(p, '/') + 1;
            char key[64];
            snprintf(key, sizeof key, "\n%s,%s\n", base, words[c]);
            rc += strstr(csv, key) != NULL;
        }
        printf(" %s %d/10", words[c], rc);
        right += rc;
        json_decref(j);
    }
    printf("\nshipped CLIP, text search \"a handwritten {}.\" over %s: "
           "precision@10 %.3f (chance 0.100)\n", held, right / 100.0);
    tu_run_free(&r);
    free(csv);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ---- over the service ---- */


static const char *err_code(json_t *j)
{
    return json_string_value(
        json_object_get(json_object_get(j, "error"), "code"));
}

#define BULK_REQS 10
#define BULK_N 4000  /* ids per request: the header stays under 64 KiB */

typedef struct {
    const char *ep;
    const float *vecs;   /* (BULK_REQS * BULK_N, 24) */
    volatile int done;
    int added;
    double ms_max;       /* the slowest add request */
} add_job;

static void *big_add(void *arg)
{
    add_job *a = arg;
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 60000;
    o.retries = 0;
    vit_client *c;
    vit_error err;
    if (vit_client_new(a->ep, &o, &c, &err) != VIT_OK)
        return NULL;
    size_t cap = (size_t)BULK_N * 16 + 128;
    char *h = malloc(cap);
    for (int q = 0; q < BULK_REQS; q++) {
        size_t o2 = (size_t)snprintf(h, cap, "{\"op\":\"index_add\","
                                             "\"embeddings\":true,\"ids\":[");
        for (int i = 0; i < BULK_N; i++)
            o2 += (size_t)snprintf(h + o2, cap - o2, "%s\"bulk%d\"",
                                   i ? "," : "", q * BULK_N + i);
        snprintf(h + o2, cap - o2, "]}");
        vit_blob b = {a->vecs + (size_t)q * BULK_N * 24,
                      (size_t)BULK_N * 24 * 4};
        vit_reply r;
        double t0 = mono_s();
        if (vit_client_call(c, h, &b, 1, &r, &err) == VIT_OK) {
            json_t *j = json_loads(r.body, 0, NULL);
            a->added += (int)json_integer_value(json_object_get(j, "added"));
            json_decref(j);
            vit_reply_free(&r);
        }
        double ms = (mono_s() - t0) * 1e3;
        a->ms_max = ms > a->ms_max ? ms : a->ms_max;
    }
    free(h);
    vit_client_free(c);
    a->done = 1;
    return NULL;
}

/* A fixture of 4 images, indexed with the tokenizer model. */
static void indexed_fx(cli_fx *f)
{
    cli_fx_new(f, 4);
    tu_run_result rr;
    tu_run(&rr, "index", "add", "--model", TOK, "--index", f->index, f->imgs,
           NULL);
    ck_assert_msg(rr.code == 0, "%s", rr.err);
    tu_run_free(&rr);
}

/* A worker holding its index in fp16 or int8 holds less than in fp32:
 * index_stats' memory_bytes, the matrix's arrays. Before, fp16 and int8
 * also kept an fp32 copy of every vector for re-scoring, so they held
 * more than fp32 (503 and 446 MB against 381 MB at 1M 64-d vectors). */
START_TEST(service_index_memory)
{
    cli_fx f;
    indexed_fx(&f);
    char ep[700];
    snprintf(ep, sizeof ep, "ipc://%s/w", f.dir);
    const char *precs[3] = {"fp32", "fp16", "int8"};
    long long mem[3];
    for (int p = 0; p < 3; p++) {
        const char *extra[] = {"--index-precision", precs[p], NULL};
        pid_t pid = tu_serve_start_args(TOK, f.dir, ep, f.index, extra);
        vit_client_options o = vit_client_options_default();
        o.timeout_ms = 20000;
        vit_client *c;
        vit_error err;
        ck_assert_int_eq(vit_client_new(ep, &o, &c, &err), VIT_OK);
        json_t *j = tu_call(c, "{\"op\":\"index_stats\"}", NULL, 0);
        json_t *ix = json_object_get(j, "index");
        ck_assert_str_eq(json_string_value(json_object_get(ix, "precision")),
                         precs[p]);
        mem[p] = json_integer_value(json_object_get(ix, "memory_bytes"));
        json_decref(j);
        vit_client_free(c);
        ck_assert_int_eq(tu_serve_stop(pid), 0);
    }
    printf("index memory: fp32 %lld, fp16 %lld, int8 %lld bytes\n", mem[0],
           mem[1], mem[2]);
    /* Room for 1024 rows of 24 floats, 16 bytes of id and key pointer
     * each, and the id map: the vectors alone differ, 2 or 3 bytes an
     * element less, int8 with a 4-byte scale a row. */
    ck_assert_int_gt(mem[0], 0);
    ck_assert_int_eq(mem[0] - mem[1], 1024 * 24 * 2);
    ck_assert_int_eq(mem[0] - mem[2], 1024 * 24 * 3 - 1024 * 4);
    cli_fx_free(&f);
}
END_TEST

START_TEST(service_index_operations)
{
    cli_fx f;
    indexed_fx(&f);
    tu_run_result rr;
    char ep[700], img[700];
    snprintf(ep, sizeof ep, "ipc://%s/w", f.dir);
    pid_t pid = tu_serve_start(TOK, f.dir, ep, f.index);
    vit_client_options o = vit_client_options_default();
    o.timeout_ms = 20000;
    vit_client *c;
    vit_error err;
    ck_assert_int_eq(vit_client_new(ep, &o, &c, &err), VIT_OK);

    /* The worker is an SQLite index's only writer: `vit index add` is
     * refused while it serves it. A PostgreSQL index is shared: the add
     * runs (and finds everything unchanged). */
    tu_run(&rr, "index", "add", "--model", TOK, "--index", f.index, f.imgs,
           NULL);
    if (tu_pg_mode) {
        ck_assert_msg(rr.code == 0, "%s", rr.err);
        ck_assert_msg(strstr(rr.out, "unchanged 4"), "%s", rr.out);
    } else {
        ck_assert_int_eq(rr.code, 1);
        ck_assert_msg(strstr(rr.err, "another process is writing to this "
                                     "index"),
                      "%s", rr.err);
    }
    tu_run_free(&rr);

    json_t *j = tu_call(c, "{\"op\":\"index_stats\"}", NULL, 0);
    json_t *ix = json_object_get(j, "index");
    ck_assert_int_eq(json_integer_value(json_object_get(ix, "items")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(ix, "dim")), 24);
    json_decref(j);

    /* An indexed file's bytes find that file first, at cosine 1. */
    snprintf(img, sizeof img, "%s/img02.png", f.imgs);
    size_t n;
    unsigned char *bytes = tu_read(img, &n);
    vit_blob b = {bytes, n};
    j = tu_call(c, "{\"op\":\"search_image\",\"k\":2}", &b, 1);
    json_t *top = json_array_get(json_array_get(json_object_get(j,
                                                                "results"),
                                                0), 0);
    ck_assert_msg(json_is_true(json_object_get(j, "ok")), "%s",
                  json_dumps(j, 0));
    char *real = realpath(img, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(top, "id")), real);
    ck_assert(fabs(json_number_value(json_object_get(top, "score")) - 1) <
              1e-5);
    free(real);
    json_decref(j);

    /* Images added over the wire, with ids and metadata. */
    vit_blob two[2] = {b, b};
    j = tu_call(c, "{\"op\":\"index_add\",\"ids\":[\"cat-1\",\"cat-2\"],"
                "\"metadata\":[{\"album\":\"x\"},null]}", two, 2);
    ck_assert_msg(json_integer_value(json_object_get(j, "added")) == 2, "%s",
                  json_dumps(j, 0));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "items")), 6);
    json_decref(j);
    j = tu_call(c, "{\"op\":\"search_image\",\"k\":3,\"prefix\":\"cat-\"}", &b,
             1);
    json_t *res = json_array_get(json_object_get(j, "results"), 0);
    ck_assert_int_eq(json_array_size(res), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *h = json_array_get(res, i);
        const char *id = json_string_value(json_object_get(h, "id"));
        json_t *meta = json_object_get(h, "metadata");
        if (strcmp(id, "cat-1") == 0)
            ck_assert_str_eq(json_string_value(json_object_get(meta,
                                                               "album")),
                             "x");
        else
            ck_assert(json_is_null(meta));
    }
    json_decref(j);
    j = tu_call(c, "{\"op\":\"search_text\",\"texts\":[\"a cat\",\"a dog\"],"
                "\"k\":5}", NULL, 0);
    ck_assert_int_eq(json_array_size(json_object_get(j, "results")), 2);
    ck_assert_int_eq(json_array_size(json_array_get(json_object_get(j,
                                                                    "results"),
                                                    1)), 5);
    json_decref(j);

    /* Bad requests get their codes. */
    j = tu_call(c, "{\"op\":\"index_add\",\"ids\":[\"a\",\"b\"]}", &b, 1);
    ck_assert_str_eq(err_code(j), "bad_request");
    json_decref(j);
    j = tu_call(c, "{\"op\":\"index_remove\"}", NULL, 0);
    ck_assert_str_eq(err_code(j), "missing_field");
    json_decref(j);
    vit_blob odd = {bytes, 10};
    j = tu_call(c, "{\"op\":\"index_add\",\"embeddings\":true,\"ids\":[\"q\"]}",
             &odd, 1);
    ck_assert_str_eq(err_code(j), "bad_request");
    json_decref(j);

    /* Adds of given vectors, one transaction each, back to back, while
     * searches go on: a search never waits for a batch being written. */
    int N = BULK_REQS * BULK_N;
    float *vecs = malloc((size_t)N * 24 * sizeof *vecs);
    rng_state = 77;
    for (int i = 0; i < N * 24; i++)
        vecs[i] = (float)rnd_normal();
    add_job a = {.ep = ep, .vecs = vecs};
    pthread_t th;
    double t0 = mono_s();
    ck_assert_int_eq(pthread_create(&th, NULL, big_add, &a), 0);
    int during = 0;
    double worst = 0;
    while (!a.done) {
        double s0 = mono_s();
        j = tu_call(c, "{\"op\":\"search_text\",\"texts\":[\"a cat\"],\"k\":3}",
                 NULL, 0);
        ck_assert(json_is_true(json_object_get(j, "ok")));
        json_decref(j);
        double ms = (mono_s() - s0) * 1e3;
        if (!a.done) {
            during++;
            worst = ms > worst ? ms : worst;
        }
    }
    pthread_join(th, NULL);
    ck_assert_int_eq(a.added, N);
    printf("service: %d vectors added in %d requests over %.0f ms (slowest "
           "%.0f ms); %d searches answered meanwhile, slowest %.1f ms\n", N,
           BULK_REQS, (mono_s() - t0) * 1e3, a.ms_max, during, worst);
    ck_assert_int_ge(during, 3);
    free(vecs);

    /* Remove, by id. */
    j = tu_call(c, "{\"op\":\"index_remove\",\"ids\":[\"cat-1\",\"bulk7\","
                "\"nope\"]}", NULL, 0);
    ck_assert_msg(json_integer_value(json_object_get(j, "removed")) == 2,
                  "%s", json_dumps(j, 0));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "items")),
                     6 + N - 2);
    json_decref(j);
    free(bytes);
    vit_client_free(c);
    ck_assert_int_eq(tu_serve_stop(pid), 0);

    /* What the worker committed is in the file, for `vit index` too. */
    tu_run(&rr, "index", "stats", "--index", f.index, "--format", "jsonl",
           NULL);
    char want[64];
    snprintf(want, sizeof want, "\"items\": %d,", 6 + N - 2);
    ck_assert_msg(strstr(rr.out, want), "%s", rr.out);
    tu_run_free(&rr);

    /* Without --index: no_index. And another model's index is refused at
     * start. */
    char ep2[700];
    snprintf(ep2, sizeof ep2, "ipc://%s/w2", f.dir);
    pid = tu_serve_start(TOK, f.dir, ep2, NULL);
    ck_assert_int_eq(vit_client_new(ep2, &o, &c, &err), VIT_OK);
    j = tu_call(c, "{\"op\":\"search_text\",\"texts\":[\"a\"]}", NULL, 0);
    ck_assert_str_eq(err_code(j), "no_index");
    json_decref(j);
    vit_client_free(c);
    ck_assert_int_eq(tu_serve_stop(pid), 0);
    tu_run(&rr, "serve", "--model", FIXTURES "/clip_tiny", "--bind", ep2,
           "--index", f.index, NULL);
    ck_assert_int_ne(rr.code, 0);
    ck_assert_msg(strstr(rr.err, "the index was built with model"), "%s",
                  rr.err);
    tu_run_free(&rr);
    cli_fx_free(&f);
}
END_TEST

Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    TCase *t = tcase_create("library");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, sha256_known_answers);
    tcase_add_test(t, fp16_conversion);
    tcase_add_test(t, search_matches_brute_force);
    tcase_add_test(t, matrix_add_remove_replace_prefix);
    tcase_add_test(t, store_round_trip);
    tcase_add_test(t, store_vector_cache);
    tcase_add_test(t, model_fingerprint);
    suite_add_tcase(s, t);
    t = tcase_create("command");
    tcase_set_timeout(t, 240);
    tcase_add_test(t, cli_add_skip_move_copy_remove);
    tcase_add_test(t, cli_add_move_and_copy_together);
    tcase_add_test(t, cli_add_property);
    tcase_add_test(t, cli_damaged_index_refused);
    tcase_add_test(t, cli_read_only_index);
    tcase_add_test(t, cli_concurrent_create);
    tcase_add_test(t, cli_search_formats_prefix_precision);
    tcase_add_test(t, cli_model_mismatch_refused);
    tcase_add_loop_test(t, cli_index_other_families, 0, 2);
    tcase_add_test(t, cli_index_records_precision_and_preprocess);
    tcase_add_test(t, cli_add_survives_sigkill);
    tcase_add_test(t, cli_html_renders_in_chromium);
    tcase_add_test(t, shipped_model_precision_at_10);
    tcase_add_test(t, service_index_operations);
    tcase_add_test(t, service_index_memory);
    suite_add_tcase(s, t);
    /* The same bodies against an index in PostgreSQL, where a server can
     * be had; said loudly where not. */
    char why[512];
    if (!tu_pg_available(why, sizeof why)) {
        fprintf(stderr, "index: SKIPPED the PostgreSQL store's tests: %s\n",
                why);
        return s;
    }
    t = tcase_create("postgresql");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, tu_pg_setup, tu_pg_teardown);
    tcase_add_test(t, store_round_trip);
    tcase_add_test(t, cli_add_skip_move_copy_remove);
    tcase_add_test(t, cli_add_move_and_copy_together);
    tcase_add_test(t, cli_add_property);
    tcase_add_test(t, cli_concurrent_create);
    tcase_add_test(t, cli_search_formats_prefix_precision);
    tcase_add_test(t, cli_model_mismatch_refused);
    tcase_add_test(t, cli_index_records_precision_and_preprocess);
    tcase_add_test(t, cli_add_survives_sigkill);
    tcase_add_test(t, service_index_operations);
    suite_add_tcase(s, t);
    return s;
}
