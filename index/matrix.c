/*
 * The in-memory half of the index: every vector in one contiguous row-major
 * matrix, in fp32, fp16 (IEEE binary16) or int8 (one scale per row), with
 * each row's id and key, an id -> row hash map, and exact inner-product
 * top-k search over it. A search reads every row once, so its speed is the
 * memory bandwidth: one query is a SIMD scan (AVX2 + FMA + F16C when the
 * CPU has them, chosen at run time; plain C otherwise) with the rows split
 * among threads; a batch of queries goes through OpenBLAS sgemm, a block of
 * rows at a time, so each row is read once for all of them. fp16 and int8
 * halve or quarter the bytes read; their best candidates are then re-scored
 * in fp32, so that only the order of near-ties can differ from fp32.
 * Removal swaps the last row into the hole, keeping the matrix dense.
 */
#include "index/matrix_impl.h"
#include "vit/fail.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Rows per block of a batched search: a block of fp32 rows (256 x 512 x 4
 * = 512 KiB at CLIP's 512) stays in L2 while sgemm multiplies it by every
 * query. */
#define BLOCK_ROWS 256
/* Below this many floats per thread, another thread costs more than it
 * saves. */
#define MIN_WORK_PER_THREAD (1u << 20)

#define EMPTY_ID INT64_MIN

/* The library's one helper (vit/fail.h), by the name this file uses. */
#define fail vit__fail

int idx_precision_parse(const char *s, idx_precision *out)
{
    static const char *const names[] = {"fp32", "fp16", "int8"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (idx_precision)i;
            return 0;
        }
    return -1;
}

const char *idx_precision_str(idx_precision p)
{
    return p == IDX_FP16 ? "fp16" : p == IDX_INT8 ? "int8" : "fp32";
}

static size_t elem_size(idx_precision p)
{
    return p == IDX_FP32 ? 4 : p == IDX_FP16 ? 2 : 1;
}


static int online_cpus(void);

/* Runs fn on each of T jobs (`size` bytes apart): jobs 1.. on threads of
 * their own (th: room for T), job 0 on the calling thread, which also
 * takes any job no thread could be started for; returns when all are
 * done. */
static void run_jobs(void *(*fn)(void *), void *jobs, size_t size, int T,
                     pthread_t *th)
{
    char *j = jobs;
    int started = 1;
    for (; started < T; started++)
        if (pthread_create(&th[started], NULL, fn, j + started * size) != 0)
            break;
    fn(j);
    for (int t = started; t < T; t++)
        fn(j + (size_t)t * size);
    for (int t = 1; t < started; t++)
        pthread_join(th[t], NULL);
}

/* Writes rows[i] := vecs[i] for i in [a, b). */
typedef struct {
    idx_matrix *m;
    const size_t *rows;
    const float *vecs;
    size_t a, b;
} store_arg;

static void *store_main(void *arg)
{
    store_arg *t = arg;
    for (size_t i = t->a; i < t->b; i++)
        idx__store_row(t->m, t->rows[i], t->vecs + i * (size_t)t->m->dim);
    return NULL;
}

/* store_row for n rows, split among threads when there is enough of it
 * (a bulk load: a million rows converted to fp16 or int8 is seconds of
 * one core). The rows must be distinct. */
static void store_rows(idx_matrix *m, const size_t *rows, const float *vecs,
                       size_t n)
{
    int T = online_cpus();
    size_t work = n * (size_t)m->dim;
    if (T > 8)
        T = 8;
    if ((size_t)T > work / MIN_WORK_PER_THREAD)
        T = (int)(work / MIN_WORK_PER_THREAD);
    if (T < 1)
        T = 1;
    store_arg a[8];
    pthread_t th[8];
    for (int t = 0; t < T; t++)
        a[t] = (store_arg){m, rows, vecs, n * (size_t)t / (size_t)T,
                           n * (size_t)(t + 1) / (size_t)T};
    run_jobs(store_main, a, sizeof *a, T, th);
}

/* Large arrays in 2 MiB pages where the kernel allows it on request: a
 * million-row matrix is otherwise half a million page faults as it is
 * first written. */
static void huge_pages(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)p + bytes) & ~(uintptr_t)4095;
    if (bytes >= ((size_t)4 << 20) && e > a)
        madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

/* ---- id -> row map ---- */

static size_t hash_id(int64_t id, size_t cap)
{
    uint64_t x = (uint64_t)id;  /* splitmix64's finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

static size_t map_find(const idx_matrix *m, int64_t id)
{
    if (!m->map_cap)
        return SIZE_MAX;
    for (size_t i = hash_id(id, m->map_cap);; i = (i + 1) & (m->map_cap - 1)) {
        if (m->map_id[i] == id)
            return i;
        if (m->map_id[i] == EMPTY_ID)
            return SIZE_MAX;
    }
}

static void map_put(idx_matrix *m, int64_t id, size_t row)
{
    size_t i = hash_id(id, m->map_cap);
    while (m->map_id[i] != EMPTY_ID && m->map_id[i] != id)
        i = (i + 1) & (m->map_cap - 1);
    m->map_id[i] = id;
    m->map_row[i] = row;
}

/* Deletes slot i, shifting later entries of its probe run back so that no
 * lookup stops early at the hole (no tombstones to accumulate). */
static void map_del(idx_matrix *m, size_t i)
{
    size_t mask = m->map_cap - 1;
    size_t j = i;
    for (;;) {
        m->map_id[i] = EMPTY_ID;
        for (;;) {
            j = (j + 1) & mask;
            if (m->map_id[j] == EMPTY_ID)
                return;
            size_t h = hash_id(m->map_id[j], m->map_cap);
            /* Entry j may move to i unless its home lies cyclically in
             * (i, j]. */
            if ((i <= j) ? (i < h && h <= j) : (i < h || h <= j))
                continue;
            break;
        }
        m->map_id[i] = m->map_id[j];
        m->map_row[i] = m->map_row[j];
        i = j;
    }
}

static int map_reserve(idx_matrix *m, size_t rows)
{
    if (rows * 2 <= m->map_cap)
        return 0;
    size_t cap = m->map_cap ? m->map_cap : 64;
    while (cap < rows * 2)
        cap *= 2;
    int64_t *ids = malloc(cap * sizeof *ids);
    size_t *rws = malloc(cap * sizeof *rws);
    if (!ids || !rws) {
        free(ids);
        free(rws);
        return -1;
    }
    for (size_t i = 0; i < cap; i++)
        ids[i] = EMPTY_ID;
    int64_t *old_id = m->map_id;
    size_t *old_row = m->map_row, old_cap = m->map_cap;
    m->map_id = ids;
    m->map_row = rws;
    m->map_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old_id[i] != EMPTY_ID)
            map_put(m, old_id[i], old_row[i]);
    free(old_id);
    free(old_row);
    return 0;
}

/* ---- the matrix ---- */

idx_status idx_matrix_new(int dim, idx_precision p, int keep_f32,
                          idx_matrix **out, idx_error *err)
{
    if (dim <= 0 || dim > (1 << 20) || p < IDX_FP32 || p > IDX_INT8)
        return fail(err, IDX_E_ARG, "bad matrix dimension %d or precision",
                    dim);
    idx_matrix *m = calloc(1, sizeof *m);
    if (!m)
        return fail(err, IDX_E_NOMEM, "out of memory");
    m->dim = dim;
    m->prec = p;
    m->keep_f32 = keep_f32 && p != IDX_FP32;
    if (pthread_rwlock_init(&m->lock, NULL) != 0) {
        free(m);
        return fail(err, IDX_E_NOMEM, "cannot make a lock");
    }
    /* Searches split rows among their own threads and call sgemm from
     * each, so OpenBLAS must not start threads of its own under them (vit
     * does the same when it makes a state). Process-wide, once. */
    openblas_set_num_threads(1);
    *out = m;
    return IDX_OK;
}

void idx_matrix_free(idx_matrix *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->keys[i]);
    free(m->data);
    free(m->scale);
    free(m->f32);
    free(m->ids);
    free(m->keys);
    free(m->map_id);
    free(m->map_row);
    pthread_rwlock_destroy(&m->lock);
    free(m);
}

/* Grows every row array to hold `rows`. Called with the write lock held:
 * glibc's realloc of a large block remaps pages rather than copying them,
 * so readers wait microseconds, not a copy of the matrix. */
static int reserve(idx_matrix *m, size_t rows)
{
    if (rows <= m->cap)
        return map_reserve(m, rows);
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < rows)
        cap += cap / 2;
    size_t d = (size_t)m->dim;
    void *data = realloc(m->data, cap * d * elem_size(m->prec));
    if (!data)
        return -1;
    m->data = data;
    huge_pages(data, cap * d * elem_size(m->prec));
    if (m->prec == IDX_INT8) {
        float *s = realloc(m->scale, cap * sizeof *s);
        if (!s)
            return -1;
        m->scale = s;
    }
    if (m->keep_f32) {
        float *f = realloc(m->f32, cap * d * sizeof *f);
        if (!f)
            return -1;
        m->f32 = f;
        huge_pages(f, cap * d * sizeof *f);
    }
    int64_t *ids = realloc(m->ids, cap * sizeof *ids);
    if (!ids)
        return -1;
    m->ids = ids;
    char **keys = realloc(m->keys, cap * sizeof *keys);
    if (!keys)
        return -1;
    m->keys = keys;
    m->cap = cap;
    return map_reserve(m, rows);
}

idx_status idx_matrix_reserve(idx_matrix *m, size_t rows, idx_error *err)
{
    pthread_rwlock_wrlock(&m->lock);
    int bad = reserve(m, rows);
    pthread_rwlock_unlock(&m->lock);
    return bad ? fail(err, IDX_E_NOMEM, "out of memory for %zu rows", rows)
               : IDX_OK;
}

idx_status idx_matrix_add(idx_matrix *m, int n, const int64_t *ids,
                          char *const *keys, const float *vecs,
                          idx_error *err)
{
    if (n < 0 || (n > 0 && (!ids || !vecs)))
        return fail(err, IDX_E_ARG, "bad rows to add");
    for (int i = 0; i < n; i++)
        if (ids[i] == EMPTY_ID)
            return fail(err, IDX_E_ARG, "row id %lld is reserved",
                        (long long)ids[i]);
    /* Copies of the keys first, outside the lock, so that running out of
     * memory changes nothing. */
    char **kc = calloc((size_t)n + 1, sizeof *kc);
    size_t *rows = malloc(((size_t)n + 1) * sizeof *rows);
    if (!kc || !rows) {
        free(kc);
        free(rows);
        return fail(err, IDX_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++)
        if (!(kc[i] = strdup(keys && keys[i] ? keys[i] : ""))) {
            for (int j = 0; j < i; j++)
                free(kc[j]);
            free(kc);
            free(rows);
            return fail(err, IDX_E_NOMEM, "out of memory");
        }
    pthread_rwlock_wrlock(&m->lock);
    if (reserve(m, m->n + (size_t)n) != 0) {
        pthread_rwlock_unlock(&m->lock);
        for (int i = 0; i < n; i++)
            free(kc[i]);
        free(kc);
        free(rows);
        return fail(err, IDX_E_NOMEM, "out of memory for %zu rows",
                    m->n + (size_t)n);
    }
    int replaced = 0;
    for (int i = 0; i < n; i++) {
        size_t slot = map_find(m, ids[i]), r;
        if (slot != SIZE_MAX) {
            r = m->map_row[slot];
            free(m->keys[r]);
            replaced = 1;
        } else {
            r = m->n++;
            m->ids[r] = ids[i];
            map_put(m, ids[i], r);
        }
        m->keys[r] = kc[i];
        rows[i] = r;
    }
    /* An id twice in one call is one row written twice, in order; only
     * new rows, all distinct, are written in parallel. */
    if (replaced)
        for (int i = 0; i < n; i++)
            idx__store_row(m, rows[i], vecs + (size_t)i * (size_t)m->dim);
    else
        store_rows(m, rows, vecs, (size_t)n);
    pthread_rwlock_unlock(&m->lock);
    free(kc);
    free(rows);
    return IDX_OK;
}

size_t idx_matrix_remove(idx_matrix *m, const int64_t *ids, size_t n)
{
    size_t removed = 0, d = (size_t)m->dim, es = elem_size(m->prec);
    pthread_rwlock_wrlock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        size_t slot = map_find(m, ids[i]);
        if (slot == SIZE_MAX)
            continue;
        size_t r = m->map_row[slot], last = m->n - 1;
        map_del(m, slot);
        free(m->keys[r]);
        if (r != last) {
            memcpy((char *)m->data + r * d * es,
                   (char *)m->data + last * d * es, d * es);
            if (m->scale)
                m->scale[r] = m->scale[last];
            if (m->f32)
                memcpy(m->f32 + r * d, m->f32 + last * d, d * sizeof(float));
            m->ids[r] = m->ids[last];
            m->keys[r] = m->keys[last];
            m->map_row[map_find(m, m->ids[r])] = r;
        }
        m->n--;
        removed++;
    }
    pthread_rwlock_unlock(&m->lock);
    return removed;
}

size_t idx_matrix_memory_bytes(idx_matrix *m)
{
    pthread_rwlock_rdlock(&m->lock);
    size_t d = (size_t)m->dim, c = m->cap;
    size_t b = c * d * elem_size(m->prec) + c * sizeof *m->ids +
               c * sizeof *m->keys +
               m->map_cap * (sizeof *m->map_id + sizeof *m->map_row);
    if (m->scale)
        b += c * sizeof *m->scale;
    if (m->f32)
        b += c * d * sizeof *m->f32;
    pthread_rwlock_unlock(&m->lock);
    return b;
}

size_t idx_matrix_rows(idx_matrix *m)
{
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->n;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

int idx_matrix_dim(const idx_matrix *m)
{
    return m->dim;
}

idx_precision idx_matrix_precision(const idx_matrix *m)
{
    return m->prec;
}

size_t idx_matrix_scan_bytes(idx_matrix *m)
{
    pthread_rwlock_rdlock(&m->lock);
    size_t b = m->n * (size_t)m->dim * elem_size(m->prec) +
               (m->scale ? m->n * sizeof(float) : 0);
    pthread_rwlock_unlock(&m->lock);
    return b;
}

/* ---- top-k ---- */

typedef struct {
    float score;
    size_t row;
} cand;

/* A min-heap of the best `cap` candidates seen: the root is the one to
 * beat. */
typedef struct {
    cand *v;
    int n, cap;
} heap;

static void heap_push(heap *h, float score, size_t row)
{
    if (h->n < h->cap) {
        int i = h->n++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (h->v[p].score <= score)
                break;
            h->v[i] = h->v[p];
            i = p;
        }
        h->v[i] = (cand){score, row};
        return;
    }
    if (!(score > h->v[0].score))
        return;
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1].score < h->v[c].score)
            c++;
        if (h->v[c].score >= score)
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    h->v[i] = (cand){score, row};
}

/* The score a row must beat to enter, -inf while the heap is not full. */
static inline float heap_min(const heap *h)
{
    return h->n < h->cap ? -INFINITY : h->v[0].score;
}


typedef struct {
    const idx_matrix *m;
    const float *q;       /* (nq, d) */
    int nq;
    const uint8_t *mask;  /* (n) rows allowed, or NULL for all */
    int simd;             /* use the AVX2 kernels */
    size_t r0, r1;
    heap *heaps;          /* (nq) */
    int oom;
} scan_job;

static void *scan_main(void *arg)
{
    scan_job *j = arg;
    const idx_matrix *m = j->m;
    size_t d = (size_t)m->dim;
    int nq = j->nq;
    float *scores = malloc(BLOCK_ROWS * (size_t)nq * sizeof *scores);
    float *a = NULL;
    if (nq > 1 && m->prec != IDX_FP32)
        a = malloc(BLOCK_ROWS * d * sizeof *a);
    if (!scores || (nq > 1 && m->prec != IDX_FP32 && !a)) {
        free(scores);
        free(a);
        j->oom = 1;
        return NULL;
    }
    int16_t *q16 = NULL;
    float qs = 0;
    if (nq == 1 && m->prec == IDX_INT8 && j->simd) {
        if (!(q16 = malloc(d * sizeof *q16))) {
            free(scores);
            free(a);
            j->oom = 1;
            return NULL;
        }
        qs = idx__quantize_query(q16, j->q, m->dim);
    }
    for (size_t r = j->r0; r < j->r1; r += BLOCK_ROWS) {
        size_t b = j->r1 - r < BLOCK_ROWS ? j->r1 - r : BLOCK_ROWS;
        if (nq == 1) {
            idx__dot_rows(m, scores, r, b, j->q, q16, qs, j->simd);
            heap *h = &j->heaps[0];
            float mn = heap_min(h);
            for (size_t i = 0; i < b; i++)
                if (scores[i] > mn && (!j->mask || j->mask[r + i])) {
                    heap_push(h, scores[i], r + i);
                    mn = heap_min(h);
                }
            continue;
        }
        /* scores (b, nq) = rows (b, d) . q^T (d, nq) */
        const float *rows = (const float *)m->data + r * d;
        if (m->prec != IDX_FP32) {
            idx__rows_f32(m, a, r, b, j->simd);
            rows = a;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, nq,
                    (int)d, 1.0f, rows, (int)d, j->q, (int)d, 0.0f, scores,
                    nq);
        for (size_t i = 0; i < b; i++) {
            if (j->mask && !j->mask[r + i])
                continue;
            const float *s = scores + i * (size_t)nq;
            for (int qi = 0; qi < nq; qi++)
                if (s[qi] > heap_min(&j->heaps[qi]))
                    heap_push(&j->heaps[qi], s[qi], r + i);
        }
    }
    free(scores);
    free(a);
    free(q16);
    return NULL;
}

/* Best first; equal scores by lower id, so that results do not depend on
 * how rows were split among threads. */
typedef struct {
    float score;
    int64_t id;
    size_t row;
} ranked;

static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

idx_search_opts idx_search_opts_default(void)
{
    return (idx_search_opts){.k = 10, .rerank = 4};
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < 256 ? n : 256) : 1;
}


idx_status idx_matrix_search(idx_matrix *m, const float *queries, int nq,
                             const idx_search_opts *o, idx_hit *hits,
                             idx_error *err)
{
    idx_search_opts def = idx_search_opts_default();
    if (!o)
        o = &def;
    if (!m || !queries || nq < 1 || !hits || o->k < 1)
        return fail(err, IDX_E_ARG, "a search needs queries and k >= 1");
    int k = o->k;
    for (size_t i = 0; i < (size_t)nq * (size_t)k; i++)
        hits[i] = (idx_hit){.id = -1};
    size_t d = (size_t)m->dim;
    idx_status st = IDX_OK;
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->n;
    if (n == 0) {
        pthread_rwlock_unlock(&m->lock);
        return IDX_OK;
    }
    int approx = m->prec != IDX_FP32;
    int can_rerank = approx && (m->f32 || o->fetch);
    size_t want = (size_t)k;
    if (can_rerank) {
        size_t r = (size_t)(o->rerank > 0 ? o->rerank : 4) * (size_t)k;
        want = r > (size_t)k + 16 ? r : (size_t)k + 16;
    }
    if (want > n)
        want = n;
    int cap = want > (size_t)INT32_MAX ? INT32_MAX : (int)want;

    uint8_t *mask = NULL;
    if (o->prefix && o->prefix[0]) {
        size_t pl = strlen(o->prefix);
        if (!(mask = malloc(n))) {
            st = fail(err, IDX_E_NOMEM, "out of memory");
            goto out;
        }
        for (size_t r = 0; r < n; r++)
            mask[r] = strncmp(m->keys[r], o->prefix, pl) == 0;
    }

    int simd = idx__use_simd();
    int T = o->threads > 0 ? o->threads : online_cpus();
    size_t tmax = n * d / MIN_WORK_PER_THREAD + 1;
    if ((size_t)T > tmax)
        T = (int)tmax;
    scan_job *jobs = calloc((size_t)T, sizeof *jobs);
    cand *store = malloc((size_t)T * (size_t)nq * (size_t)cap * sizeof *store);
    heap *heaps = malloc((size_t)T * (size_t)nq * sizeof *heaps);
    pthread_t *th = calloc((size_t)T, sizeof *th);
    if (!jobs || !store || !heaps || !th) {
        free(jobs);
        free(store);
        free(heaps);
        free(th);
        st = fail(err, IDX_E_NOMEM, "out of memory");
        goto out;
    }
    /* Rows are split on block boundaries so each thread's sgemm calls see
     * whole blocks. */
    size_t blocks = (n + BLOCK_ROWS - 1) / BLOCK_ROWS;
    for (int t = 0; t < T; t++) {
        scan_job *j = &jobs[t];
        j->m = m;
        j->q = queries;
        j->nq = nq;
        j->mask = mask;
        j->simd = simd;
        j->r0 = blocks * (size_t)t / (size_t)T * BLOCK_ROWS;
        j->r1 = blocks * (size_t)(t + 1) / (size_t)T * BLOCK_ROWS;
        if (j->r1 > n)
            j->r1 = n;
        j->heaps = heaps + (size_t)t * (size_t)nq;
        for (int q = 0; q < nq; q++)
            j->heaps[q] = (heap){store + ((size_t)t * (size_t)nq + (size_t)q) *
                                             (size_t)cap,
                                 0, cap};
    }
    run_jobs(scan_main, jobs, sizeof *jobs, T, th);
    int oom = 0;
    for (int t = 0; t < T; t++)
        oom |= jobs[t].oom;

    ranked *all = oom ? NULL : malloc((size_t)T * (size_t)cap * sizeof *all);
    float *v32 = can_rerank && !m->f32 ? malloc(d * sizeof *v32) : NULL;
    if (!all || (can_rerank && !m->f32 && !v32)) {
        st = fail(err, IDX_E_NOMEM, "out of memory");
    } else {
        for (int q = 0; q < nq && st == IDX_OK; q++) {
            const float *qv = queries + (size_t)q * d;
            size_t na = 0;
            for (int t = 0; t < T; t++) {
                heap *h = &jobs[t].heaps[q];
                for (int i = 0; i < h->n; i++) {
                    size_t r = h->v[i].row;
                    float s = h->v[i].score;
                    if (can_rerank) {
                        const float *x = m->f32 ? m->f32 + r * d : v32;
                        if (!m->f32 && o->fetch(o->fetch_ud, m->ids[r], v32))
                            continue;  /* gone from the store meanwhile */
                        s = idx__dot_f32_exact(x, qv, m->dim, simd);
                    }
                    all[na++] = (ranked){s, m->ids[r], r};
                }
            }
            qsort(all, na, sizeof *all, by_rank);
            for (size_t i = 0; i < na && i < (size_t)k; i++) {
                idx_hit *hit = &hits[(size_t)q * (size_t)k + i];
                hit->id = all[i].id;
                hit->score = all[i].score;
                if (!(hit->key = strdup(m->keys[all[i].row]))) {
                    st = fail(err, IDX_E_NOMEM, "out of memory");
                    break;
                }
            }
        }
    }
    free(all);
    free(v32);
    free(jobs);
    free(store);
    free(heaps);
    free(th);
out:
    pthread_rwlock_unlock(&m->lock);
    free(mask);
    if (st != IDX_OK)
        idx_hits_free(hits, (size_t)nq * (size_t)k);
    return st;
}

void idx_hits_free(idx_hit *hits, size_t n)
{
    if (!hits)
        return;
    for (size_t i = 0; i < n; i++) {
        free(hits[i].key);
        hits[i].key = NULL;
    }
}
