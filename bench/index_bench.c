/*
 * bench/index_bench: how fast the index (index/matrix.c) searches, next to
 * how fast this machine can read the same bytes. A search touches every
 * row once, so its floor is a plain scan of the matrix's memory; the scan
 * is measured here, in the same run, with the same threads, on the same
 * buffer, and each search time is reported as a multiple of it. Random
 * unit vectors (512-d by default), 100k and 1M rows, fp32 / fp16 / int8,
 * one query (SIMD scan) and a batch of 64 (sgemm over blocks of rows),
 * k = 10, fp16 / int8 re-ranking 40 candidates per query in fp32 from the
 * original vectors (what a store would hand back).
 *
 *     build/index_bench [--rows 100000,1000000] [--dim 512] [--threads T]
 *                       [--reps R] [--batch 64]
 */
#include "index/index.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the memory-scan bound ---- */

typedef struct {
    const unsigned char *p;
    size_t n;
    uint64_t sum;
} scan_arg;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t scan_avx2(
    const unsigned char *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1,
                              _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2,
                              _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3,
                              _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1),
                                 _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, s);
    uint64_t t = v[0] + v[1] + v[2] + v[3];
    for (; i < n; i++)
        t += p[i];
    return t;
}
#endif

static void *scan_main(void *arg)
{
    scan_arg *a = arg;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        a->sum = scan_avx2(a->p, a->n);
        return NULL;
    }
#endif
    uint64_t t = 0;
    const uint64_t *w = (const uint64_t *)a->p;
    for (size_t i = 0; i < a->n / 8; i++)
        t += w[i];
    a->sum = t;
    return NULL;
}

/* Seconds to read n bytes at p once, split among T threads (best of
 * reps). */
static double scan_time(const void *p, size_t n, int T, int reps)
{
    double best = INFINITY;
    scan_arg args[256];
    pthread_t th[256];
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int t = 0; t < T; t++) {
            size_t a = n * (size_t)t / (size_t)T & ~(size_t)127;
            size_t b = t == T - 1 ? n : n * (size_t)(t + 1) / (size_t)T &
                                            ~(size_t)127;
            args[t] = (scan_arg){(const unsigned char *)p + a, b - a, 0};
            if (t)
                pthread_create(&th[t], NULL, scan_main, &args[t]);
        }
        scan_main(&args[0]);
        for (int t = 1; t < T; t++)
            pthread_join(th[t], NULL);
        double dt = now_s() - t0;
        for (int t = 0; t < T; t++)
            sink += args[t].sum;
        best = dt < best ? dt : best;
    }
    (void)sink;
    return best;
}

/* ---- data ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static inline float urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((int64_t)(rng * 0x2545F4914F6CDD1Dull) >> 11) * 0x1p-52f;
}

static float *random_unit(size_t n, int d)
{
    float *v = malloc(n * (size_t)d * sizeof *v);
    if (!v)
        return NULL;
    for (size_t r = 0; r < n; r++) {
        float *x = v + r * (size_t)d;
        double ss = 0;
        for (int i = 0; i < d; i++) {
            x[i] = urand();
            ss += (double)x[i] * x[i];
        }
        float s = (float)(1.0 / sqrt(ss));
        for (int i = 0; i < d; i++)
            x[i] *= s;
    }
    return v;
}

typedef struct {
    const float *x;
    int d;
} source;

static int fetch(void *ud, int64_t id, float *out)
{
    const source *s = ud;
    memcpy(out, s->x + (size_t)id * (size_t)s->d, (size_t)s->d * sizeof *out);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static void search_once(idx_matrix *m, const float *q, int nq,
                        idx_search_opts *o, idx_hit *hits)
{
    idx_error err;
    if (idx_matrix_search(m, q, nq, o, hits, &err) != IDX_OK) {
        fprintf(stderr, "index_bench: %s\n", err.msg);
        exit(1);
    }
    idx_hits_free(hits, (size_t)nq * (size_t)o->k);
}

static void usage(void)
{
    fprintf(stderr, "usage: index_bench [--rows N,N...] [--dim D] "
                    "[--threads T] [--reps R] [--batch B]\n"
                    "       index_bench --load FILE [--rows N] [--dim D] "
                    "[--reps R]\n");
    exit(2);
}

static void die(const char *what, const idx_error *err)
{
    fprintf(stderr, "index_bench: %s: %s\n", what, err->msg);
    exit(1);
}

/* ---- a cold process's load of an index file ---- */

/* Makes FILE: n random unit vectors of d dimensions under paths such as a
 * photo library has, in batches of 10000 rows per transaction. */
static void make_index(const char *file, size_t n, int d)
{
    idx_store *s;
    idx_error err;
    if (idx_store_open(file, IDX_OPEN_WRITE, &s, &err) != IDX_OK)
        die(file, &err);
    idx_model m = {.dim = d};
    snprintf(m.name, sizeof m.name, "bench");
    snprintf(m.architecture, sizeof m.architecture, "CLIPModel");
    memset(m.fingerprint, 'a', 64);
    snprintf(m.id, sizeof m.id, "bench/CLIPModel@aaaaaaaaaaaaaaaa");
    snprintf(m.dir, sizeof m.dir, "/nonexistent/bench");
    if (idx_store_check_model(s, &m, 1, &err) != IDX_OK)
        die("recording the model", &err);
    enum { B = 10000 };
    float *x = random_unit(B, d);
    if (!x) {
        fprintf(stderr, "index_bench: out of memory\n");
        exit(1);
    }
    double t0 = now_s();
    for (size_t r = 0; r < n; r += B) {
        if (idx_store_begin(s, &err) != IDX_OK)
            die("begin", &err);
        for (size_t i = r; i < n && i < r + B; i++) {
            char path[128];
            snprintf(path, sizeof path,
                     "/home/me/Pictures/%04zu/%02zu/IMG_%08zu.jpg",
                     2000 + i / 100000, i / 10000 % 12 + 1, i);
            idx_item it = {.path = path, .size = 1 << 20, .mtime_ns = 1,
                           .added = 1.0};
            int64_t id;
            int replaced;
            if (idx_store_put(s, &it, x + (i - r) * (size_t)d, &id,
                              &replaced, &err) != IDX_OK)
                die("put", &err);
        }
        if (idx_store_commit(s, &err) != IDX_OK)
            die("commit", &err);
        fprintf(stderr, "\rindex_bench: made %zu of %zu rows", r + B < n ? r + B : n, n);
    }
    fprintf(stderr, " in %.1f s\n", now_s() - t0);
    free(x);
    idx_store_close(s);
}

/* Seconds to read the whole file with read(2), 1 MiB at a time. */
static double read_time(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        exit(1);
    }
    static char buf[1 << 20];
    double t0 = now_s();
    while (fread(buf, 1, sizeof buf, f) == sizeof buf)
        ;
    double t = now_s() - t0;
    fclose(f);
    return t;
}

/* The child: open, load in `p`, search one query; prints its timings. */
static int load_child(const char *file, idx_precision p)
{
    double t0 = now_s();
    idx_store *s;
    idx_error err;
    if (idx_store_open(file, IDX_OPEN_READ, &s, &err) != IDX_OK)
        die(file, &err);
    idx_matrix *m;
    if (idx_store_load(s, p, 0, &m, &err) != IDX_OK)
        die("load", &err);
    double t1 = now_s();
    float *q = random_unit(1, idx_matrix_dim(m));
    idx_search_opts o = idx_search_opts_default();
    o.k = 10;
    o.fetch = idx_store_fetch;
    o.fetch_ud = s;
    idx_hit hits[10];
    if (idx_matrix_search(m, q, 1, &o, hits, &err) != IDX_OK)
        die("search", &err);
    double t2 = now_s();
    printf("%.4f %.4f %zu\n", t1 - t0, t2 - t1, idx_matrix_rows(m));
    idx_hits_free(hits, 10);
    idx_matrix_free(m);
    idx_store_close(s);
    free(q);
    return 0;
}

/* Compares a fresh process's open + load + one search of FILE (made if
 * missing) with reading FILE's bytes from the page cache. */
static int load_bench(const char *self, const char *file, size_t n, int d,
                      int reps)
{
    if (access(file, F_OK) != 0)
        make_index(file, n, d);
    read_time(file); /* into the page cache */
    printf("index_bench --load %s: a fresh process opens it, loads it and "
           "searches once, against reading the file from the page cache; "
           "median of %d\n", file, reps);
    printf("%5s %10s %9s %9s %9s %9s %8s\n", "prec", "rows", "read s",
           "load s", "search s", "total s", "/read");
    /* The first load after a change reads SQLite's rows and writes the
     * vector cache; the loads after it read the cache. */
    char cache[4200];
    snprintf(cache, sizeof cache, "%s-vectors", file);
    unlink(cache);
    for (int p = -1; p <= IDX_INT8; p++) {
        double tr[64], tl[64], tq[64], tt[64];
        size_t rows = 0;
        int R = p < 0 ? 1 : reps > 64 ? 64 : reps;
        for (int r = 0; r < R; r++) {
            tr[r] = read_time(file);
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "'%s' --load-child '%s' %s", self, file,
                     idx_precision_str(p < 0 ? IDX_FP16 : (idx_precision)p));
            double t0 = now_s();
            FILE *c = popen(cmd, "r");
            if (!c || fscanf(c, "%lf %lf %zu", &tl[r], &tq[r], &rows) != 3 ||
                pclose(c) != 0) {
                fprintf(stderr, "index_bench: the child failed\n");
                return 1;
            }
            tt[r] = now_s() - t0;
        }
        double rd = median(tr, R), tot = median(tt, R);
        printf("%5s %10zu %9.3f %9.3f %9.3f %9.3f %7.2fx%s\n",
               idx_precision_str(p < 0 ? IDX_FP16 : (idx_precision)p), rows,
               rd, median(tl, R), median(tq, R), tot, tot / rd,
               p < 0 ? "  first load: from SQLite, writing the cache" : "");
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t rows[8] = {100000, 1000000};
    int nrows = 2, d = 512, threads = 0, reps = 9, batch = 64, k = 10;
    const char *load = NULL;
    if (argc == 4 && strcmp(argv[1], "--load-child") == 0) {
        for (int p = IDX_FP32; p <= IDX_INT8; p++)
            if (strcmp(argv[3], idx_precision_str((idx_precision)p)) == 0)
                return load_child(argv[2], (idx_precision)p);
        usage();
    }
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--load") == 0) {
            load = argv[++i];
        } else if (strcmp(argv[i], "--rows") == 0) {
            nrows = 0;
            for (char *t = strtok(argv[++i], ","); t && nrows < 8;
                 t = strtok(NULL, ","))
                rows[nrows++] = strtoull(t, NULL, 10);
        } else if (strcmp(argv[i], "--dim") == 0) {
            d = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--reps") == 0) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = atoi(argv[++i]);
        } else {
            usage();
        }
    }
    if (d < 1 || reps < 1 || batch < 1 || nrows < 1)
        usage();
    if (load)
        return load_bench(argv[0], load, rows[nrows - 1], d,
                          reps > 5 ? 5 : reps);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int T = threads > 0 ? threads : (int)(cpus > 0 ? cpus : 1);
    if (T > 256)
        T = 256;
    printf("index_bench: %d-d random unit vectors, k = %d, %d thread(s), "
           "median of %d; fp16/int8 re-rank 40 candidates per query in "
           "fp32\n", d, k, T, reps);
    printf("%9s %5s %8s %8s %6s %8s %9s %8s %8s %8s %7s\n", "rows", "prec",
           "MB", "scan ms", "GB/s", "1 q ms", "1q/scan", "64 q ms",
           "per q ms", "64q/scan", "GFLOP/s");
    size_t maxrows = 0;
    for (int i = 0; i < nrows; i++)
        maxrows = rows[i] > maxrows ? rows[i] : maxrows;
    float *x = random_unit(maxrows, d);
    float *q = random_unit((size_t)batch, d);
    int64_t *ids = malloc(maxrows * sizeof *ids);
    idx_hit *hits = calloc((size_t)batch * (size_t)k, sizeof *hits);
    if (!x || !q || !ids || !hits) {
        fprintf(stderr, "index_bench: out of memory\n");
        return 1;
    }
    for (size_t r = 0; r < maxrows; r++)
        ids[r] = (int64_t)r;
    source src = {x, d};
    for (int ri = 0; ri < nrows; ri++) {
        size_t n = rows[ri];
        for (int p = IDX_FP32; p <= IDX_INT8; p++) {
            idx_matrix *m;
            idx_error err;
            if (idx_matrix_new(d, (idx_precision)p, 0, &m, &err) != IDX_OK) {
                fprintf(stderr, "index_bench: %s\n", err.msg);
                return 1;
            }
            for (size_t r = 0; r < n; r += 65536) {
                int c = (int)(n - r < 65536 ? n - r : 65536);
                if (idx_matrix_add(m, c, ids + r, NULL, x + r * (size_t)d,
                                   &err) != IDX_OK) {
                    fprintf(stderr, "index_bench: %s\n", err.msg);
                    return 1;
                }
            }
            idx_search_opts o = idx_search_opts_default();
            o.k = k;
            o.threads = T;
            o.fetch = fetch;
            o.fetch_ud = &src;
            /* The scan and the search take turns, so that whatever else
             * the machine is doing weighs on both alike; medians. */
            size_t bytes = idx_matrix_scan_bytes(m);
            double ts[64], t1[64], tb[64];
            int R = reps > 64 ? 64 : reps;
            search_once(m, q, 1, &o, hits);  /* faults, thread start-up */
            for (int r = 0; r < R; r++) {
                ts[r] = scan_time(x, bytes, T, 1);
                double t0 = now_s();
                search_once(m, q, 1, &o, hits);
                t1[r] = now_s() - t0;
            }
            int RB = R > 5 ? 5 : R;
            for (int r = 0; r < RB; r++) {
                double t0 = now_s();
                search_once(m, q, batch, &o, hits);
                tb[r] = now_s() - t0;
            }
            double scan = median(ts, R), one = median(t1, R),
                   many = median(tb, RB);
            /* The batch's arithmetic, 2 * rows * dim per query, over its
             * time: what sgemm achieved (compare `vit bench`'s peak). */
            double gflops = 2.0 * (double)n * d * batch / many / 1e9;
            printf("%9zu %5s %8.1f %8.2f %6.2f %8.2f %8.2fx %8.1f %8.3f "
                   "%7.2fx %7.1f\n",
                   n, idx_precision_str((idx_precision)p), bytes / 1e6,
                   scan * 1e3, bytes / scan / 1e9, one * 1e3, one / scan,
                   many * 1e3, many * 1e3 / batch, many / scan, gflops);
            fflush(stdout);
            idx_matrix_free(m);
        }
    }
    free(x);
    free(q);
    free(ids);
    free(hits);
    return 0;
}
