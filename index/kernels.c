/*
 * The index matrix's kernels: scores of its rows against a query, rows
 * widened to fp32, a vector stored in the matrix's precision (fp32, fp16
 * or int8 with one scale per row), in plain C and, chosen at run time,
 * AVX2 + FMA + F16C.
 */
#include "index/matrix_impl.h"
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef IDX_X86
#include <immintrin.h>
#endif

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
 * query's scale keeps every int32 sum below 2^31 (see idx__quantize_query). */
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
int idx__use_simd(void)
{
#ifdef IDX_X86
    const char *e = getenv("IDX_NO_SIMD");
    return have_avx2() && !(e && e[0] == '1');
#else
    return 0;
#endif
}

/* q16 / qs: the query quantized for the int8 kernel
 * (idx__quantize_query), or NULL. */
void idx__dot_rows(const idx_matrix *m, float *out, size_t r0, size_t n,
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
void idx__rows_f32(const idx_matrix *m, float *out, size_t r0, size_t n,
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
void idx__store_row(idx_matrix *m, size_t r, const float *v)
{
    size_t d = (size_t)m->dim;
    if (m->prec == IDX_FP32) {
        memcpy((float *)m->data + r * d, v, d * sizeof *v);
    } else if (m->prec == IDX_FP16) {
        uint16_t *o = (uint16_t *)m->data + r * d;
#ifdef IDX_X86
        if (idx__use_simd())
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
/* The query as int16 for the int8 kernel: the largest magnitude maps to
 * at most 32767, less for long vectors so that 127 * qmax * d, the
 * largest sum a row can reach, stays below 2^31. Returns the scale (0
 * for a zero query). */
float idx__quantize_query(int16_t *out, const float *q, int d)
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

float idx__dot_f32_exact(const float *a, const float *b, int d, int simd)
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
