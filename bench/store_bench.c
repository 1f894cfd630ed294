/*
 * bench/store_bench: the two stores of the index side by side, SQLite (a
 * file) and PostgreSQL with pgvector (a URI), on the same random unit
 * vectors (clustered as embeddings are: 1000 random centres, each vector
 * a centre plus as much noise again, normalized; the queries drawn the
 * same way): adds per second (batches of --batch, one transaction each, as
 * `vit index add` and the service commit them), then single-query search
 * latency, k = 10: SQLite's matrix loaded in fp32 (the load timed apart),
 * PostgreSQL's exact search on the server, then pgvector's HNSW index
 * (m 16, ef_construction 64: its build timed) and its search, with its
 * recall@10 against the exact results, and what `vit index stats` says of
 * it. Each store must be new: a file that does not exist, a database
 * with no index in it.
 *
 *     build/store_bench [--rows 100000] [--dim 512] [--batch 256]
 *                       [--queries 50] STORE...
 */
#include "index/index.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void random_unit(float *v, int d)
{
    double n = 0;
    for (int i = 0; i < d; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        v[i] = (float)((double)(rng >> 11) * 0x1p-53 * 2 - 1);
        n += (double)v[i] * v[i];
    }
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

static void die(const char *what, const idx_error *err)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, err->msg);
    exit(1);
}

/* A vector near one of the `nc` centres: centre + noise of the same norm,
 * normalized. */
static void clustered(float *v, const float *centres, int nc, int d)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    const float *c = centres + (size_t)(rng % (uint64_t)nc) * d;
    random_unit(v, d);
    double n = 0;
    for (int i = 0; i < d; i++)
        v[i] += c[i], n += (double)v[i] * v[i];
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms per query of `nq` single-query searches; the hits of each
 * query's k into ids (nq x k). */
static double search_ms(idx_store *s, idx_matrix *m, const float *q, int nq,
                        int d, idx_ann ann, int64_t *ids)
{
    enum { K = 10 };
    double *t = malloc((size_t)nq * sizeof *t);
    idx_search_opts o = idx_search_opts_default();
    o.k = K;
    o.ann = ann;
    idx_error err;
    for (int i = 0; i < nq; i++) {
        idx_hit h[K];
        double t0 = now_s();
        if (idx_store_search(s, m, q + (size_t)i * d, 1, &o, h, &err) !=
            IDX_OK)
            die("search", &err);
        t[i] = (now_s() - t0) * 1e3;
        for (int j = 0; j < K; j++)
            ids[i * K + j] = h[j].id;
        idx_hits_free(h, K);
    }
    qsort(t, (size_t)nq, sizeof *t, cmp_double);
    double med = t[nq / 2];
    free(t);
    return med;
}

static double recall(const int64_t *got, const int64_t *want, int nq)
{
    int hit = 0;
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < 10; j++)
            for (int t = 0; t < 10; t++)
                hit += got[i * 10 + j] == want[i * 10 + t];
    return (double)hit / (nq * 10);
}

int main(int argc, char **argv)
{
    size_t rows = 100000;
    int d = 512, batch = 256, nq = 50, first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
        if (first + 1 >= argc)
            break;
        if (strcmp(argv[first], "--rows") == 0)
            rows = (size_t)atol(argv[first + 1]);
        else if (strcmp(argv[first], "--dim") == 0)
            d = atoi(argv[first + 1]);
        else if (strcmp(argv[first], "--batch") == 0)
            batch = atoi(argv[first + 1]);
        else if (strcmp(argv[first], "--queries") == 0)
            nq = atoi(argv[first + 1]);
        else
            break;
    }
    if (first >= argc || rows == 0 || d <= 0 || batch <= 0 || nq <= 0) {
        fprintf(stderr, "usage: store_bench [--rows N] [--dim D] [--batch B] "
                        "[--queries Q] STORE...\n");
        return 2;
    }
    idx_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "bench");
    snprintf(m.architecture, sizeof m.architecture, "CLIPModel");
    snprintf(m.fingerprint, sizeof m.fingerprint, "b0");
    snprintf(m.id, sizeof m.id, "bench/CLIPModel@b0");
    m.dim = d;
    float *vecs = malloc(rows * (size_t)d * sizeof *vecs);
    float *q = malloc((size_t)nq * (size_t)d * sizeof *q);
    int64_t *exact = malloc((size_t)nq * 10 * sizeof *exact);
    int64_t *ann = malloc((size_t)nq * 10 * sizeof *ann);
    if (!vecs || !q || !exact || !ann)
        return 1;
    enum { NC = 1000 };
    float *centres = malloc((size_t)NC * (size_t)d * sizeof *centres);
    if (!centres)
        return 1;
    for (int i = 0; i < NC; i++)
        random_unit(centres + (size_t)i * d, d);
    for (size_t i = 0; i < rows; i++)
        clustered(vecs + i * (size_t)d, centres, NC, d);
    for (int i = 0; i < nq; i++)
        clustered(q + (size_t)i * d, centres, NC, d);
    free(centres);
    printf("%zu rows of %d-d, batches of %d, %d queries, k = 10\n", rows, d,
           batch, nq);
    for (int a = first; a < argc; a++) {
        idx_store *s;
        idx_error err;
        int pg = idx_store_is_pg(argv[a]);
        const char *kind = pg ? "postgresql" : "sqlite";
        if (idx_store_open(argv[a], IDX_OPEN_WRITE, &s, &err) != IDX_OK ||
            idx_store_check_model(s, &m, 1, &err) != IDX_OK)
            die(argv[a], &err);
        double t0 = now_s();
        for (size_t r = 0; r < rows; r += (size_t)batch) {
            if (idx_store_begin(s, &err) != IDX_OK)
                die("begin", &err);
            for (size_t i = r; i < rows && i < r + (size_t)batch; i++) {
                char key[32];
                snprintf(key, sizeof key, "/bench/%08zu", i);
                idx_item it = {.path = key, .size = -1};
                int64_t id;
                if (idx_store_put(s, &it, vecs + i * (size_t)d, &id, NULL,
                                  &err) != IDX_OK)
                    die("put", &err);
            }
            if (idx_store_commit(s, &err) != IDX_OK)
                die("commit", &err);
        }
        double add = now_s() - t0;
        printf("%-10s add     %8.0f vectors/s (%.1f s)\n", kind,
               (double)rows / add, add);
        idx_matrix *mx = NULL;
        if (!idx_store_shared(s)) {
            t0 = now_s();
            if (idx_store_load(s, IDX_FP32, 0, &mx, &err) != IDX_OK)
                die("load", &err);
            printf("%-10s load    %8.2f s (fp32 matrix)\n", kind,
                   now_s() - t0);
        }
        double ms = search_ms(s, mx, q, nq, d, IDX_ANN_EXACT, exact);
        printf("%-10s exact   %8.2f ms/query (median), %.0f queries/s\n",
               kind, ms, 1e3 / ms);
        if (pg) {
            t0 = now_s();
            if (idx_store_set_ann(s, IDX_ANN_HNSW, &err) != IDX_OK)
                die("HNSW", &err);
            printf("%-10s hnsw    built in %.1f s\n", kind, now_s() - t0);
            ms = search_ms(s, NULL, q, nq, d, IDX_ANN_HNSW, ann);
            printf("%-10s hnsw    %8.2f ms/query (median), %.0f queries/s, "
                   "recall@10 %.3f\n",
                   kind, ms, 1e3 / ms, recall(ann, exact, nq));
            idx_stats st;
            t0 = now_s();
            if (idx_store_stats(s, &st, &err) != IDX_OK)
                die("stats", &err);
            printf("%-10s stats   recall@10 %.3f on %d queries (%.1f s)\n",
                   kind, st.recall, st.recall_queries, now_s() - t0);
        }
        idx_matrix_free(mx);
        idx_store_close(s);
    }
    free(vecs);
    free(q);
    free(exact);
    free(ann);
    return 0;
}
