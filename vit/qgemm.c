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
 * Two kernels compute the same integers: AVX-512 VNNI's vpdpbusd (uint8 x
 * int8, four products summed into each int32 lane, never saturating) where
 * the CPU has it, and portable C elsewhere.
 *
 * Dimension legend: M rows (tokens), N output features, K input features;
 * Np, Kp: N and K padded to the kernel's tile and to whole groups of 4.
 */
#include "vit/vit_impl.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VIT_HAVE_VNNI_KERNEL 1
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

void vit__qweight_free(vit__qweight *q)
{
    if (!q)
        return;
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
    *zero = (int32_t)(z > 255.0f ? 255.0f : z);
}

/* u = clamp(round(x / s) + z, 0, 255), rounding half to even (nearbyintf
 * under the default rounding mode; the vector conversion does the same). */
static void quantize_rows_c(uint8_t *a, float *scale, int32_t *zero,
                            const float *in, int M, int K, const float *rlo,
                            const float *rhi)
{
    size_t lda = vit__qact_stride(K);
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * K;
        uint8_t *u = a + (size_t)i * lda;
        float lo = 0, hi = 0, inv;
        if (rlo) {
            lo = rlo[i];
            hi = rhi[i];
        } else {
            for (int k = 0; k < K; k++) {
                lo = x[k] < lo ? x[k] : lo;
                hi = x[k] > hi ? x[k] : hi;
            }
        }
        row_range(lo, hi, &scale[i], &inv, &zero[i]);
        for (int k = 0; k < K; k++) {
            float v = nearbyintf(x[k] * inv) + (float)zero[i];
            u[k] = (uint8_t)(v >= 0 ? (v <= 255.0f ? (int)v : 255) : 0);
        }
        memset(u + K, 0, lda - (size_t)K);
    }
}

#ifdef VIT_HAVE_VNNI_KERNEL
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
quantize_rows_avx512(uint8_t *a, float *scale, int32_t *zero, const float *in,
                     int M, int K, const float *rlo, const float *rhi)
{
    size_t lda = vit__qact_stride(K);
    for (int i = 0; i < M; i++) {
        const float *x = in + (size_t)i * K;
        uint8_t *u = a + (size_t)i * lda;
        float inv;
        int k = 0;
        if (rlo) {
            row_range(rlo[i], rhi[i], &scale[i], &inv, &zero[i]);
        } else {
            __m512 vlo = _mm512_setzero_ps(), vhi = vlo;
            for (; k + 16 <= K; k += 16) {
                __m512 v = _mm512_loadu_ps(x + k);
                vlo = _mm512_min_ps(v, vlo); /* a NaN in v keeps vlo */
                vhi = _mm512_max_ps(v, vhi);
            }
            if (k < K) {
                __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
                __m512 v = _mm512_maskz_loadu_ps(m, x + k);
                vlo = _mm512_min_ps(v, vlo);
                vhi = _mm512_max_ps(v, vhi);
            }
            row_range(_mm512_reduce_min_ps(vlo), _mm512_reduce_max_ps(vhi),
                      &scale[i], &inv, &zero[i]);
        }
        __m512 vinv = _mm512_set1_ps(inv);
        __m512i vz = _mm512_set1_epi32(zero[i]), v0 = _mm512_setzero_si512(),
                v255 = _mm512_set1_epi32(255);
        for (k = 0; k < K; k += 16) {
            __mmask16 m = K - k >= 16 ? (__mmask16)0xffff
                                      : (__mmask16)((1u << (K - k)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, x + k);
            __m512i q = _mm512_add_epi32(
                _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), vz);
            q = _mm512_min_epi32(_mm512_max_epi32(q, v0), v255);
            _mm_mask_storeu_epi8(u + k, m, _mm512_cvtepi32_epi8(q));
        }
        memset(u + K, 0, lda - (size_t)K);
    }
}
#endif

/* c (VIT_QMR x VIT_QNR) = rows a[0..QMR) (k4 groups of 4 bytes each) times
 * a packed panel b (k4 groups of QNR x 4). */
typedef void (*qkernel_fn)(const uint8_t *const *a, const int8_t *b, int k4,
                           int32_t *c);

VIT_CLONES
static void qkernel_c(const uint8_t *const *a, const int8_t *b, int k4,
                      int32_t *c)
{
    for (int r = 0; r < VIT_QMR; r++) {
        int32_t acc[VIT_QNR] = {0};
        const uint8_t *x = a[r];
        for (int g = 0; g < k4; g++) {
            const int8_t *w = b + (size_t)g * VIT_QNR * 4;
            for (int j = 0; j < VIT_QNR; j++)
                acc[j] += x[4 * g] * w[4 * j] + x[4 * g + 1] * w[4 * j + 1] +
                          x[4 * g + 2] * w[4 * j + 2] +
                          x[4 * g + 3] * w[4 * j + 3];
        }
        memcpy(c + r * VIT_QNR, acc, sizeof acc);
    }
}

#ifdef VIT_HAVE_VNNI_KERNEL
/* 8 rows x 48 columns: 24 accumulators, 3 panel vectors, one broadcast. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
qkernel_vnni(const uint8_t *const *a, const int8_t *b, int k4, int32_t *c)
{
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
        b += 192;
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
    QSTORE(0) QSTORE(1) QSTORE(2) QSTORE(3) QSTORE(4) QSTORE(5) QSTORE(6)
    QSTORE(7)
#undef QSTORE
}
#endif

static int force_portable = -1; /* -1: not decided yet */

#ifdef VIT_HAVE_VNNI_KERNEL
static int cpu_has_vnni(void)
{
    static int has = -1; /* every thread finds the same answer */
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") &&
              __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512vnni");
    }
    return has;
}
#endif

void vit__quantize_rows(uint8_t *a, float *scale, int32_t *zero,
                        const float *in, int M, int K, const float *lo,
                        const float *hi)
{
#ifdef VIT_HAVE_VNNI_KERNEL
    if (force_portable != 1 && cpu_has_vnni()) {
        quantize_rows_avx512(a, scale, zero, in, M, K, lo, hi);
        return;
    }
#endif
    quantize_rows_c(a, scale, zero, in, M, K, lo, hi);
}

void vit__qkernel_force_portable(int on) { force_portable = on ? 1 : 0; }

static qkernel_fn pick_kernel(void)
{
#ifdef VIT_HAVE_VNNI_KERNEL
    if (force_portable != 1 && cpu_has_vnni())
        return qkernel_vnni;
#endif
    return qkernel_c;
}

const char *vit_int8_kernel(void)
{
    return pick_kernel() == qkernel_c ? "portable C" : "AVX-512 VNNI";
}

/* Rows [m0, m0 + mr) x columns [n0, n0 + QNR) of the product, from its
 * int32 tile, scaled back, biased, and stored (or added) where the output
 * spec says; columns past N are padding. */
VIT_CLONES
static void epilogue(const vit__qout *o, const vit__qweight *q,
                     const int32_t *c, int m0, int mr, int n0,
                     const float *as, const int32_t *az)
{
    int nend = n0 + VIT_QNR < q->N ? n0 + VIT_QNR : q->N;
    for (int r = 0; r < mr; r++) {
        int i = m0 + r;
        float sa = as[i];
        int32_t za = az[i];
        const int32_t *ci = c + r * VIT_QNR;
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

void vit__qlinear(const vit__qout *o, const uint8_t *a, const float *as,
                  const int32_t *az, const vit__qweight *q, int M)
{
    qkernel_fn kern = pick_kernel();
    size_t lda = vit__qact_stride(q->K);
    int k4 = q->Kp / 4;
    int chunk = (int)(QCHUNK_BYTES / lda) / VIT_QMR * VIT_QMR;
    if (chunk < VIT_QMR)
        chunk = VIT_QMR;
    int32_t tile[VIT_QMR * VIT_QNR] __attribute__((aligned(64)));
    for (int mc = 0; mc < M; mc += chunk) {
        int mce = mc + chunk < M ? mc + chunk : M;
        for (int n0 = 0; n0 < q->Np; n0 += VIT_QNR) {
            const int8_t *panel = q->w + (size_t)n0 * q->Kp;
            for (int m0 = mc; m0 < mce; m0 += VIT_QMR) {
                int mr = mce - m0 < VIT_QMR ? mce - m0 : VIT_QMR;
                /* A short block repeats its last row; those results are
                 * not stored. */
                const uint8_t *rows[VIT_QMR];
                for (int r = 0; r < VIT_QMR; r++)
                    rows[r] = a + (size_t)(m0 + (r < mr ? r : mr - 1)) * lda;
                kern(rows, panel, k4, tile);
                epilogue(o, q, tile, m0, mr, n0, as, az);
            }
        }
    }
}
