/*
 * The int8 linear layer of the lower-precision mode (VIT_PRECISION_INT8).
 *
 * Weights are quantized once, at load, per output channel and symmetric
 * (w ~ scale[n] * q, q in [-127, 127]), and packed into the layout the
 * kernel reads. Activations are quantized per row (token) just before each
 * product, asymmetric (x ~ s * (u - z), u in [0, 255]), so that the one
 * sign a row's values mostly have (after GELU, say) does not waste half of
 * the range. The product runs in int32, exactly, then
 *
 *     out[m][n] = s[m] * scale[n] * (sum_k u[m][k] q[n][k] - z[m] colsum[n])
 *                 + bias[n]
 *
 * Four kernels compute the same integers, picked from the CPU table
 * (cpu/cpu.h, so VIT_ISA caps them as it caps every kernel):
 *
 *   - AVX-512 VNNI: vpdpbusd (uint8 x int8, four products summed into each
 *     int32 lane, never saturating) on 16 lanes;
 *   - AVX-VNNI: the same instruction on 8 lanes (Alder Lake, Zen 5);
 *   - AVX2: no byte product is exact (vpmaddubsw saturates its int16 pair
 *     sums: 255 * 127 * 2 > 32767), so both sides are widened to int16 and
 *     vpmaddwd sums pairs into int32 lanes, exactly;
 *   - portable C elsewhere.
 *
 * All four read the one packed layout, so the resident model is the same
 * whichever runs. The quantization of activations and the epilogue have a
 * copy per path too, giving the same bits.
 *
 * Dimension legend: M rows (tokens), N output features, K input features;
 * Np, Kp: N and K padded to the kernel's tile and to whole groups of 4.
 */
#include "vit/vit_impl.h"

#include <math.h>
#include <string.h>

#include "cpu/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VIT_QX86 1
#endif

/* The paths must round alike: clang contracts a * b + c within an
 * expression into an FMA where the target has one (GCC does not in ISO C
 * mode). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Rows of an A chunk kept in cache while every column panel passes over it
 * (its bytes, Kp per row). */
#define QCHUNK_BYTES (192 * 1024)

static size_t pad4(int k) { return ((size_t)k + 3) & ~(size_t)3; }

size_t vit__qact_stride(int K)
{
    /* Rows start 64-byte aligned, so a row's groups never split a line. */
    return ((size_t)K + 63) & ~(size_t)63;
}

vit_status vit__qweight_pack(vit__qweight *q, const float *const *parts,
                             const float *const *biases, int nparts,
                             int Npart, int K, vit_error *err)
{
    memset(q, 0, sizeof *q);
    int N = Npart * nparts;
    int Np = (N + VIT_QNR - 1) / VIT_QNR * VIT_QNR;
    size_t Kp = pad4(K);
    q->N = N;
    q->K = K;
    q->Np = Np;
    q->Kp = (int)Kp;
    q->w = aligned_alloc(64, (size_t)Np * Kp);
    q->scale = calloc((size_t)Np, sizeof *q->scale);
    q->colsum = calloc((size_t)Np, sizeof *q->colsum);
    int any_bias = 0;
    for (int p = 0; p < nparts; p++)
        any_bias |= biases && biases[p];
    q->bias = any_bias ? calloc((size_t)Np, sizeof *q->bias) : NULL;
    if (!q->w || !q->scale || !q->colsum || (any_bias && !q->bias)) {
        vit__qweight_free(q);
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory for int8 weights (%d x %d)", N, K);
    }
    memset(q->w, 0, (size_t)Np * Kp);
    for (int n = 0; n < N; n++) {
        int p = n / Npart;
        const float *row = parts[p] + (size_t)(n - p * Npart) * K;
        float amax = 0;
        for (int k = 0; k < K; k++)
            amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
        float sc = amax > 0 ? amax / 127.0f : 1.0f;
        float inv = 1.0f / sc;
        /* Panel n / NR; inside it, group k / 4 holds NR lanes of 4 bytes. */
        int8_t *panel = q->w + (size_t)(n / VIT_QNR) * Kp * VIT_QNR;
        int lane = n % VIT_QNR;
        int32_t sum = 0;
        for (int k = 0; k < K; k++) {
            /* Written so that NaN becomes a number (-127), not UB. */
            float v = nearbyintf(row[k] * inv);
            v = v >= -127.0f ? (v <= 127.0f ? v : 127.0f) : -127.0f;
            int8_t iv = (int8_t)v;
            panel[(size_t)(k / 4) * VIT_QNR * 4 + (size_t)lane * 4 + k % 4] =
                iv;
            sum += iv;
        }
        q->scale[n] = sc;
        q->colsum[n] = sum;
        if (q->bias && biases[p])
            q->bias[n] = biases[p][n - p * Npart];
    }
    return VIT_OK;
}

vit_status vit__qweight_onednn(vit__qweight *q, vit_error *err)
{
    /* Unpacked from the kernel's panels: row n of (Np, Kp). */
    int8_t *plain = malloc((size_t)q->Np * q->Kp);
    if (!plain)
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory for int8 weights (%d x %d)", q->N,
                         q->K);
    for (int n = 0; n < q->Np; n++) {
        const int8_t *panel = q->w + (size_t)(n / VIT_QNR) * q->Kp * VIT_QNR;
        for (int k = 0; k < q->Kp; k++)
            plain[(size_t)n * q->Kp + k] =
                panel[(size_t)(k / 4) * VIT_QNR * 4 +
                      (size_t)(n % VIT_QNR) * 4 + k % 4];
    }
    vit_status st = vit__bmat_pack_int8(&q->bm, plain, q->Np, q->Kp, err);
    free(plain);
    if (st == VIT_OK) {
        free(q->w);
        q->w = NULL;
    }
    return st;
}

void vit__qweight_free(vit__qweight *q)
{
    if (!q)
        return;
    vit__bmat_free(q->bm);
    free(q->w);
    free(q->scale);
    free(q->colsum);
    free(q->bias);
    memset(q, 0, sizeof *q);
}

/* A row's scale and zero point: its range always holds 0, so that zero
 * padding and exact zeros stay exact. */
static void row_range(float lo, float hi, float *scale, float *inv,
                      int32_t *zero)
{
    lo = lo <= 0 ? lo : 0; /* NaN (from NaN inputs) counts as 0 */
    hi = hi >= 0 ? hi : 0;
    float s = (hi - lo) / 255.0f;
    if (!(s > 0))
        s = 1.0f;
    float z = nearbyintf(-lo * (1.0f / s));
    *scale = s;
    *inv = 1.0f / s;
    /* Written so that NaN (an infinite lo) becomes a number, not UB. */
    *zero = (int32_t)(z <= 255.0f ? z : 255.0f);
}

/* Each path quantizes a row in two steps: its range (lo and hi lowered /
 * raised to x[0..n)'s least and greatest; a NaN changes neither), then
 * its bytes
 *
 *     u = clamp(round(x * inv) + z, 0, 255)
 *
 * rounding half to even (nearbyintf under the default rounding mode; the
 * vector conversions do the same). x * inv is first clamped to [-256,
 * 256], which changes no byte but keeps the vector conversions in range
 * (out of range they give INT_MIN, not a saturated value): the paths then
 * agree on every input, a range that does not hold the row, an infinite
 * inv or NaN (which becomes 0) included. */
typedef void (*range_fn)(const float *x, int n, float *lo, float *hi);
typedef void (*bytes_fn)(uint8_t *u, const float *x, int n, float inv,
                         int32_t z);

#define QCLAMP 256.0f

static void range_c(const float *x, int n, float *lo, float *hi)
{
    for (int k = 0; k < n; k++) {
        *lo = x[k] < *lo ? x[k] : *lo;
        *hi = x[k] > *hi ? x[k] : *hi;
    }
}

static void bytes_c(uint8_t *u, const float *x, int n, float inv, int32_t z)
{
    for (int k = 0; k < n; k++) {
        float v = x[k] * inv;
        v = v >= -QCLAMP ? (v <= QCLAMP ? v : QCLAMP) : -QCLAMP;
        v = nearbyintf(v) + (float)z;
        u[k] = (uint8_t)(v >= 0 ? (v <= 255.0f ? (int)v : 255) : 0);
    }
}

#ifdef VIT_QX86
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
range_avx512(const float *x, int n, float *lo, float *hi)
{
    __m512 vlo = _mm512_set1_ps(*lo), vhi = _mm512_set1_ps(*hi);
    for (int k = 0; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? (__mmask16)0xffff
                                  : (__mmask16)((1u << (n - k)) - 1);
        /* masked-off lanes keep vlo and vhi */
        vlo = _mm512_mask_min_ps(vlo, m, _mm512_maskz_loadu_ps(m, x + k),
                                 vlo); /* a NaN in x keeps vlo */
        vhi = _mm512_mask_max_ps(vhi, m, _mm512_maskz_loadu_ps(m, x + k),
                                 vhi);
    }
    *lo = _mm512_reduce_min_ps(vlo);
    *hi = _mm512_reduce_max_ps(vhi);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
bytes_avx512(uint8_t *u, const float *x, int n, float inv, int32_t z)
{
    __m512 vinv = _mm512_set1_ps(inv), cl = _mm512_set1_ps(QCLAMP),
           cl_neg = _mm512_set1_ps(-QCLAMP);
    __m512i vz = _mm512_set1_epi32(z), v0 = _mm512_setzero_si512(),
            v255 = _mm512_set1_epi32(255);
    for (int k = 0; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? (__mmask16)0xffff
                                  : (__mmask16)((1u << (n - k)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vinv);
        /* max before min: a NaN takes the second operand, -256 */
        v = _mm512_min_ps(_mm512_max_ps(v, cl_neg), cl);
        __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
        q = _mm512_min_epi32(_mm512_max_epi32(q, v0), v255);
        _mm_mask_storeu_epi8(u + k, m, _mm512_cvtepi32_epi8(q));
    }
}

__attribute__((target("avx2"))) static void
range_avx2(const float *x, int n, float *lo, float *hi)
{
    __m256 vlo = _mm256_set1_ps(*lo), vhi = _mm256_set1_ps(*hi);
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        vlo = _mm256_min_ps(v, vlo); /* a NaN in v keeps vlo */
        vhi = _mm256_max_ps(v, vhi);
    }
    float l8[8], h8[8];
    _mm256_storeu_ps(l8, vlo);
    _mm256_storeu_ps(h8, vhi);
    range_c(l8, 8, lo, hi);
    range_c(h8, 8, lo, hi);
    range_c(x + k, n - k, lo, hi);
}

/* 8 floats of x times inv, clamped, rounded, plus the zero point. */
__attribute__((target("avx2"))) static inline __m256i
quantize8_avx2(const float *x, __m256 inv, __m256i z)
{
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), inv);
    /* max before min: a NaN takes the second operand, -256 */
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-QCLAMP)),
                      _mm256_set1_ps(QCLAMP));
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), z);
}

/* 32 at a time; the row's stride (n rounded up to 64) leaves room for the
 * last 32 bytes, which vit__quantize_rows then clears past n. */
__attribute__((target("avx2"))) static void
bytes_avx2(uint8_t *u, const float *x, int n, float inv, int32_t z)
{
    __m256 vinv = _mm256_set1_ps(inv);
    __m256i vz = _mm256_set1_epi32(z);
    /* packs_epi32's int16 saturation, then packus_epi16's uint8 one,
     * clamp to [0, 255] as the other paths do; both pack within 128-bit
     * lanes, which the permutation undoes. */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int k = 0; k < n; k += 32) {
        float t[32];
        const float *xk = x + k;
        if (n - k < 32) {
            memset(t, 0, sizeof t);
            memcpy(t, xk, (size_t)(n - k) * sizeof *t);
            xk = t;
        }
        __m256i q01 = _mm256_packs_epi32(quantize8_avx2(xk, vinv, vz),
                                         quantize8_avx2(xk + 8, vinv, vz));
        __m256i q23 = _mm256_packs_epi32(quantize8_avx2(xk + 16, vinv, vz),
                                         quantize8_avx2(xk + 24, vinv, vz));
        __m256i b = _mm256_permutevar8x32_epi32(
            _mm256_packus_epi16(q01, q23), order);
        _mm256_storeu_si256((__m256i *)(void *)(u + k), b);
    }
}
#endif

/* np tiles c (VIT_QMR x VIT_QNR each, one after another) = rows a[0..QMR)
 * (k4 groups of 4 bytes each) times np packed panels from b (k4 groups of
 * QNR x 4 each, one after another). Rows are read in whole 16-byte pieces
 * past k4 * 4, up to their stride (vit__qact_stride). */
typedef void (*qkernel_fn)(const uint8_t *const *a, const int8_t *b, int k4,
                           int np, int32_t *c);

/* Bytes of a panel's group of 4: QNR columns x 4. */
#define QGROUP (VIT_QNR * 4)
/* The most panels a kernel is given at a time. */
#define QPANELS 4

static void qkernel_c(const uint8_t *const *a, const int8_t *b, int k4,
                      int np, int32_t *c)
{
    for (int p = 0; p < np; p++) {
        const int8_t *panel = b + (size_t)p * k4 * QGROUP;
        for (int r = 0; r < VIT_QMR; r++) {
            int32_t acc[VIT_QNR] = {0};
            const uint8_t *x = a[r];
            for (int g = 0; g < k4; g++) {
                const int8_t *w = panel + (size_t)g * QGROUP;
                for (int j = 0; j < VIT_QNR; j++)
                    acc[j] += x[4 * g] * w[4 * j] +
                              x[4 * g + 1] * w[4 * j + 1] +
                              x[4 * g + 2] * w[4 * j + 2] +
                              x[4 * g + 3] * w[4 * j + 3];
            }
            memcpy(c + (p * VIT_QMR + r) * VIT_QNR, acc, sizeof acc);
        }
    }
}

#ifdef VIT_QX86
/* 8 rows x 48 columns: 24 accumulators, 3 panel vectors, one broadcast. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
qkernel_avx512vnni(const uint8_t *const *a, const int8_t *b, int k4, int np,
                   int32_t *c)
{
    /* b runs on from one panel into the next */
    for (int p = 0; p < np; p++, c += VIT_QMR * VIT_QNR) {
#define QROW(r)                                                            \
    __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0,           \
            c##r##2 = c##r##0;                                             \
    const uint8_t *a##r = a[r];
        QROW(0) QROW(1) QROW(2) QROW(3) QROW(4) QROW(5) QROW(6) QROW(7)
#undef QROW
        for (int g = 0; g < k4; g++) {
            __m512i b0 = _mm512_load_si512((const void *)b);
            __m512i b1 = _mm512_load_si512((const void *)(b + 64));
            __m512i b2 = _mm512_load_si512((const void *)(b + 128));
            b += QGROUP;
#define QSTEP(r)                                                           \
    {                                                                      \
        int32_t v_;                                                        \
        memcpy(&v_, a##r + 4 * g, 4);                                      \
        __m512i x_ = _mm512_set1_epi32(v_);                                \
        c##r##0 = _mm512_dpbusd_epi32(c##r##0, x_, b0);                    \
        c##r##1 = _mm512_dpbusd_epi32(c##r##1, x_, b1);                    \
        c##r##2 = _mm512_dpbusd_epi32(c##r##2, x_, b2);                    \
    }
            QSTEP(0) QSTEP(1) QSTEP(2) QSTEP(3) QSTEP(4) QSTEP(5) QSTEP(6)
            QSTEP(7)
#undef QSTEP
        }
#define QSTORE(r)                                                          \
    _mm512_storeu_si512((void *)(c + (r) * 48), c##r##0);                  \
    _mm512_storeu_si512((void *)(c + (r) * 48 + 16), c##r##1);             \
    _mm512_storeu_si512((void *)(c + (r) * 48 + 32), c##r##2);
        QSTORE(0) QSTORE(1) QSTORE(2) QSTORE(3) QSTORE(4) QSTORE(5)
        QSTORE(6) QSTORE(7)
#undef QSTORE
    }
}

/* The same on 8 lanes, a sixth of the tile at a time: 4 rows x 16
 * columns, 8 accumulators, 2 panel vectors and one broadcast (with 12
 * accumulators and 3 panel vectors, all 16 registers, clang spills one). */
__attribute__((target("avx2,avxvnni"))) static void
qkernel_avxvnni(const uint8_t *const *a, const int8_t *b, int k4, int np,
                int32_t *c)
{
    for (int t = 0; t < 6 * np; t++) {
        int p = t / 6, r0 = 4 * (t / 3 % 2), n0 = 16 * (t % 3);
        const int8_t *w = b + (size_t)p * k4 * QGROUP + 4 * n0;
        int32_t *ct = c + (p * VIT_QMR + r0) * VIT_QNR + n0;
#define QROW(r)                                                            \
    __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = c##r##0;           \
    const uint8_t *a##r = a[r0 + r];
        QROW(0) QROW(1) QROW(2) QROW(3)
#undef QROW
        for (int g = 0; g < k4; g++, w += QGROUP) {
            __m256i b0 = _mm256_load_si256((const __m256i *)(const void *)w);
            __m256i b1 =
                _mm256_load_si256((const __m256i *)(const void *)(w + 32));
#define QSTEP(r)                                                           \
    {                                                                      \
        int32_t v_;                                                        \
        memcpy(&v_, a##r + 4 * g, 4);                                      \
        __m256i x_ = _mm256_set1_epi32(v_);                                \
        c##r##0 = _mm256_dpbusd_avx_epi32(c##r##0, x_, b0);                \
        c##r##1 = _mm256_dpbusd_avx_epi32(c##r##1, x_, b1);                \
    }
            QSTEP(0) QSTEP(1) QSTEP(2) QSTEP(3)
#undef QSTEP
        }
#define QSTORE(r)                                                          \
    _mm256_storeu_si256((__m256i *)(void *)(ct + (r) * 48), c##r##0);      \
    _mm256_storeu_si256((__m256i *)(void *)(ct + (r) * 48 + 8), c##r##1);
        QSTORE(0) QSTORE(1) QSTORE(2) QSTORE(3)
#undef QSTORE
    }
}

/* Groups of 4 bytes of the rows widened at a time: 8 rows x 64 groups x
 * 32 bytes, 16 KB on the stack, read again for each column quad; the
 * tiles' running sums (3 KB a panel) are read and written once a slice.
 * (On ViT-B/16's products 64 was 3% faster than 32, and 128 slower.) */
#define QSLICE 64
/* AVX2: a panel vector of 4 columns x 4 bytes, sign-extended to 16 int16,
 * times a row's 4 bytes zero-extended to int16 and repeated 4 times:
 * vpmaddwd sums each column's products in pairs, k 0 + 1 and 2 + 3 in
 * neighbouring int32 lanes (at most 2 * 255 * 127, exact), which are added
 * at the end. The rows are widened and repeated into 32-byte vectors once
 * per slice of k, so that vpmaddwd reads them from memory: a broadcast
 * would cost an ALU operation per product (on AMD's cores too), and
 * vpmaddwd + vpaddd per 16 products already fill the ALUs. The column
 * quads of the tiles pass over the slice one after another, 8 rows each,
 * so every panel vector serves 8 products. */
__attribute__((target("avx2"))) static void
qkernel_avx2(const uint8_t *const *a, const int8_t *b, int k4, int np,
             int32_t *c)
{
    enum { QUADS = VIT_QNR / 4 };
    __m256i aw[QSLICE][VIT_QMR];
    __m256i part[QPANELS * QUADS][VIT_QMR];
    /* Byte i of each 16 to int16 lanes (a zero byte above each): one
     * group's 4 bytes, 4 times over. */
    const __m256i spread[4] = {
        _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3,
                         -1, 0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1,
                         3, -1),
        _mm256_setr_epi8(4, -1, 5, -1, 6, -1, 7, -1, 4, -1, 5, -1, 6, -1, 7,
                         -1, 4, -1, 5, -1, 6, -1, 7, -1, 4, -1, 5, -1, 6, -1,
                         7, -1),
        _mm256_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, 8, -1, 9, -1, 10, -1,
                         11, -1, 8, -1, 9, -1, 10, -1, 11, -1, 8, -1, 9, -1,
                         10, -1, 11, -1),
        _mm256_setr_epi8(12, -1, 13, -1, 14, -1, 15, -1, 12, -1, 13, -1, 14,
                         -1, 15, -1, 12, -1, 13, -1, 14, -1, 15, -1, 12, -1,
                         13, -1, 14, -1, 15, -1)};
    int nq = np * QUADS;
    for (int s = 0; s < nq; s++)
        for (int r = 0; r < VIT_QMR; r++)
            part[s][r] = _mm256_setzero_si256();
    for (int g0 = 0; g0 < k4; g0 += QSLICE) {
        int ng = k4 - g0 < QSLICE ? k4 - g0 : QSLICE;
        for (int r = 0; r < VIT_QMR; r++)
            for (int g = 0; g < ng; g += 4) {
                __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    (const __m128i *)(const void *)(a[r] + 4 * (g0 + g))));
                for (int j = 0; j < 4; j++)
                    aw[g + j][r] = _mm256_shuffle_epi8(t, spread[j]);
            }
        for (int s = 0; s < nq; s++) {
            const int8_t *w = b + (size_t)(s / QUADS) * k4 * QGROUP +
                              (size_t)g0 * QGROUP + 16 * (s % QUADS);
            __m256i c0 = part[s][0], c1 = part[s][1], c2 = part[s][2],
                    c3 = part[s][3], c4 = part[s][4], c5 = part[s][5],
                    c6 = part[s][6], c7 = part[s][7];
            for (int g = 0; g < ng; g++, w += QGROUP) {
                __m256i v = _mm256_cvtepi8_epi16(
                    _mm_load_si128((const __m128i *)(const void *)w));
                const __m256i *x = aw[g];
                c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(v, x[0]));
                c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(v, x[1]));
                c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(v, x[2]));
                c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(v, x[3]));
                c4 = _mm256_add_epi32(c4, _mm256_madd_epi16(v, x[4]));
                c5 = _mm256_add_epi32(c5, _mm256_madd_epi16(v, x[5]));
                c6 = _mm256_add_epi32(c6, _mm256_madd_epi16(v, x[6]));
                c7 = _mm256_add_epi32(c7, _mm256_madd_epi16(v, x[7]));
            }
            part[s][0] = c0, part[s][1] = c1, part[s][2] = c2;
            part[s][3] = c3, part[s][4] = c4, part[s][5] = c5;
            part[s][6] = c6, part[s][7] = c7;
        }
    }
    /* Neighbouring lanes summed, two rows at a time: hadd gives row r's
     * columns 0 1, row r + 1's 0 1 | r's 2 3, r + 1's 2 3. */
    for (int s = 0; s < nq; s++) {
        int32_t *cs = c + (s / QUADS) * VIT_QMR * VIT_QNR + 4 * (s % QUADS);
        for (int r = 0; r < VIT_QMR; r += 2) {
            __m256i h = _mm256_permute4x64_epi64(
                _mm256_hadd_epi32(part[s][r], part[s][r + 1]),
                _MM_SHUFFLE(3, 1, 2, 0));
            _mm_storeu_si128((__m128i *)(void *)(cs + r * VIT_QNR),
                             _mm256_castsi256_si128(h));
            _mm_storeu_si128((__m128i *)(void *)(cs + (r + 1) * VIT_QNR),
                             _mm256_extracti128_si256(h, 1));
        }
    }
}
#endif

/* Rows [m0, m0 + mr) x columns [n0, n0 + QNR) of the product, from its
 * int32 tile, scaled back, biased, and stored (or added) where the output
 * spec says; columns past N are padding. Compiled once per path for the
 * vectorizer; the arithmetic rounds alike in each. */
typedef void (*epilogue_fn)(const vit__qout *o, const vit__qweight *q,
                            const int32_t *c, size_t ldc, int m0, int mr,
                            int n0, const float *as, const int32_t *az);

/* c: the tile's sums, rows ldc apart. */
static inline __attribute__((always_inline)) void
epilogue_body(const vit__qout *o, const vit__qweight *q, const int32_t *c,
              size_t ldc, int m0, int mr, int n0, const float *as,
              const int32_t *az)
{
    int nend = n0 + VIT_QNR < q->N ? n0 + VIT_QNR : q->N;
    for (int r = 0; r < mr; r++) {
        int i = m0 + r;
        float sa = as[i];
        int32_t za = az[i];
        const int32_t *ci = c + (size_t)r * ldc;
        /* Runs of columns inside one output segment. */
        for (int n = n0; n < nend;) {
            int seg = n / o->seg;
            int len = ((seg + 1) * o->seg < nend ? (seg + 1) * o->seg : nend) - n;
            float *dst = o->out[seg] + (size_t)i * o->ld + (n - seg * o->seg);
            const float *sc = q->scale + n, *bi = q->bias ? q->bias + n : NULL;
            const int32_t *cs = q->colsum + n, *cn = ci + (n - n0);
            if (o->accumulate) {
                for (int j = 0; j < len; j++)
                    dst[j] += (float)(cn[j] - za * cs[j]) * (sa * sc[j]) +
                              (bi ? bi[j] : 0.0f);
            } else {
                for (int j = 0; j < len; j++)
                    dst[j] = (float)(cn[j] - za * cs[j]) * (sa * sc[j]) +
                             (bi ? bi[j] : 0.0f);
            }
            if (o->act)
                vit__activation(dst, (size_t)len, (vit__act)(o->act - 1));
            if (o->lo) {
                float lo = o->lo[i], hi = o->hi[i];
                for (int j = 0; j < len; j++) {
                    lo = dst[j] < lo ? dst[j] : lo;
                    hi = dst[j] > hi ? dst[j] : hi;
                }
                o->lo[i] = lo;
                o->hi[i] = hi;
            }
            n += len;
        }
    }
}

#define QEPILOGUE(name, attr)                                              \
    attr static void name(const vit__qout *o, const vit__qweight *q,       \
                          const int32_t *c, size_t ldc, int m0, int mr,    \
                          int n0, const float *as, const int32_t *az)      \
    {                                                                      \
        epilogue_body(o, q, c, ldc, m0, mr, n0, as, az);                   \
    }
QEPILOGUE(epilogue_c, )
#ifdef VIT_QX86
QEPILOGUE(epilogue_avx2, __attribute__((target("avx2"))))
QEPILOGUE(epilogue_avx512, __attribute__((target("avx512f,avx512bw,avx512vl"))))
#endif
#undef QEPILOGUE

/* ---- the paths, and the choice among them ---- */

typedef struct {
    const char *name; /* as vit_int8_kernel says it */
    qkernel_fn kernel;
    int panels; /* the most the kernel is given at a time */
    range_fn range;
    bytes_fn bytes;
    epilogue_fn epilogue;
} qpath;

static const qpath qpaths[VIT_QPATH_COUNT] = {
    [VIT_QPATH_PORTABLE] = {"portable C", qkernel_c, 1, range_c, bytes_c,
                            epilogue_c},
#ifdef VIT_QX86
    /* the rows widened once serve 4 panels */
    [VIT_QPATH_AVX2] = {"AVX2", qkernel_avx2, QPANELS, range_avx2,
                        bytes_avx2, epilogue_avx2},
    [VIT_QPATH_AVXVNNI] = {"AVX-VNNI", qkernel_avxvnni, 1, range_avx2,
                           bytes_avx2, epilogue_avx2},
    [VIT_QPATH_AVX512VNNI] = {"AVX-512 VNNI", qkernel_avx512vnni, 1,
                              range_avx512, bytes_avx512, epilogue_avx512},
#endif
};

/* Whether the CPU table lets path p run here. */
static int path_runs(int p)
{
    switch (p) {
    case VIT_QPATH_PORTABLE: return 1;
#ifdef VIT_QX86
    case VIT_QPATH_AVX2: return cpu_avx2();
    case VIT_QPATH_AVXVNNI: return cpu_avxvnni();
    case VIT_QPATH_AVX512VNNI: return cpu_avx512vnni();
#endif
    default: return 0;
    }
}

static int forced = -1; /* a path the tests chose, or -1 */

int vit__qkernel_force_isa(int p)
{
    if (p >= 0 && !path_runs(p))
        return 0;
    forced = p < 0 ? -1 : p;
    return 1;
}

/* The best path the CPU table allows (it is read once per process). */
static const qpath *pick(void)
{
    if (forced >= 0)
        return &qpaths[forced];
    for (int p = VIT_QPATH_COUNT - 1; p > VIT_QPATH_PORTABLE; p--)
        if (path_runs(p))
            return &qpaths[p];
    return &qpaths[VIT_QPATH_PORTABLE];
}

const char *vit_int8_kernel(void)
{
    if (vit__int8_onednn())
        return cpu_amx_int8() ? "oneDNN AMX-INT8" : "oneDNN AVX-512 VNNI";
    return pick()->name;
}

void vit__quantize_rows(uint8_t *a, float *scale, int32_t *zero,
                        const float *in, int M, int K, const float *lo,
                        const float *hi)
{
    const qpath *path = pick();
    size_t lda = vit__qact_stride(K);
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * K;
        uint8_t *u = a + (size_t)i * lda;
        float rlo = 0, rhi = 0, inv;
        if (lo) {
            rlo = lo[i];
            rhi = hi[i];
        } else {
            path->range(x, K, &rlo, &rhi);
        }
        row_range(rlo, rhi, &scale[i], &inv, &zero[i]);
        path->bytes(u, x, K, inv, zero[i]);
        memset(u + K, 0, lda - (size_t)K);
    }
}

void vit__qlinear(const vit__qout *o, const uint8_t *a, const float *as,
                  const int32_t *az, const vit__qweight *q, int M)
{
    const qpath *path = pick();
    size_t lda = vit__qact_stride(q->K);
    int k4 = q->Kp / 4;
    int chunk = (int)(QCHUNK_BYTES / lda) / VIT_QMR * VIT_QMR;
    if (chunk < VIT_QMR)
        chunk = VIT_QMR;
    int32_t tile[QPANELS * VIT_QMR * VIT_QNR] __attribute__((aligned(64)));
    int np = path->panels;
    for (int mc = 0; mc < M; mc += chunk) {
        int mce = mc + chunk < M ? mc + chunk : M;
        for (int n0 = 0; n0 < q->Np; n0 += np * VIT_QNR) {
            const int8_t *panel = q->w + (size_t)n0 * q->Kp;
            int npc = (q->Np - n0) / VIT_QNR < np ? (q->Np - n0) / VIT_QNR : np;
            for (int m0 = mc; m0 < mce; m0 += VIT_QMR) {
                int mr = mce - m0 < VIT_QMR ? mce - m0 : VIT_QMR;
                /* A short block repeats its last row; those results are
                 * not stored. */
                const uint8_t *rows[VIT_QMR];
                for (int r = 0; r < VIT_QMR; r++)
                    rows[r] = a + (size_t)(m0 + (r < mr ? r : mr - 1)) * lda;
                path->kernel(rows, panel, k4, npc, tile);
                for (int p = 0; p < npc; p++)
                    path->epilogue(o, q, tile + p * VIT_QMR * VIT_QNR,
                                   VIT_QNR, m0, mr, n0 + p * VIT_QNR, as, az);
            }
        }
    }
}

void vit__qlinear_sums(const vit__qout *o, const int32_t *c, size_t ldc,
                       const float *as, const int32_t *az,
                       const vit__qweight *q, int M)
{
    const qpath *path = pick();
    for (int m0 = 0; m0 < M; m0 += VIT_QMR) {
        int mr = M - m0 < VIT_QMR ? M - m0 : VIT_QMR;
        for (int n0 = 0; n0 < q->N; n0 += VIT_QNR)
            path->epilogue(o, q, c + (size_t)m0 * ldc + n0, ldc, m0, mr, n0,
                           as, az);
    }
}
