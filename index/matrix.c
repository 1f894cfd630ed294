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
#include "index/index.h"
#include "vit/fail.h"
#include "cpu/cpu.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define IDX_X86 1
#endif

/* Rows per block of a batched search: a block of fp32 rows (256 x 512 x 4
 * = 512 KiB at CLIP's 512) stays in L2 while sgemm multiplies it by every
 * query. */
#define BLOCK_ROWS 256
/* Below this many floats per thread, another thread costs more than it
 * saves. */
#define MIN_WORK_PER_THREAD (1u << 20)

#define EMPTY_ID INT64_MIN

struct idx_matrix {
    int dim;
    idx_precision prec;
    int keep_f32;
    pthread_rwlock_t lock;
    size_t n, cap;
    void *data;       /* (cap, dim) in prec: float, uint16_t or int8_t */
    float *scale;     /* int8: (cap) per-row scale, value = q * scale */
    float *f32;       /* keep_f32 with fp16 / int8: (cap, dim) fp32 */
    int64_t *ids;     /* (cap) */
    char **keys;      /* (cap) owned strings */
    /* id -> row, open addressing with linear probing. */
    int64_t *map_id;  /* (map_cap) EMPTY_ID when free */
    size_t *map_row;  /* (map_cap) */
    size_t map_cap;   /* a power of two, at least 2n */
};

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

/* ---- fp16, as F16C converts (round to nearest even) ---- */

static inline uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* After F. Giesen's float_to_half_fast3_rtne (public domain): the
 * subnormal case rounds through a float addition, the normal case adds the
 * rounding bias and lets a mantissa carry walk into the exponent (up to
 * infinity, as round-to-nearest-even requires). */
uint16_t idx_f32_to_f16(float f)
{
    const uint32_t f32infty = 255u << 23, f16max = (127u + 16u) << 23;
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t u = f_bits(f);
    uint32_t sign = u & 0x80000000u;
    u ^= sign;
    uint16_t o;
    if (u >= f16max) {
        o = u > f32infty ? 0x7e00 : 0x7c00;
    } else if (u < (113u << 23)) {
        float t = bits_f(u) + bits_f(denorm_magic);
        o = (uint16_t)(f_bits(t) - denorm_magic);
    } else {
        uint32_t mant_odd = (u >> 13) & 1;
        u += ((uint32_t)(15 - 127) << 23) + 0xfff;
        u += mant_odd;
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

float idx_f16_to_f32(uint16_t h)
{
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = (uint32_t)(h & 0x7fff) << 13;
    uint32_t exp = shifted_exp & o;
    o += (uint32_t)(127 - 15) << 23;
    if (exp == shifted_exp) {
        o += (uint32_t)(128 - 16) << 23;  /* inf, nan */
    } else if (exp == 0) {
        o += 1u << 23;  /* subnormal: renormalize through a subtraction */
        o = f_bits(bits_f(o) - bits_f(113u << 23));
    }
    return bits_f(o | (uint32_t)(h & 0x8000) << 16);
}

/* ---- kernels: scores of rows [0, n) against one query ----
 * Legend: n rows, d their length; rows (n, d) in the matrix's precision,
 * q (d) fp32, out (n). */

static void dot_f32_c(float *out, const float *rows, const float *q, size_t n,
                      int d)
{
    for (size_t r = 0; r < n; r++) {
        const float *a = rows + r * (size_t)d;
        float s = 0;
        for (int i = 0; i < d; i++)
            s += a[i] * q[i];
        out[r] = s;
    }
}

static void dot_f16_c(float *out, const uint16_t *rows, const float *q,
                      size_t n, int d)
{
    for (size_t r = 0; r < n; r++) {
        const uint16_t *a = rows + r * (size_t)d;
        float s = 0;
        for (int i = 0; i < d; i++)
            s += idx_f16_to_f32(a[i]) * q[i];
        out[r] = s;
    }
}

static void dot_i8_c(float *out, const int8_t *rows, const float *scale,
                     const float *q, size_t n, int d)
{
    for (size_t r = 0; r < n; r++) {
        const int8_t *a = rows + r * (size_t)d;
        float s = 0;
        for (int i = 0; i < d; i++)
            s += (float)a[i] * q[i];
        out[r] = s * scale[r];
    }
}

static void to_f32_f16_c(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = idx_f16_to_f32(in[i]);
}

static void from_f32_f16_c(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = idx_f32_to_f16(in[i]);
}

#ifdef IDX_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
                          _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four accumulators of eight: enough independent FMAs in flight to cover
 * their latency, so that the loads are the limit. */
AVX2 static void dot_f32_avx2(float *out, const float *rows, const float *q,
                              size_t n, int d)
{
    for (size_t r = 0; r < n; r++) {
        const float *a = rows + r * (size_t)d;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
        for (; i + 32 <= d; i += 32) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                                 _mm256_loadu_ps(q + i), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                                 _mm256_loadu_ps(q + i + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
                                 _mm256_loadu_ps(q + i + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
                                 _mm256_loadu_ps(q + i + 24), s3);
        }
        for (; i + 8 <= d; i += 8)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                                 _mm256_loadu_ps(q + i), s0);
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1),
                                      _mm256_add_ps(s2, s3)));
        for (; i < d; i++)
            s += a[i] * q[i];
        out[r] = s;
    }
}

AVX2 static void dot_f16_avx2(float *out, const uint16_t *rows,
                              const float *q, size_t n, int d)
{
    for (size_t r = 0; r < n; r++) {
        const uint16_t *a = rows + r * (size_t)d;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
#define H(o) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + (o))))
        for (; i + 32 <= d; i += 32) {
            s0 = _mm256_fmadd_ps(H(0), _mm256_loadu_ps(q + i), s0);
            s1 = _mm256_fmadd_ps(H(8), _mm256_loadu_ps(q + i + 8), s1);
            s2 = _mm256_fmadd_ps(H(16), _mm256_loadu_ps(q + i + 16), s2);
            s3 = _mm256_fmadd_ps(H(24), _mm256_loadu_ps(q + i + 24), s3);
        }
        for (; i + 8 <= d; i += 8)
            s0 = _mm256_fmadd_ps(H(0), _mm256_loadu_ps(q + i), s0);
#undef H
        float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1),
                                      _mm256_add_ps(s2, s3)));
        for (; i < d; i++)
            s += idx_f16_to_f32(a[i]) * q[i];
        out[r] = s;
    }
}

/* int8 rows against the query quantized to int16 (qs its scale):
 * vpmaddwd multiplies and pairs 16 elements per instruction, twice what
 * converting to float and FMA manage, which matters because int8 reads so
 * few bytes that the arithmetic, not memory, would set the pace. The
 * query's scale keeps every int32 sum below 2^31 (see quantize_query). */
AVX2 static void dot_i8_avx2(float *out, const int8_t *rows,
                             const float *scale, const int16_t *q, float qs,
                             size_t n, int d)
{
    for (size_t r = 0; r < n; r++) {
        const int8_t *a = rows + r * (size_t)d;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        int i = 0;
#define W(o) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i + (o))))
#define Q(o) _mm256_loadu_si256((const __m256i *)(q + i + (o)))
        for (; i + 32 <= d; i += 32) {
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(W(0), Q(0)));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(W(16), Q(16)));
        }
        for (; i + 16 <= d; i += 16)
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(W(0), Q(0)));
#undef W
#undef Q
        __m256i s = _mm256_add_epi32(s0, s1);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s),
                                  _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        int32_t t = _mm_cvtsi128_si32(h);
        for (; i < d; i++)
            t += (int32_t)a[i] * q[i];
        out[r] = (float)t * qs * scale[r];
    }
}

/* int8 rows to fp32, scaled: the batched search's conversion before
 * sgemm. */
AVX2 static void rows_i8_avx2(float *out, const int8_t *in,
                              const float *scale, size_t n, size_t d)
{
    for (size_t r = 0; r < n; r++) {
        __m256 s = _mm256_set1_ps(scale[r]);
        const int8_t *a = in + r * d;
        float *o = out + r * d;
        size_t i = 0;
        for (; i + 8 <= d; i += 8)
            _mm256_storeu_ps(o + i,
                             _mm256_mul_ps(s, _mm256_cvtepi32_ps(
                                                  _mm256_cvtepi8_epi32(
                                                      _mm_loadl_epi64(
                                                          (const __m128i *)(a + i))))));
        for (; i < d; i++)
            o[i] = (float)a[i] * scale[r];
    }
}

AVX2 static void to_f32_f16_avx2(float *out, const uint16_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                      (const __m128i *)(in + i))));
    for (; i < n; i++)
        out[i] = idx_f16_to_f32(in[i]);
}

AVX2 static void from_f32_f16_avx2(uint16_t *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i),
                                         _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        out[i] = idx_f32_to_f16(in[i]);
}

static int have_avx2(void) { return cpu_avx2() && cpu_get()->f16c; }
#endif

/* The environment variable IDX_NO_SIMD=1 forces the plain C kernels, so
 * that tests can check both paths on one machine. Read at each search
 * (a search is long; getenv is not). */
static int use_simd(void)
{
#ifdef IDX_X86
    const char *e = getenv("IDX_NO_SIMD");
    return have_avx2() && !(e && e[0] == '1');
#else
    return 0;
#endif
}

/* q16 / qs: the query quantized for the int8 kernel (quantize_query), or
 * NULL. */
static void dot_rows(const idx_matrix *m, float *out, size_t r0, size_t n,
                     const float *q, const int16_t *q16, float qs, int simd)
{
    int d = m->dim;
#ifdef IDX_X86
    if (simd) {
        if (m->prec == IDX_FP32)
            dot_f32_avx2(out, (const float *)m->data + r0 * (size_t)d, q, n,
                         d);
        else if (m->prec == IDX_FP16)
            dot_f16_avx2(out, (const uint16_t *)m->data + r0 * (size_t)d, q,
                         n, d);
        else if (q16)
            dot_i8_avx2(out, (const int8_t *)m->data + r0 * (size_t)d,
                        m->scale + r0, q16, qs, n, d);
        else
            dot_i8_c(out, (const int8_t *)m->data + r0 * (size_t)d,
                     m->scale + r0, q, n, d);
        return;
    }
#endif
    if (m->prec == IDX_FP32)
        dot_f32_c(out, (const float *)m->data + r0 * (size_t)d, q, n, d);
    else if (m->prec == IDX_FP16)
        dot_f16_c(out, (const uint16_t *)m->data + r0 * (size_t)d, q, n, d);
    else
        dot_i8_c(out, (const int8_t *)m->data + r0 * (size_t)d, m->scale + r0,
                 q, n, d);
}

/* Rows [r0, r0 + n) as fp32 into out (n, d); int8 rows are scaled. */
static void rows_f32(const idx_matrix *m, float *out, size_t r0, size_t n,
                     int simd)
{
    size_t d = (size_t)m->dim;
    if (m->prec == IDX_FP16) {
        const uint16_t *in = (const uint16_t *)m->data + r0 * d;
#ifdef IDX_X86
        if (simd) {
            to_f32_f16_avx2(out, in, n * d);
            return;
        }
#endif
        to_f32_f16_c(out, in, n * d);
    } else {
        const int8_t *in = (const int8_t *)m->data + r0 * d;
#ifdef IDX_X86
        if (simd) {
            rows_i8_avx2(out, in, m->scale + r0, n, d);
            return;
        }
#endif
        for (size_t r = 0; r < n; r++) {
            float s = m->scale[r0 + r];
            for (size_t i = 0; i < d; i++)
                out[r * d + i] = (float)in[r * d + i] * s;
        }
    }
}

/* Writes one fp32 vector into row r in the matrix's precision. */
static void store_row(idx_matrix *m, size_t r, const float *v)
{
    size_t d = (size_t)m->dim;
    if (m->prec == IDX_FP32) {
        memcpy((float *)m->data + r * d, v, d * sizeof *v);
    } else if (m->prec == IDX_FP16) {
        uint16_t *o = (uint16_t *)m->data + r * d;
#ifdef IDX_X86
        if (use_simd())
            from_f32_f16_avx2(o, v, d);
        else
#endif
            from_f32_f16_c(o, v, d);
    } else {
        /* Symmetric, one scale per row: the largest magnitude maps to 127,
         * so each row keeps its full 8 bits whatever its norm. */
        float mx = 0;
        for (size_t i = 0; i < d; i++)
            mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
        float s = mx > 0 ? mx / 127.0f : 0.0f;
        int8_t *o = (int8_t *)m->data + r * d;
        for (size_t i = 0; i < d; i++) {
            long q = s > 0 ? lrintf(v[i] / s) : 0;
            o[i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
        m->scale[r] = s;
    }
    if (m->f32)
        memcpy(m->f32 + r * d, v, d * sizeof *v);
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
        store_row(t->m, t->rows[i], t->vecs + i * (size_t)t->m->dim);
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
            store_row(m, rows[i], vecs + (size_t)i * (size_t)m->dim);
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

/* The query as int16 for the int8 kernel: the largest magnitude maps to
 * at most 32767, less for long vectors so that 127 * qmax * d, the
 * largest sum a row can reach, stays below 2^31. Returns the scale (0
 * for a zero query). */
static float quantize_query(int16_t *out, const float *q, int d)
{
    float mx = 0;
    for (int i = 0; i < d; i++)
        mx = fabsf(q[i]) > mx ? fabsf(q[i]) : mx;
    long qmax = 2147483647L / (127L * d);
    if (qmax > 32767)
        qmax = 32767;
    float s = mx > 0 ? mx / (float)qmax : 0.0f;
    for (int i = 0; i < d; i++) {
        long v = s > 0 ? lrintf(q[i] / s) : 0;
        out[i] = (int16_t)(v > qmax ? qmax : v < -qmax ? -qmax : v);
    }
    return s;
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
        qs = quantize_query(q16, j->q, m->dim);
    }
    for (size_t r = j->r0; r < j->r1; r += BLOCK_ROWS) {
        size_t b = j->r1 - r < BLOCK_ROWS ? j->r1 - r : BLOCK_ROWS;
        if (nq == 1) {
            dot_rows(m, scores, r, b, j->q, q16, qs, j->simd);
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
            rows_f32(m, a, r, b, j->simd);
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

static float dot_f32_exact(const float *a, const float *b, int d, int simd)
{
    float s = 0;
#ifdef IDX_X86
    if (simd) {
        dot_f32_avx2(&s, a, b, 1, d);
        return s;
    }
#endif
    dot_f32_c(&s, a, b, 1, d);
    return s;
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

    int simd = use_simd();
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
                        s = dot_f32_exact(x, qv, m->dim, simd);
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
