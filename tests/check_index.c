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
#include <png.h>
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
        for (int threads = 1; threads <= 2; threads++) {
            o.threads = threads;
            int64_t *got = search_both(m, q, SYN_Q, &o);
            double rc = recall(got, want, SYN_Q, SYN_K);
            printf("%s, %d thread(s), re-ranked: recall@10 %.4f\n",
                   idx_precision_str((idx_precision)p), threads, rc);
            if (p == IDX_FP32)
                for (int i = 0; i < SYN_Q * SYN_K; i++)
                    ck_assert_int_eq(got[i], want[i]);
            else
                ck_assert(rc >= 0.99);
            free(got);
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
    char *dir = tu_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/a.vidx", dir);
    idx_error err;
    idx_store *s;
    /* Reading a file that does not exist fails; writing creates it. */
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
    ck_assert_int_eq(idx_store_get_hash(s, h, &it, &found, &err), IDX_OK);
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
    idx_matrix_free(mx);
    idx_store_close(s);

    /* Read-only, it still answers; a file that is not an index is
     * refused. */
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_READ, &s, &err), IDX_OK);
    idx_store_close(s);
    snprintf(path, sizeof path, "%s/not.vidx", dir);
    tu_write(path, "hello, this is not a database, not at all.........", 50);
    ck_assert_int_eq(idx_store_open(path, IDX_OPEN_WRITE, &s, &err),
                     IDX_E_FORMAT);
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
    tcase_add_test(t, model_fingerprint);
    suite_add_tcase(s, t);
    return s;
}
